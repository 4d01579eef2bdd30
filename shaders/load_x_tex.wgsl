// The input `x` (binding 1) of the row and reduction kernels read through a
// texture (CPU adapters, f32 input; see texels.wgsl): shaders.rs swaps
// load_x_f32.wgsl for this file to make `reduce_tex`, `softmax_tex` and
// `norm_tex` (declared in kernels/reduce.rs and kernels/rows.rs, with the
// entries that read x through the texture).
//#include texels.wgsl
@group(0) @binding(1) var x_src: texture_storage_2d<r32float, read>;

// Element i of x.
fn load_x(i: u32) -> f32 {
    return texel(x_src, i);
}

// The input `x` (binding 1) of the row and reduction kernels (softmax.wgsl's
// softmax_fwd and ce_fwd, norm.wgsl's normalize_rows, reduce.wgsl) in f32
// storage. The kernels read it only through load_x; shaders.rs swaps this
// include for load_x_f16.wgsl (packed u32 words) or load_x_f16_native.wgsl
// (WGSL's f16) to make their f16-input variants, whose loads widen exactly
// to f32 and whose arithmetic and outputs stay f32.
@group(0) @binding(1) var<storage, read> x_src: array<f32>;

// Element i of x.
fn load_x(i: u32) -> f32 {
    return x_src[i];
}

// The input `x` of load_x_f32.wgsl's kernels in packed f16 storage (two
// halves per u32 word, element 2k in the low half: `Buffer::from_f16`'s
// layout), for adapters without SHADER_F16. Element indices stay element
// indices, so strided views index halves as f32 views index floats.
//#include half.wgsl
@group(0) @binding(1) var<storage, read> x_src: array<u32>;

// Element i of x, widened exactly to f32.
fn load_x(i: u32) -> f32 {
    return half_at(x_src[i >> 1u], i);
}

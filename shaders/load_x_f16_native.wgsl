// The input `x` of load_x_f32.wgsl's kernels in f16 storage read as WGSL's
// `f16` (needs SHADER_F16; shaders.rs puts `enable f16;` at the top of the
// variant). The bytes are those of load_x_f16.wgsl's packed words.
@group(0) @binding(1) var<storage, read> x_src: array<f16>;

// Element i of x, widened exactly to f32.
fn load_x(i: u32) -> f32 {
    return f32(x_src[i]);
}

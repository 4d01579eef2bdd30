// The inputs of unary_grad.wgsl in f32 storage buffers: x (binding 1), the
// forward output y (2) and the incoming gradient g (3). shaders.rs swaps
// this include for unary_grad_inputs_tex.wgsl (textures, CPU adapters).
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;

fn x_at(i: u32) -> f32 {
    return x[i];
}

fn y_at(i: u32) -> f32 {
    return y[i];
}

fn g_at(i: u32) -> f32 {
    return g[i];
}

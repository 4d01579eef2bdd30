// The row inputs of the row kernels' backward passes (norm.wgsl's
// normalize_rows_backward, softmax.wgsl's softmax_bwd) in f32 storage: the
// output gradient dy (binding 1) and the forward output y (binding 2).
// shaders.rs swaps this include for row_grads_tex.wgsl in the `_tex`
// variants (CPU adapters).
@group(0) @binding(1) var<storage, read> dy_src: array<f32>;
@group(0) @binding(2) var<storage, read> y_src: array<f32>;

// Element i of dy and of y.
fn load_dy(i: u32) -> f32 {
    return dy_src[i];
}

fn load_y(i: u32) -> f32 {
    return y_src[i];
}

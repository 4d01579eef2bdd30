// The read-only inputs of recurrent.wgsl's two entry points in f32 storage
// buffers. Each entry point statically uses only its own globals, so they
// share binding numbers:
//   cell_forward   xw (1), hw (2), bias (3)
//   cell_backward  dy (1), dh_rec (2), states_in (3), saved_in (4)
// shaders.rs swaps this include for recurrent_inputs_tex.wgsl in the
// `_tex` variant (CPU adapters).
@group(0) @binding(1) var<storage, read> xw: array<f32>;
@group(0) @binding(2) var<storage, read> hw: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> dh_rec: array<f32>;
@group(0) @binding(3) var<storage, read> states_in: array<f32>;
@group(0) @binding(4) var<storage, read> saved_in: array<f32>;

// Element i of each input.
fn load_xw(i: u32) -> f32 {
    return xw[i];
}

fn load_hw(i: u32) -> f32 {
    return hw[i];
}

fn load_bias(i: u32) -> f32 {
    return bias[i];
}

fn load_dy(i: u32) -> f32 {
    return dy[i];
}

fn load_dh_rec(i: u32) -> f32 {
    return dh_rec[i];
}

fn load_states(i: u32) -> f32 {
    return states_in[i];
}

fn load_saved(i: u32) -> f32 {
    return saved_in[i];
}

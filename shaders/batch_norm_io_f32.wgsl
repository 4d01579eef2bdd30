// The batch-norm kernels' activations in f32 storage: the inputs x, dy, the
// saved ReLU output y and the residual, the outputs y, dx and dres.
// batch_norm.wgsl touches them only through the functions below; shaders.rs
// swaps this include for batch_norm_io_f16.wgsl (packed u32 words) or
// batch_norm_io_f16_native.wgsl (WGSL's f16) to make the f16 variants, whose
// arithmetic stays f32 (loads widen exactly, stores round to nearest even).
//
// The scalar entries give thread t the LANES elements from LANES·t (its
// "unit", in the first lanes of a vec2); an f16 unit is one whole u32 word,
// so no two threads write the same word. The vec4 entries' quad q is
// elements 4q..4q+3 (B a multiple of 4, so whole units).
const LANES: u32 = 1u;
//#include batch_norm_out_f32.wgsl
//#include batch_norm_channels_f32.wgsl

@group(0) @binding(1) var<storage, read> x_in: array<f32>;
@group(0) @binding(1) var<storage, read> dy_in: array<f32>;
@group(0) @binding(2) var<storage, read> x_in2: array<f32>;
@group(0) @binding(3) var<storage, read> y_in: array<f32>;
@group(0) @binding(5) var<storage, read> res_in: array<f32>;

@group(0) @binding(1) var<storage, read> x4_in: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> dy4_in: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> x4_in2: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> y4_in: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> res4_in: array<vec4<f32>>;

// Unit t of each input (bindings: x 1 in stats and forward, dy 1, x 2 and
// y 3 in the gradient entries, residual 5).
fn x_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(x_in[t], 0.0);
}

fn dy_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(dy_in[t], 0.0);
}

fn x2_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(x_in2[t], 0.0);
}

fn y_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(y_in[t], 0.0);
}

fn res_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(res_in[t], 0.0);
}

// Quad q of each input.
fn x_quad(q: u32) -> vec4<f32> {
    return x4_in[q];
}

fn dy_quad(q: u32) -> vec4<f32> {
    return dy4_in[q];
}

fn x2_quad(q: u32) -> vec4<f32> {
    return x4_in2[q];
}

fn y_quad(q: u32) -> vec4<f32> {
    return y4_in[q];
}

fn res_quad(q: u32) -> vec4<f32> {
    return res4_in[q];
}

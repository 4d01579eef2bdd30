// The batch-norm kernels' f32 activations with the inputs read through
// textures (CPU adapters; see texels.wgsl for why and how they are laid
// out): x, dy, the saved ReLU output y and the residual are r32float
// textures, the outputs y, dx and dres stay storage buffers. kernels/
// batch_norm.rs swaps this include for batch_norm_io_f32.wgsl to make
// `batch_norm_tex` and lists which inputs of each entry are textures.
// Units are single elements (LANES 1), quads four fetches.
//#include texels.wgsl
const LANES: u32 = 1u;
//#include batch_norm_out_f32.wgsl
//#include batch_norm_channels_tex.wgsl

@group(0) @binding(1) var x_in: texture_storage_2d<r32float, read>;
@group(0) @binding(1) var dy_in: texture_storage_2d<r32float, read>;
@group(0) @binding(2) var x_in2: texture_storage_2d<r32float, read>;
@group(0) @binding(3) var y_in: texture_storage_2d<r32float, read>;
@group(0) @binding(5) var res_in: texture_storage_2d<r32float, read>;

fn x_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(texel(x_in, t), 0.0);
}

fn dy_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(texel(dy_in, t), 0.0);
}

fn x2_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(texel(x_in2, t), 0.0);
}

fn y_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(texel(y_in, t), 0.0);
}

fn res_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(texel(res_in, t), 0.0);
}

fn x_quad(q: u32) -> vec4<f32> {
    return texel4(x_in, q);
}

fn dy_quad(q: u32) -> vec4<f32> {
    return texel4(dy_in, q);
}

fn x2_quad(q: u32) -> vec4<f32> {
    return texel4(x_in2, q);
}

fn y_quad(q: u32) -> vec4<f32> {
    return texel4(y_in, q);
}

fn res_quad(q: u32) -> vec4<f32> {
    return texel4(res_in, q);
}

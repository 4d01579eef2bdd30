// The batch-norm kernels' activations in f16 storage, read as WGSL's `f16`
// (needs SHADER_F16; shaders.rs puts `enable f16;` at the top of the
// variant). The bytes are those of batch_norm_io_f16.wgsl: a unit is one
// vec2<f16> (one 4-byte word), and loads widen exactly to f32. The stores
// are the packed ones (batch_norm_io_f16_common.wgsl), so both variants
// write the same bits.
//#include batch_norm_io_f16_common.wgsl
const LANES: u32 = 2u;

@group(0) @binding(1) var<storage, read> x_in: array<vec2<f16>>;
@group(0) @binding(1) var<storage, read> dy_in: array<vec2<f16>>;
@group(0) @binding(2) var<storage, read> x_in2: array<vec2<f16>>;
@group(0) @binding(3) var<storage, read> y_in: array<vec2<f16>>;
@group(0) @binding(5) var<storage, read> res_in: array<vec2<f16>>;

fn x_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(x_in[t]);
}

fn dy_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(dy_in[t]);
}

fn x2_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(x_in2[t]);
}

fn y_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(y_in[t]);
}

fn res_unit(t: u32) -> vec2<f32> {
    return vec2<f32>(res_in[t]);
}

// What the f16 batch-norm activation libraries share (batch_norm_io_f16.wgsl,
// packed loads, and batch_norm_io_f16_native.wgsl, WGSL's f16 loads): the
// outputs, stored as packed u32 words in both (one unit is one word, so each
// thread owns the words it writes; the rounding is half.wgsl's, not
// f16(x), whose rounding WGSL leaves open), and the vec4 entries' quads:
// quad q is units 2q and 2q + 1.
//#include half.wgsl
//#include batch_norm_channels_f32.wgsl

@group(0) @binding(5) var<storage, read_write> y_out: array<u32>;
@group(0) @binding(6) var<storage, read_write> y_res_out: array<u32>;
@group(0) @binding(8) var<storage, read_write> dx_out: array<u32>;
@group(0) @binding(9) var<storage, read_write> dres_out: array<u32>;

fn store_y(t: u32, v: vec2<f32>) {
    y_out[t] = pack_halves(v);
}

fn store_y_res(t: u32, v: vec2<f32>) {
    y_res_out[t] = pack_halves(v);
}

fn store_dx(t: u32, v: vec2<f32>) {
    dx_out[t] = pack_halves(v);
}

fn store_dres(t: u32, v: vec2<f32>) {
    dres_out[t] = pack_halves(v);
}

fn x_quad(q: u32) -> vec4<f32> {
    return vec4<f32>(x_unit(2u * q), x_unit(2u * q + 1u));
}

fn dy_quad(q: u32) -> vec4<f32> {
    return vec4<f32>(dy_unit(2u * q), dy_unit(2u * q + 1u));
}

fn x2_quad(q: u32) -> vec4<f32> {
    return vec4<f32>(x2_unit(2u * q), x2_unit(2u * q + 1u));
}

fn y_quad(q: u32) -> vec4<f32> {
    return vec4<f32>(y_unit(2u * q), y_unit(2u * q + 1u));
}

fn res_quad(q: u32) -> vec4<f32> {
    return vec4<f32>(res_unit(2u * q), res_unit(2u * q + 1u));
}

fn store_y_quad(q: u32, v: vec4<f32>) {
    store_y(2u * q, v.xy);
    store_y(2u * q + 1u, v.zw);
}

fn store_y_res_quad(q: u32, v: vec4<f32>) {
    store_y_res(2u * q, v.xy);
    store_y_res(2u * q + 1u, v.zw);
}

fn store_dx_quad(q: u32, v: vec4<f32>) {
    store_dx(2u * q, v.xy);
    store_dx(2u * q + 1u, v.zw);
}

fn store_dres_quad(q: u32, v: vec4<f32>) {
    store_dres(2u * q, v.xy);
    store_dres(2u * q + 1u, v.zw);
}

// The batch-norm kernels' activations in packed f16 storage (see
// batch_norm_io_f32.wgsl for the interface), for adapters without
// SHADER_F16: two halves per u32 word, element 2k in the low half (the
// layout of `Buffer::from_f16`; an odd count leaves the last word's high
// half unused, and the stores write it as 0). A unit is one word, so the
// scalar entries handle two elements per thread. Loads widen with
// unpack2x16float (exact: every f16 is an f32); the stores are in
// batch_norm_io_f16_common.wgsl.
//#include batch_norm_io_f16_common.wgsl
const LANES: u32 = 2u;

@group(0) @binding(1) var<storage, read> x_in: array<u32>;
@group(0) @binding(1) var<storage, read> dy_in: array<u32>;
@group(0) @binding(2) var<storage, read> x_in2: array<u32>;
@group(0) @binding(3) var<storage, read> y_in: array<u32>;
@group(0) @binding(5) var<storage, read> res_in: array<u32>;

fn x_unit(t: u32) -> vec2<f32> {
    return unpack2x16float(x_in[t]);
}

fn dy_unit(t: u32) -> vec2<f32> {
    return unpack2x16float(dy_in[t]);
}

fn x2_unit(t: u32) -> vec2<f32> {
    return unpack2x16float(x_in2[t]);
}

fn y_unit(t: u32) -> vec2<f32> {
    return unpack2x16float(y_in[t]);
}

fn res_unit(t: u32) -> vec2<f32> {
    return unpack2x16float(res_in[t]);
}

// What the f16 pooling libraries share (pool_io_f16.wgsl, packed loads, and
// pool_io_f16_native.wgsl, WGSL's f16 loads): the outputs, stored as packed
// u32 words in both (a unit is one word: two elements, element 2k in the low
// half, an odd count's unused last half written as 0), rounded with
// half.wgsl's nearest-even rounding (pack2x16float is undefined outside
// f16's range).
//#include half.wgsl
//#include pool_arg_buffer.wgsl
const LANES: u32 = 2u;

@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read_write> dx: array<u32>;

fn store_out(t: u32, v: vec2<f32>) {
    out[t] = pack_halves(v);
}

fn store_dx(t: u32, v: vec2<f32>) {
    dx[t] = pack_halves(v);
}

// What the f16 attention libraries share (attention_io_f16.wgsl, packed
// loads, and attention_io_f16_native.wgsl, WGSL's f16 loads): the results,
// stored as packed u32 words in both (a unit is one word: two elements,
// element 2k in the low half; the host takes this path only for even head
// dims, so every row starts on a word), rounded with half.wgsl's
// nearest-even rounding (pack2x16float is undefined outside f16's range).
//#include half.wgsl
const LANES: u32 = 2u;

@group(0) @binding(5) var<storage, read_write> out: array<u32>;
@group(0) @binding(8) var<storage, read_write> dq: array<u32>;
@group(0) @binding(9) var<storage, read_write> dk: array<u32>;
@group(0) @binding(10) var<storage, read_write> dv: array<u32>;

fn store_out(t: u32, x: vec2<f32>) { out[t] = pack_halves(x); }
fn store_dq(t: u32, x: vec2<f32>) { dq[t] = pack_halves(x); }
fn store_dk(t: u32, x: vec2<f32>) { dk[t] = pack_halves(x); }
fn store_dv(t: u32, x: vec2<f32>) { dv[t] = pack_halves(x); }

// attention.wgsl's row operands in f32 storage: q, k, v (bindings 1-3), the
// forward's output `o` and the output gradient `dout` (read by the
// backward), and the results `out`, `dq`, `dk`, `dv`. The kernels touch
// them only through the functions below; shaders.rs swaps this include for
// attention_io_f16.wgsl (packed u32 words) or attention_io_f16_native.wgsl
// (WGSL's f16 loads) to make the f16 variants, whose arithmetic stays f32
// (loads widen exactly, stores round once to nearest even).
//
// Readers: `X_vec(j)` is elements 4j..4j+3 (rows whose width is a multiple
// of 4 start on such a boundary), `X_elem(i)` element i. Stores: unit t is
// the LANES elements from LANES·t (the first lanes of a vec2); an f16 unit
// is one whole u32 word, so no two invocations write the same word.
const LANES: u32 = 1u;

@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
// Each entry point statically uses only its own bindings, so the globals
// below may share binding numbers with different types (see attention.wgsl).
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read> o: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> dout: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dq: array<f32>;
@group(0) @binding(9) var<storage, read_write> dk: array<f32>;
@group(0) @binding(10) var<storage, read_write> dv: array<f32>;

fn q_vec(j: u32) -> vec4<f32> { return q[j]; }
fn k_vec(j: u32) -> vec4<f32> { return k[j]; }
fn v_vec(j: u32) -> vec4<f32> { return v[j]; }
fn o_vec(j: u32) -> vec4<f32> { return o[j]; }
fn dout_vec(j: u32) -> vec4<f32> { return dout[j]; }
fn q_elem(i: u32) -> f32 { return q[i / 4u][i % 4u]; }
fn k_elem(i: u32) -> f32 { return k[i / 4u][i % 4u]; }
fn v_elem(i: u32) -> f32 { return v[i / 4u][i % 4u]; }
fn o_elem(i: u32) -> f32 { return o[i / 4u][i % 4u]; }
fn dout_elem(i: u32) -> f32 { return dout[i / 4u][i % 4u]; }

fn store_out(t: u32, x: vec2<f32>) { out[t] = x.x; }
fn store_dq(t: u32, x: vec2<f32>) { dq[t] = x.x; }
fn store_dk(t: u32, x: vec2<f32>) { dk[t] = x.x; }
fn store_dv(t: u32, x: vec2<f32>) { dv[t] = x.x; }

// attention.wgsl's row operands in packed f16 storage (see
// attention_io_f32.wgsl for the interface), for adapters without
// SHADER_F16: loads widen (exactly) with unpack2x16float; the stores are in
// attention_io_f16_common.wgsl. Chunk j (elements 4j..4j+3) is words 2j, 2j+1.
//#include attention_io_f16_common.wgsl

@group(0) @binding(1) var<storage, read> q: array<u32>;
@group(0) @binding(2) var<storage, read> k: array<u32>;
@group(0) @binding(3) var<storage, read> v: array<u32>;
@group(0) @binding(5) var<storage, read> o: array<u32>;
@group(0) @binding(7) var<storage, read> dout: array<u32>;

fn words4(lo: u32, hi: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(lo), unpack2x16float(hi));
}

fn q_vec(j: u32) -> vec4<f32> { return words4(q[2u * j], q[2u * j + 1u]); }
fn k_vec(j: u32) -> vec4<f32> { return words4(k[2u * j], k[2u * j + 1u]); }
fn v_vec(j: u32) -> vec4<f32> { return words4(v[2u * j], v[2u * j + 1u]); }
fn o_vec(j: u32) -> vec4<f32> { return words4(o[2u * j], o[2u * j + 1u]); }
fn dout_vec(j: u32) -> vec4<f32> { return words4(dout[2u * j], dout[2u * j + 1u]); }
fn q_elem(i: u32) -> f32 { return half_at(q[i / 2u], i); }
fn k_elem(i: u32) -> f32 { return half_at(k[i / 2u], i); }
fn v_elem(i: u32) -> f32 { return half_at(v[i / 2u], i); }
fn o_elem(i: u32) -> f32 { return half_at(o[i / 2u], i); }
fn dout_elem(i: u32) -> f32 { return half_at(dout[i / 2u], i); }

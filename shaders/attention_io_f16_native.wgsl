// attention.wgsl's row operands in f16 storage read as WGSL's `f16` (needs
// SHADER_F16; shaders.rs puts `enable f16;` at the top of the variant). The
// bytes are those of attention_io_f16.wgsl, loads widen exactly, and the
// stores are the packed ones (attention_io_f16_common.wgsl), so both
// variants write the same bits.
//#include attention_io_f16_common.wgsl

@group(0) @binding(1) var<storage, read> q: array<f16>;
@group(0) @binding(2) var<storage, read> k: array<f16>;
@group(0) @binding(3) var<storage, read> v: array<f16>;
@group(0) @binding(5) var<storage, read> o: array<f16>;
@group(0) @binding(7) var<storage, read> dout: array<f16>;

fn q_vec(j: u32) -> vec4<f32> { return vec4<f32>(f32(q[4u * j]), f32(q[4u * j + 1u]), f32(q[4u * j + 2u]), f32(q[4u * j + 3u])); }
fn k_vec(j: u32) -> vec4<f32> { return vec4<f32>(f32(k[4u * j]), f32(k[4u * j + 1u]), f32(k[4u * j + 2u]), f32(k[4u * j + 3u])); }
fn v_vec(j: u32) -> vec4<f32> { return vec4<f32>(f32(v[4u * j]), f32(v[4u * j + 1u]), f32(v[4u * j + 2u]), f32(v[4u * j + 3u])); }
fn o_vec(j: u32) -> vec4<f32> { return vec4<f32>(f32(o[4u * j]), f32(o[4u * j + 1u]), f32(o[4u * j + 2u]), f32(o[4u * j + 3u])); }
fn dout_vec(j: u32) -> vec4<f32> { return vec4<f32>(f32(dout[4u * j]), f32(dout[4u * j + 1u]), f32(dout[4u * j + 2u]), f32(dout[4u * j + 3u])); }
fn q_elem(i: u32) -> f32 { return f32(q[i]); }
fn k_elem(i: u32) -> f32 { return f32(k[i]); }
fn v_elem(i: u32) -> f32 { return f32(v[i]); }
fn o_elem(i: u32) -> f32 { return f32(o[i]); }
fn dout_elem(i: u32) -> f32 { return f32(dout[i]); }

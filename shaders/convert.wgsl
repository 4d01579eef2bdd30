// Raw bytes to normalised f32: y = (byte / 255 - mean[c]) / std[c], where the
// channel c of element i is (i / plane) % channels. Datasets upload their u8
// pixels (4x less traffic than f32) and convert here.
//#include common.wgsl

struct Params {
    mean: vec4<f32>,
    inv_std: vec4<f32>,
    n: u32,
    plane: u32,
    channels: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> bytes: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    // Little-endian packing: byte i is bits 8*(i%4).. of word i/4.
    let b = (bytes[i / 4u] >> (8u * (i % 4u))) & 0xffu;
    let c = (i / p.plane) % p.channels;
    y[i] = (f32(b) / 255.0 - p.mean[c]) * p.inv_std[c];
}

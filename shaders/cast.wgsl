// f32 <-> f16 casts on packed f16 storage (two halves per u32 word, element
// 2k in the low half). Built on the core pack2x16float / unpack2x16float so
// they run without the SHADER_F16 feature. Both entry points move raw bits:
// input and output are declared u32 so no float value passes through a load
// or store that could canonicalise it.
//#include common.wgsl
//#include half.wgsl

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// One thread per output word: elements 2k and 2k+1; an odd n leaves the last high half zero.
@compute @workgroup_size(256)
fn f32_to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = linear_workgroup(wid, nwg) * 256u + lid;
    let i = 2u * k;
    if i >= p.n {
        return;
    }
    var hi = 0u;
    if i + 1u < p.n {
        hi = half_bits(src[i + 1u]);
    }
    dst[k] = half_bits(src[i]) | (hi << 16u);
}

// One thread per input word: writes elements 2k and (when it exists) 2k+1.
@compute @workgroup_size(256)
fn f16_to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let k = linear_workgroup(wid, nwg) * 256u + lid;
    let i = 2u * k;
    if i >= p.n {
        return;
    }
    let v = unpack2x16float(src[k]);
    dst[i] = bitcast<u32>(v.x);
    if i + 1u < p.n {
        dst[i + 1u] = bitcast<u32>(v.y);
    }
}

// U32 <-> F32, one thread per element (both sides are 4-byte words).

// The nearest f32 of a u32, ties to even like Rust's `as f32`: WGSL lets
// f32(u32) round either way above 2^24, but both halves convert exactly and
// one correctly rounded add rounds the sum once.
@compute @workgroup_size(256)
fn u32_to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let v = src[i];
    dst[i] = bitcast<u32>(f32(v >> 16u) * 65536.0 + f32(v & 0xffffu));
}

// Truncation toward zero, saturating like Rust's `as u32`: NaN and negatives
// give 0, values from 2^32 up give 4294967295 (WGSL leaves those undefined).
@compute @workgroup_size(256)
fn f32_to_u32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let bits = src[i];
    var r = 0u;
    if bits >= 0x4f800000u && bits <= 0x7f800000u {
        r = 0xffffffffu; // +2^32 and above, +inf
    } else if bits < 0x4f800000u {
        r = u32(bitcast<f32>(bits)); // [+0, 2^32)
    } // negatives (sign bit set) and NaN stay 0
    dst[i] = r;
}

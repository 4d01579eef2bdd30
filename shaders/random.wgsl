// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11, the
// Random123 generator). Thread t hashes counter (offset + t) under key = seed
// into four u32 words and writes elements 4t .. 4t+3, so the stream depends
// only on (seed, offset, i) and the CPU twin in gpu-core/src/ops/random.rs
// reproduces it. DIST: 0 = uniform, 1 = normal (Box–Muller).
//#include common.wgsl

override DIST: u32 = 0u;

struct Params {
    n: u32,
    // ceil(n / 4): threads with work
    quads: u32,
    // seed, low word first
    key0: u32,
    key1: u32,
    // first counter (offset), low word first
    ctr0: u32,
    ctr1: u32,
    // uniform: lo and (hi - lo); normal: mean and std
    a: f32,
    b: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
const TWO_POW_M24: f32 = 5.9604644775390625e-8;
const TWO_PI: f32 = 6.283185307179586;

// (high, low) words of the 64-bit product a·b. WGSL has no 64-bit integers,
// so the high word is assembled from 16-bit partial products.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let hh = ah * bh;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    return vec2<u32>(hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u), a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        if r > 0u {
            k += vec2<u32>(PHILOX_W0, PHILOX_W1);
        }
        let p0 = mulhilo(PHILOX_M0, c.x);
        let p1 = mulhilo(PHILOX_M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// [0, 1) from the top 24 bits: exact in f32.
fn unit(w: u32) -> f32 {
    return f32(w >> 8u) * TWO_POW_M24;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear_workgroup(wid, nwg) * 256u + lid;
    let i0 = 4u * t;
    if t >= p.quads {
        return;
    }
    // 64-bit counter offset + t with the carry done by hand.
    let lo = p.ctr0 + t;
    let hi = p.ctr1 + select(0u, 1u, lo < t);
    let r = philox4x32_10(vec4<u32>(lo, hi, 0u, 0u), vec2<u32>(p.key0, p.key1));

    var out: vec4<f32>;
    if DIST == 0u {
        out = vec4<f32>(p.a) + p.b * vec4<f32>(unit(r.x), unit(r.y), unit(r.z), unit(r.w));
    } else {
        // u1 in (0, 1] so the log is finite.
        let r01 = sqrt(-2.0 * log(f32((r.x >> 8u) + 1u) * TWO_POW_M24));
        let r23 = sqrt(-2.0 * log(f32((r.z >> 8u) + 1u) * TWO_POW_M24));
        let t01 = TWO_PI * unit(r.y);
        let t23 = TWO_PI * unit(r.w);
        out = vec4<f32>(p.a) + p.b * vec4<f32>(r01 * cos(t01), r01 * sin(t01), r23 * cos(t23), r23 * sin(t23));
    }
    for (var k = 0u; k < 4u; k++) {
        if i0 + k < p.n {
            y[i0 + k] = out[k];
        }
    }
}

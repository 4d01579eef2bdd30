// Philox4x32-10 (Salmon et al., SC'11, the Random123 generator), shared by
// every kernel that draws random numbers: `random` (uniform, normal) and
// `dropout` (masks). The CPU twin is `philox4x32_10` in
// gpu-core/src/ops/random.rs; the stream scheme (element i is word i % 4 of
// the block for counter offset + i / 4 under key = seed) is documented there.

const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;
const TWO_POW_M24: f32 = 5.9604644775390625e-8;

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

// `a + b` for a 64-bit `a` = (lo, hi) words.
fn add_u64(a: vec2<u32>, b: u32) -> vec2<u32> {
    let lo = a.x + b;
    return vec2<u32>(lo, a.y + select(0u, 1u, lo < b));
}

// The four words for counter `offset + t` (offset = (lo, hi) words, the
// 64-bit add carried by hand) under `key` = the seed's (lo, hi) words.
fn philox_block(offset: vec2<u32>, t: u32, key: vec2<u32>) -> vec4<u32> {
    let c = add_u64(offset, t);
    return philox4x32_10(vec4<u32>(c.x, c.y, 0u, 0u), key);
}

// [0, 1) from the top 24 bits: exact in f32.
fn unit(w: u32) -> f32 {
    return f32(w >> 8u) * TWO_POW_M24;
}

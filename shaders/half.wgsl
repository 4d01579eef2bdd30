// Hand-written, not generated (kernels/io.rs): the f16 rounding and unpacking the generated f16 storage libraries call.
// Packed f16 storage (two halves per u32 word, element 2k in the low half),
// shared by cast.wgsl, the generated f16 storage libraries and the fuser's
// generated kernels (which read f16 leaves and store f16 roots with these). Core WGSL only: no SHADER_F16.

// f16 bits of an f32, rounding to nearest even, in integer arithmetic
// only: WGSL leaves pack2x16float indeterminate outside f16's finite range,
// and llvmpipe (lavapipe) runs it per lane, which made a GEMM whose store
// rounds to f16 several times slower than its f32 store. Every adapter then
// gives IEEE's ±inf, a quiet NaN and exact subnormals.
fn half_bits(bits: u32) -> u32 {
    let sign = (bits >> 16u) & 0x8000u;
    let mag = bits & 0x7fffffffu;
    // Normal f16 (from 2^-14): rebias the exponent (127 → 15) and round the
    // 13 dropped mantissa bits to nearest even; a carry moves into the
    // exponent (65504 < x < 65520 stays 65504, 65520 and up become inf).
    let m = mag - 0x38000000u;
    let normal = (m + 0xfffu + ((m >> 13u) & 1u)) >> 13u;
    // Subnormal f16: the value in units of 2^-24, the 24-bit significand
    // shifted right by 126 − exponent, rounded to nearest even; shifts past
    // 24 (below 2^-25, which ties to even 0) give 0.
    let shift = min(126u - min(mag >> 23u, 126u), 31u);
    let significand = (mag & 0x7fffffu) | 0x800000u;
    let kept = select(0u, significand >> shift, shift < 25u);
    let rest = significand & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    let up = select(0u, 1u, shift < 26u && (rest > half || (rest == half && (kept & 1u) == 1u)));
    let subnormal = kept + up;
    var h = select(subnormal, normal, mag >= 0x38800000u);
    h = select(h, 0x7c00u, mag >= 0x477ff000u);
    h = select(h, 0x7e00u, mag > 0x7f800000u);
    return sign | h;
}

// Two values rounded into one word, x in the low half (element 2k of the
// packed layout), y in the high half.
fn pack_halves(v: vec2<f32>) -> u32 {
    return half_bits(bitcast<u32>(v.x)) | (half_bits(bitcast<u32>(v.y)) << 16u);
}

// Element `i` of packed f16 storage, widened (exactly), given its word
// (word `i / 2`): the low half for even `i`, the high half for odd.
fn half_at(word: u32, i: u32) -> f32 {
    let v = unpack2x16float(word);
    return select(v.x, v.y, (i & 1u) == 1u);
}

// `v` rounded to f16 (nearest even, as half_bits) and widened back (as
// half_at widens): what a value stored as f16 and read again holds.
fn round_half(v: f32) -> f32 {
    return unpack2x16float(half_bits(bitcast<u32>(v))).x;
}

// Each lane as round_half.
fn round_f16(v: vec4<f32>) -> vec4<f32> {
    let lo = unpack2x16float(pack_halves(v.xy));
    let hi = unpack2x16float(pack_halves(v.zw));
    return vec4<f32>(lo, hi);
}

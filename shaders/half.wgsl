// Packed f16 storage (two halves per u32 word, element 2k in the low half),
// shared by cast.wgsl, the batch-norm f16 libraries and the fuser's
// generated kernels (which read f16 leaves and store f16 roots with these). Core WGSL only: no SHADER_F16.

// f16 bits of an f32, rounding to nearest even. WGSL leaves pack2x16float
// indeterminate outside f16's finite range, so overflow and NaN are spelled
// out here: every adapter then gives IEEE's ±inf and a quiet NaN.
fn half_bits(bits: u32) -> u32 {
    let sign = (bits >> 16u) & 0x8000u;
    let mag = bits & 0x7fffffffu;
    if mag > 0x7f800000u {
        return sign | 0x7e00u;
    }
    // 65520 (0x477ff000) is the halfway point above f16's largest 65504 and rounds (to even) up to inf.
    if mag >= 0x477ff000u {
        return sign | 0x7c00u;
    }
    // Above 65504 (0x477fe000) and below that point: 65504, spelled out for the same reason.
    if mag > 0x477fe000u {
        return sign | 0x7bffu;
    }
    return pack2x16float(vec2<f32>(bitcast<f32>(bits), 0.0)) & 0xffffu;
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

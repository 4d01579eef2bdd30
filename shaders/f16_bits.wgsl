// f32 -> f16 rounding for kernels that store f16 (the batch-norm activation
// libraries), built on the core pack2x16float so it needs no SHADER_F16: the
// same bits as cast.wgsl's f32_to_f16 and the `half` crate (nearest even,
// ±inf past f16's range, a quiet NaN for NaN). WGSL leaves pack2x16float
// indeterminate outside f16's finite range, so the overflow and NaN cases
// are spelled out here.
fn f16_bits_of(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
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
    return pack2x16float(vec2<f32>(v, 0.0)) & 0xffffu;
}

// Two values rounded into one word, x in the low half (element 2k of the
// packed layout), y in the high half.
fn pack_halves(v: vec2<f32>) -> u32 {
    return f16_bits_of(v.x) | (f16_bits_of(v.y) << 16u);
}

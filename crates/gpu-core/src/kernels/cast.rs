//! The element type casts' reference twins (`ops/cast.rs` has the
//! launches): f16 rounding by the `half` crate, the words of the packed
//! f16 layout, and Rust's `as` casts.

use half::f16;

/// `x.to(torch.float16)` into packed f16 words: element `2k` in the low
/// half of word `k`, rounded to nearest even (±inf past ±65504), an odd
/// count's last high half 0.
pub(crate) fn f32_to_f16(xs: &[f32], ys: &mut [u32]) {
    for (y, pair) in ys.iter_mut().zip(xs.chunks(2)) {
        let half = |v: Option<&f32>| v.map_or(0, |&v| f16::from_f32(v).to_bits() as u32);
        *y = half(pair.first()) | half(pair.get(1)) << 16;
    }
}

/// `x.to(torch.float32)` of packed f16 words (exact), one f32 word out per
/// half in: as many as `ys` holds.
pub(crate) fn f16_to_f32(xs: &[u32], ys: &mut [u32]) {
    let halves: &[f16] = bytemuck::cast_slice(xs);
    for (y, h) in ys.iter_mut().zip(halves) {
        *y = h.to_f32().to_bits();
    }
}

/// One u32 as f32 bits: Rust's `as f32` (nearest, ties to even).
pub(crate) fn u32_to_f32(v: u32) -> u32 {
    (v as f32).to_bits()
}

/// One f32 (as bits) as u32: Rust's `as u32` (truncating toward zero,
/// saturating, NaN 0).
pub(crate) fn f32_to_u32(v: u32) -> u32 {
    f32::from_bits(v) as u32
}

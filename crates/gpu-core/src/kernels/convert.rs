//! The byte-to-float conversion's reference twin (`ops/convert.rs` has
//! the launch).

/// torchvision's `ToTensor` then `Normalize` on bytes:
/// `y[i] = (x[i] / 255 − mean[c]) · inv_std[c]`, element `i` in channel
/// `(i / plane) % channels`.
pub(crate) fn u8_to_f32(
    bytes: &[u8],
    (plane, channels): (usize, usize),
    (mean, inv_std): (&[f32], &[f32]),
    ys: &mut [f32],
) {
    for (i, y) in ys.iter_mut().enumerate() {
        let c = (i / plane) % channels;
        *y = (bytes[i] as f32 / 255.0 - mean[c]) * inv_std[c];
    }
}

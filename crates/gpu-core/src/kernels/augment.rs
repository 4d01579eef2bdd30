//! Image augmentation's reference twins and the per-image decisions both
//! backends draw (`ops/augment.rs` has the launches and, in its module
//! docs, how Philox words become decisions).

use super::random::{block, unit};

/// The four Philox words image `image` draws in a call with `seed` and `offset`.
pub fn draws(seed: u64, offset: u64, image: usize) -> [u32; 4] {
    block(seed, offset, image)
}

/// The crop shift `(dy, dx)` and flip decision of one image (`ops/augment.rs`'s module docs):
/// the output pixel `(y, x)` of a flipped image reads input `(y + dy, W − 1 − x + dx)`.
pub fn crop_flip_decision(words: [u32; 4], pad: usize, flip_p: f32) -> (i64, i64, bool) {
    let span = 2 * pad as u64 + 1;
    let shift = |w: u32| (w as u64 % span) as i64 - pad as i64;
    (shift(words[0]), shift(words[1]), unit(words[2]) < flip_p)
}

/// The cutout square of one image: rows `y0..y1`, columns `x0..x1` (clipped
/// at the borders, so possibly smaller than `size`; `size / 2` on each side
/// of the centre as in DeVries & Taylor's reference code).
pub fn cutout_box(words: [u32; 4], h: usize, w: usize, size: usize) -> (usize, usize, usize, usize) {
    let (cy, cx) = ((words[0] as u64 % h as u64) as usize, (words[1] as u64 % w as u64) as usize);
    let half = size / 2;
    (cy.saturating_sub(half), (cy + half).min(h), cx.saturating_sub(half), (cx + half).min(w))
}

/// torchvision's `RandomCrop(H×W, padding=pad)` then
/// `RandomHorizontalFlip(flip_p)` on the dense `[N, C, H, W]` batch `xs`
/// (`chw` per image) into `ys`: output pixel `(y, x)` of image `i` reads
/// input `(y + dy, x' + dx)` (`x' = W − 1 − x` when flipped), 0.0 outside,
/// with image `i`'s [`crop_flip_decision`] under `(seed, offset)`.
pub(crate) fn crop_flip(
    xs: &[f32],
    ys: &mut [f32],
    [c, h, w]: [usize; 3],
    (pad, flip_p): (usize, f32),
    (seed, offset): (u64, u64),
) {
    for (img, (src, dst)) in xs.chunks(c * h * w).zip(ys.chunks_mut(c * h * w)).enumerate() {
        let (dy, dx, flip) = crop_flip_decision(draws(seed, offset, img), pad, flip_p);
        for (sp, dp) in src.chunks(h * w).zip(dst.chunks_mut(h * w)) {
            for r in 0..h {
                for col in 0..w {
                    let cc = if flip { w - 1 - col } else { col };
                    let (sy, sx) = (r as i64 + dy, cc as i64 + dx);
                    let inside = (0..h as i64).contains(&sy) && (0..w as i64).contains(&sx);
                    dp[r * w + col] = if inside { sp[sy as usize * w + sx as usize] } else { 0.0 };
                }
            }
        }
    }
}

/// Cutout (DeVries & Taylor 2017) of the dense `[N, C, H, W]` batch `xs`
/// into `ys`: a copy with every channel of image `i` zeroed on its
/// [`cutout_box`] under `(seed, offset)`.
pub(crate) fn cutout(xs: &[f32], ys: &mut [f32], [c, h, w]: [usize; 3], size: usize, (seed, offset): (u64, u64)) {
    ys.copy_from_slice(xs);
    for (img, dst) in ys.chunks_mut(c * h * w).enumerate() {
        let (y0, y1, x0, x1) = cutout_box(draws(seed, offset, img), h, w, size);
        for dp in dst.chunks_mut(h * w) {
            for r in y0..y1 {
                dp[r * w + x0..r * w + x1].fill(0.0);
            }
        }
    }
}

/// torchvision's `Normalize` as both backends compute it:
/// `y = (x − mean[c]) · inv_std[c]`, element `i` in channel
/// `(i / plane) % channels`.
pub(crate) fn normalize(
    xs: &[f32],
    ys: &mut [f32],
    (plane, channels): (usize, usize),
    (mean, inv_std): (&[f32], &[f32]),
) {
    for (i, (y, &v)) in ys.iter_mut().zip(xs).enumerate() {
        let ch = (i / plane) % channels;
        *y = (v - mean[ch]) * inv_std[ch];
    }
}

//! Fast row normalisation (layer and group norm's rows, `ops/norm.rs`):
//! the reference's f64 formulas, with each row's sums kept in lanes
//! (`lanes.rs`) and the rows compiled per vector level (`simd.rs`), split
//! over the cores. The reference sums a row in one chain, which waits on
//! every add: a 256-wide row took about 1 µs a pass. The lane order gives
//! last bits that may differ from the reference's, the same at every level.

use super::lanes;
use super::per_row2;
use super::simd::multiversion;

multiversion! {
    /// One row centred and scaled into `y`: returns `(mean, rstd)`.
    fn normalize_row(x: &[f32], eps: f32, y: &mut [f32]) -> (f32, f32) {
        let cols = x.len() as f64;
        let m = lanes::sum(x, |v| v as f64) / cols;
        let var = lanes::sum(x, |v| (v as f64 - m) * (v as f64 - m)) / cols;
        let s = 1.0 / (var + eps as f64).sqrt();
        for (o, &v) in y.iter_mut().zip(x) {
            *o = ((v as f64 - m) * s) as f32;
        }
        (m as f32, s as f32)
    }
}

multiversion! {
    /// Layer norm's affine on one normalised row: the reference's loop
    /// (`kernels/rows.rs`), compiled for the host's vector level.
    fn affine_row(y: &[f32], weight: &[f32], bias: Option<&[f32]>, z: &mut [f32]) {
        crate::kernels::rows::affine_row(y, weight, bias, z)
    }
}

multiversion! {
    /// The backward of one row, `dx = rstd · (g − mean(g) − y · mean(g·y))`
    /// with `g = dy` or `dy · w` (an f32 product, kept in `dx` meanwhile).
    fn normalize_backward_row(dy: &[f32], w: Option<&[f32]>, y: &[f32], rstd: f32, dx: &mut [f32]) {
        if let Some(w) = w {
            for ((d, &g), &w) in dx.iter_mut().zip(dy).zip(w) {
                *d = g * w;
            }
        }
        let cols = dy.len() as f64;
        let g = if w.is_some() { &*dx } else { dy };
        let (sg, sgy) = lanes::sum2(g, y, |g, y| (g as f64, g as f64 * y as f64));
        let (mg, mgy, rstd) = (sg / cols, sgy / cols, rstd as f64);
        let dx_of = |g: f32, y: f32| (rstd * (g as f64 - mg - y as f64 * mgy)) as f32;
        match w {
            Some(_) => dx.iter_mut().zip(y).for_each(|(d, &y)| *d = dx_of(*d, y)),
            None => dx.iter_mut().zip(dy).zip(y).for_each(|((d, &g), &y)| *d = dx_of(g, y)),
        }
    }
}

/// Layer norm's affine: its weight, its bias if any, and `z`, the output.
pub(crate) type Affine<'a> = (&'a [f32], Option<&'a [f32]>, &'a mut [f32]);

/// Every `cols`-wide row of `xs` normalised into `ys`, its `(mean, rstd)`
/// into `stats`; with `affine`, also `zs = ys · weight + bias`.
pub(crate) fn normalize(
    xs: &[f32],
    cols: usize,
    eps: f32,
    ys: &mut [f32],
    stats: &mut [(f32, f32)],
    affine: Option<Affine>,
) {
    per_row2(true, (ys, cols), (stats, 1), |r, y, st| {
        st[0] = normalize_row(&xs[r * cols..][..cols], eps, y);
    });
    if let Some((w, b, zs)) = affine {
        let ys = &*ys;
        per_row2(true, (zs, cols), (&mut [] as &mut [u8], 0), |r, z, _| {
            affine_row(&ys[r * cols..][..cols], w, b, z);
        });
    }
}

/// The input gradient of every row from the output gradient `gs`, the
/// forward's `ys` and `rstd`, and the affine's weight `ws` if any.
pub(crate) fn backward(gs: &[f32], ws: Option<&[f32]>, ys: &[f32], rstd: &[f32], cols: usize, dx: &mut [f32]) {
    per_row2(true, (dx, cols), (&mut [] as &mut [u8], 0), |r, d, _| {
        normalize_backward_row(&gs[r * cols..][..cols], ws, &ys[r * cols..][..cols], rstd[r], d);
    });
}

//! Fast batch-norm paths over `[A, C, B]` data (`ChannelDims`): rows of `B`
//! contiguous values share one channel, so per-channel constants are worked
//! out once per row and the inner loops are plain f32 arithmetic over
//! slices; channel sums (f64, in the reference's order) run one channel per
//! task, rows per task in the elementwise passes.

use rayon::prelude::*;

use super::{par_chunks, GRAIN};
use crate::ops::batch_norm::ChannelDims;

/// `f(ch)` for every channel, on all cores when the data is large.
fn per_channel(d: &ChannelDims, f: impl Fn(usize) -> (f64, f64) + Sync + Send) -> Vec<(f64, f64)> {
    if d.outer * d.channels * d.inner <= GRAIN {
        (0..d.channels).map(f).collect()
    } else {
        (0..d.channels).into_par_iter().map(f).collect()
    }
}

/// The rows of channel `ch`: `(offset, len)` of each of its `A` runs.
fn rows(d: &ChannelDims, ch: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    (0..d.outer).map(move |a| {
        let at = (a * d.channels + ch) * d.inner;
        at..at + d.inner
    })
}

/// `dy` masked by a fused ReLU's output `y` (zero where `y <= 0` or NaN).
fn masked(dy: f32, y: Option<f32>) -> f32 {
    match y {
        Some(y) if y <= 0.0 || y.is_nan() => 0.0,
        _ => dy,
    }
}

/// Per channel `(mean, Σ(x − mean)²)`, two passes in f64 as the reference.
pub(crate) fn moments(xs: &[f32], d: &ChannelDims) -> Vec<(f64, f64)> {
    per_channel(d, |ch| {
        let mean = rows(d, ch).map(|r| xs[r].iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>() / d.count() as f64;
        let m2 = rows(d, ch).map(|r| xs[r].iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>()).sum::<f64>();
        (mean, m2)
    })
}

/// Per channel `(Σdy', Σdy'·xhat)` with `xhat = (x − mean)·rstd`.
pub(crate) fn grad_sums(
    gs: &[f32],
    xs: &[f32],
    ys: Option<&[f32]>,
    d: &ChannelDims,
    ms: &[(f64, f64)],
) -> Vec<(f64, f64)> {
    per_channel(d, |ch| {
        let (mean, rstd) = ms[ch];
        let (mut s, mut sx) = (0.0f64, 0.0f64);
        for r in rows(d, ch) {
            for i in r {
                let gv = masked(gs[i], ys.map(|y| y[i])) as f64;
                s += gv;
                sx += gv * (xs[i] as f64 - mean) * rstd;
            }
        }
        (s, sx)
    })
}

/// Calls `f(ch, start, out_row)` for every row of `out` (`[A, C, B]`), the
/// rows split over all cores; `start` is the row's first element index.
fn each_row(out: &mut [f32], d: &ChannelDims, f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    let inner = d.inner.max(1);
    par_chunks(out, inner, GRAIN, |start, chunk| {
        for (i, row) in chunk.chunks_mut(inner).enumerate() {
            let at = start + i * inner;
            f(at / inner % d.channels, at, row);
        }
    });
}

/// `y = act((x − mean)·rstd·w + b + residual)`, per-channel constants in f32.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    xs: &[f32],
    d: &ChannelDims,
    ms: &[(f64, f64)],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    r: Option<&[f32]>,
    relu: bool,
    ys: &mut [f32],
) {
    each_row(ys, d, |ch, at, row| {
        let (mean, rstd) = ms[ch];
        let scale = (rstd * w.map_or(1.0, |w| w[ch] as f64)) as f32;
        let (mean, shift) = (mean as f32, b.map_or(0.0, |b| b[ch]));
        let x = &xs[at..at + row.len()];
        row.iter_mut().zip(x).for_each(|(y, &v)| *y = (v - mean) * scale + shift);
        if let Some(r) = r {
            row.iter_mut().zip(&r[at..]).for_each(|(y, &v)| *y += v);
        }
        if relu {
            // `max` would turn NaN into 0; torch.relu keeps it.
            row.iter_mut().for_each(|y| *y = if *y < 0.0 { 0.0 } else { *y });
        }
    });
}

/// The input gradient (training formula with `sums`, else `scale·dy'`);
/// `dres`, when given, receives `dy'`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    gs: &[f32],
    xs: &[f32],
    ys: Option<&[f32]>,
    d: &ChannelDims,
    ms: &[(f64, f64)],
    w: Option<&[f32]>,
    sums: Option<(&[f32], &[f32])>,
    out: &mut [f32],
    dres: Option<&mut [f32]>,
) {
    let m = d.count() as f64;
    each_row(out, d, |ch, at, row| {
        let (mean, rstd) = ms[ch];
        let scale = rstd * w.map_or(1.0, |w| w[ch] as f64);
        // scale·(dy' − Σdy'/M − xhat·Σdy'xhat/M) = a·dy' − b − (x − mean)·k.
        let (b, k) = sums.map_or((0.0, 0.0), |(sb, sw)| (scale * sb[ch] as f64 / m, scale * rstd * sw[ch] as f64 / m));
        let (a, b, k, mean) = (scale as f32, b as f32, k as f32, mean as f32);
        let (g, x) = (&gs[at..at + row.len()], &xs[at..at + row.len()]);
        let y = ys.map(|ys| &ys[at..at + row.len()]);
        let dyp = |i: usize| masked(g[i], y.map(|y| y[i]));
        if sums.is_some() {
            row.iter_mut().enumerate().for_each(|(i, o)| *o = a * dyp(i) - b - (x[i] - mean) * k);
        } else {
            row.iter_mut().enumerate().for_each(|(i, o)| *o = a * dyp(i));
        }
    });
    if let Some(dres) = dres {
        par_chunks(dres, 1, GRAIN, |start, chunk| {
            for (i, o) in chunk.iter_mut().enumerate() {
                *o = masked(gs[start + i], ys.map(|y| y[start + i]));
            }
        });
    }
}

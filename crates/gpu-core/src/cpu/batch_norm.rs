//! Fast batch-norm paths over `[A, C, B]` data (`ChannelDims`): rows of `B`
//! contiguous values share one channel, so per-channel constants are worked
//! out once per row and the inner loops are plain f32 arithmetic over
//! slices; channel sums (f64, in the reference's order) run one channel per
//! task, rows per task in the elementwise passes.

use rayon::prelude::*;

use super::simd::multiversion;
use super::{lanes, par_chunks, GRAIN};
use crate::kernels::batch_norm::ChannelDims;

/// Elements of a row masked at a time on the stack before summing.
const ROW_BLOCK: usize = 256;

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

/// `dy` masked by a fused ReLU's output `y` (zero where `y <= 0`; a NaN
/// output passes it, as PyTorch's `threshold_backward`).
#[inline(always)]
fn masked(dy: f32, y: Option<f32>) -> f32 {
    match y {
        Some(y) if !crate::kernels::unary::relu_passes(y) => 0.0,
        _ => dy,
    }
}

/// For `[A, C]` data (`inner` 1, layer norm's affine and `BatchNorm1d`):
/// `K` sums per channel, from `zero`, each adding the rows in order.
/// Channels go to the cores in chunks, each sweeping every row over its
/// chunk's contiguous columns (one channel per task would walk memory at a
/// stride of C): `row(at, c0, sums)` adds the row whose chunk starts at
/// element `at` (first channel `c0`) into the chunk's sums, a vector loop
/// across channels (one sum per channel per row, as the reference adds).
fn column_sweep<const K: usize>(
    d: &ChannelDims,
    zero: f64,
    row: impl Fn(usize, usize, &mut [Vec<f64>; K]) + Sync,
) -> [Vec<f64>; K] {
    let c = d.channels;
    let per = c.div_ceil(rayon::current_num_threads()).max(16);
    let chunk = |t: usize| {
        let (c0, c1) = (t * per, ((t + 1) * per).min(c));
        let mut sums: [Vec<f64>; K] = std::array::from_fn(|_| vec![zero; c1 - c0]);
        for a in 0..d.outer {
            row(a * c + c0, c0, &mut sums);
        }
        sums
    };
    let chunks: Vec<[Vec<f64>; K]> = if d.outer * c <= GRAIN {
        (0..c.div_ceil(per)).map(chunk).collect()
    } else {
        (0..c.div_ceil(per)).into_par_iter().map(chunk).collect()
    };
    std::array::from_fn(|k| chunks.iter().flat_map(|sums| sums[k].iter().copied()).collect())
}

multiversion! {
    /// `sums[j] += zero + x[j]` (moments' first pass, one row of a chunk).
    fn add_values(sums: &mut [f64], xs: &[f32], zero: f64) {
        for (s, &x) in sums.iter_mut().zip(xs) {
            *s += zero + x as f64;
        }
    }
}

multiversion! {
    /// `sums[j] += zero + (x[j] − mean[j])²` (moments' second pass).
    fn add_square_deviations(sums: &mut [f64], xs: &[f32], means: &[f64], zero: f64) {
        for ((s, &x), &m) in sums.iter_mut().zip(xs).zip(means) {
            *s += zero + (x as f64 - m).powi(2);
        }
    }
}

multiversion! {
    /// `s[j] += dy'`, `sx[j] += dy'·(x − mean)·rstd` over one row of a
    /// chunk, `dy'` masked by a fused ReLU's output `ys` if any.
    fn add_grad_sums(s: &mut [f64], sx: &mut [f64], gs: &[f32], ys: Option<&[f32]>, xs: &[f32], ms: &[(f64, f64)]) {
        let add = |(s, sx): (&mut f64, &mut f64), g: f32, x: f32, (mean, rstd): (f64, f64)| {
            let g = g as f64;
            *s += g;
            *sx += g * (x as f64 - mean) * rstd;
        };
        let acc = s.iter_mut().zip(sx.iter_mut());
        match ys {
            None => acc.zip(gs).zip(xs).zip(ms).for_each(|(((a, &g), &x), &m)| add(a, g, x, m)),
            Some(ys) => acc.zip(gs.iter().zip(ys)).zip(xs).zip(ms).for_each(|(((a, (&g, &y)), &x), &m)| {
                add(a, masked(g, Some(y)), x, m)
            }),
        }
    }
}

/// Per channel `(mean, Σ(x − mean)²)`, two passes in f64 as the reference.
pub(crate) fn moments(xs: &[f32], d: &ChannelDims) -> Vec<(f64, f64)> {
    if d.inner == 1 {
        // The reference sums each one-element row with `Iterator::sum` and
        // then the row sums: the same start value, the same order.
        let zero: f64 = std::iter::empty::<f64>().sum();
        let [sums] = column_sweep(d, zero, |at, _, [s]| {
            let w = s.len();
            add_values(s, &xs[at..][..w], zero)
        });
        let means: Vec<f64> = sums.iter().map(|s| s / d.count() as f64).collect();
        let [m2] = column_sweep(d, zero, |at, c0, [s]| {
            let w = s.len();
            add_square_deviations(s, &xs[at..][..w], &means[c0..][..w], zero)
        });
        return means.into_iter().zip(m2).collect();
    }
    per_channel(d, |ch| {
        let mean = rows(d, ch).map(|r| row_sum(&xs[r])).sum::<f64>() / d.count() as f64;
        let m2 = rows(d, ch).map(|r| row_square_deviations(&xs[r], mean)).sum::<f64>();
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
    if d.inner == 1 {
        let [s, sx] = column_sweep(d, 0.0, |at, c0, [s, sx]| {
            let w = s.len();
            add_grad_sums(s, sx, &gs[at..][..w], ys.map(|y| &y[at..][..w]), &xs[at..][..w], &ms[c0..][..w]);
        });
        return s.into_iter().zip(sx).collect();
    }
    per_channel(d, |ch| {
        let (mean, rstd) = ms[ch];
        let (mut s, mut sx) = (0.0f64, 0.0f64);
        for r in rows(d, ch) {
            // Σdy'·(x − mean), times rstd once per row.
            let (a, b) = match ys {
                None => row_grad_sums(&gs[r.clone()], &xs[r], mean),
                Some(ys) => row_masked_grad_sums(&gs[r.clone()], &ys[r.clone()], &xs[r], mean),
            };
            s += a;
            sx += b * rstd;
        }
        (s, sx)
    })
}

/// Calls `f(ch, start, out_row)` for every row of `out` (`[A, C, B]`), the
/// rows split over all cores; `start` is the row's first element index.
fn each_row(out: &mut [f32], d: &ChannelDims, f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    if d.inner == 1 {
        // One-element rows: hand out whole `[C]` rows so the division by
        // the row length happens once per C elements.
        let c = d.channels.max(1);
        return par_chunks(out, c, GRAIN, |start, chunk| {
            for (i, row) in chunk.chunks_mut(c).enumerate() {
                for (ch, y) in row.chunks_mut(1).enumerate() {
                    f(ch, start + i * c + ch, y);
                }
            }
        });
    }
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
    // (mean, scale, shift) per channel, in f32.
    let consts: Vec<(f32, f32, f32)> = (0..d.channels)
        .map(|ch| {
            let (mean, rstd) = ms[ch];
            let scale = (rstd * w.map_or(1.0, |w| w[ch] as f64)) as f32;
            (mean as f32, scale, b.map_or(0.0, |b| b[ch]))
        })
        .collect();
    each_row(ys, d, |ch, at, row| {
        let (mean, scale, shift) = consts[ch];
        let n = row.len();
        normalize_row(&xs[at..at + n], r.map(|r| &r[at..at + n]), mean, scale, shift, relu, row);
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
    // (a, b, k, mean) per channel, in f32: scale·(dy' − Σdy'/M −
    // xhat·Σdy'xhat/M) = a·dy' − b − (x − mean)·k.
    let consts: Vec<(f32, f32, f32, f32)> = (0..d.channels)
        .map(|ch| {
            let (mean, rstd) = ms[ch];
            let scale = rstd * w.map_or(1.0, |w| w[ch] as f64);
            let (b, k) =
                sums.map_or((0.0, 0.0), |(sb, sw)| (scale * sb[ch] as f64 / m, scale * rstd * sw[ch] as f64 / m));
            (scale as f32, b as f32, k as f32, mean as f32)
        })
        .collect();
    each_row(out, d, |ch, at, row| {
        let (a, b, k, mean) = consts[ch];
        let (g, x) = (&gs[at..at + row.len()], &xs[at..at + row.len()]);
        let y = ys.map(|ys| &ys[at..at + row.len()]);
        backward_row(g, x, y, a, b, k, mean, sums.is_some(), row);
    });
    if let Some(dres) = dres {
        par_chunks(dres, 1, GRAIN, |start, chunk| {
            let g = &gs[start..start + chunk.len()];
            match ys {
                None => chunk.copy_from_slice(g),
                Some(ys) => {
                    let y = &ys[start..start + chunk.len()];
                    chunk.iter_mut().zip(g).zip(y).for_each(|((o, &g), &y)| *o = masked(g, Some(y)));
                }
            }
        });
    }
}

multiversion! {
    /// `Σ x` over one row, in lanes.
    fn row_sum(xs: &[f32]) -> f64 {
        lanes::sum(xs, |v| v as f64)
    }
}

multiversion! {
    /// `Σ (x − mean)²` over one row, in lanes.
    fn row_square_deviations(xs: &[f32], mean: f64) -> f64 {
        lanes::sum(xs, |v| (v as f64 - mean).powi(2))
    }
}

multiversion! {
    /// `(Σ dy, Σ dy·(x − mean))` over one row, in lanes.
    fn row_grad_sums(gs: &[f32], xs: &[f32], mean: f64) -> (f64, f64) {
        lanes::sum2(gs, xs, |g, x| (g as f64, g as f64 * (x as f64 - mean)))
    }
}

multiversion! {
    /// [`row_grad_sums`] of `dy` masked by a fused ReLU's output `y`: the
    /// mask is applied a block at a time on the stack, then the same sums.
    fn row_masked_grad_sums(gs: &[f32], ys: &[f32], xs: &[f32], mean: f64) -> (f64, f64) {
        let mut sums = (0.0, 0.0);
        for ((g, y), x) in gs.chunks(ROW_BLOCK).zip(ys.chunks(ROW_BLOCK)).zip(xs.chunks(ROW_BLOCK)) {
            let mut dy = [0.0f32; ROW_BLOCK];
            for ((d, &g), &y) in dy.iter_mut().zip(g).zip(y) {
                *d = masked(g, Some(y));
            }
            let (u, v) = lanes::sum2(&dy[..g.len()], x, |g, x| (g as f64, g as f64 * (x as f64 - mean)));
            sums = (sums.0 + u, sums.1 + v);
        }
        sums
    }
}

multiversion! {
    /// One row of the forward pass: `(x − mean)·scale + shift (+ r)`, then
    /// the ReLU when fused.
    fn normalize_row(x: &[f32], r: Option<&[f32]>, mean: f32, scale: f32, shift: f32, relu: bool, out: &mut [f32]) {
        out.iter_mut().zip(x).for_each(|(y, &v)| *y = (v - mean) * scale + shift);
        if let Some(r) = r {
            out.iter_mut().zip(r).for_each(|(y, &v)| *y += v);
        }
        if relu {
            // The unary table's ReLU (the fuser merges that op into this
            // store): NaN and -0.0 kept, as there and in PyTorch.
            out.iter_mut().for_each(|y| *y = crate::kernels::unary::relu(*y));
        }
    }
}

multiversion! {
    /// One row of the input gradient: `a·dy' − b − (x − mean)·k` in
    /// training (`train`), `a·dy'` otherwise, `dy'` being `g` masked by the
    /// fused ReLU's output `y` when there is one. One loop per case, the
    /// choices made outside it, so that each vectorizes.
    fn backward_row(g: &[f32], x: &[f32], y: Option<&[f32]>, a: f32, b: f32, k: f32, mean: f32, train: bool, out: &mut [f32]) {
        match (y, train) {
            (None, true) => out.iter_mut().zip(g).zip(x).for_each(|((o, &g), &x)| *o = a * g - b - (x - mean) * k),
            (None, false) => out.iter_mut().zip(g).for_each(|(o, &g)| *o = a * g),
            (Some(y), true) => out
                .iter_mut()
                .zip(g)
                .zip(x)
                .zip(y)
                .for_each(|(((o, &g), &x), &y)| *o = a * masked(g, Some(y)) - b - (x - mean) * k),
            (Some(y), false) => out.iter_mut().zip(g).zip(y).for_each(|((o, &g), &y)| *o = a * masked(g, Some(y))),
        }
    }
}

//! Fast attention: per batch·head (split over all cores) the scores as one
//! sgemm `S = Q Kᵀ`, the masked softmax row by row, and the outputs and
//! gradients as sgemms over the `Lq × Lk` probabilities, in f32 (the
//! reference twin in `kernels/attention.rs` accumulates in f64 and never holds
//! the score matrix; this path holds one `Lq × Lk` block per running task).
//! With a causal mask the rows go in blocks of [`CAUSAL_ROWS`], each over
//! only the keys up to its last row: the products skip the hidden upper
//! triangle (about 40% of the work at 128 x 128), as flash attention's
//! tiles do.

use rayon::prelude::*;

use super::gemm::{gemm, Mat};
use super::lanes::LANES;
use super::simd::multiversion;
use crate::kernels::attention::{AttnDims, Inputs};
use crate::kernels::fast_math::exp;

/// Query rows per block under a causal mask: small enough to skip most of
/// the hidden triangle, large enough that each block's products keep the
/// packed-A kernel's tiles full.
const CAUSAL_ROWS: usize = 32;

multiversion! {
    /// `row[j] = e^(row[j] − m)`, exactly 0 for a hidden key (−∞, which
    /// the branch-free `exp` maps to 0 as libm does); returns their sum. The branch-free `exp` and the sum's independent
    /// lanes let the loop vectorize (libm's `expf` was a call per score,
    /// and one chain of adds kept it scalar).
    fn exp_shifted(row: &mut [f32], m: f32) -> f32 {
        let mut lanes = [0.0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (l, s) in lanes.iter_mut().zip(c) {
                *s = exp(*s - m);
                *l += *s;
            }
        }
        let mut sum = 0.0;
        for s in chunks.into_remainder() {
            *s = exp(*s - m);
            sum += *s;
        }
        lanes.iter().sum::<f32>() + sum
    }
}

multiversion! {
    /// The row's largest score (−∞ when all are hidden), in independent
    /// lanes.
    fn row_max(row: &[f32]) -> f32 {
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (l, &s) in lanes.iter_mut().zip(c) {
                *l = if s > *l { s } else { *l };
            }
        }
        chunks.remainder().iter().chain(&lanes).copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

multiversion! {
    /// `row[j] /= sum`.
    fn divide(row: &mut [f32], sum: f32) {
        row.iter_mut().for_each(|s| *s /= sum);
    }
}

multiversion! {
    /// The score gradient `ds[j] = p[j] · (ds[j] − δ) · scale` (`ds` holds
    /// `dP` on entry), `δ = dO_i · O_i` summed in independent lanes.
    fn score_grad(ds: &mut [f32], p: &[f32], g: &[f32], o: &[f32], scale: f32) {
        let mut lanes = [0.0f32; LANES];
        let (mut cg, mut co) = (g.chunks_exact(LANES), o.chunks_exact(LANES));
        for (x, y) in (&mut cg).zip(&mut co) {
            for l in 0..LANES {
                lanes[l] += x[l] * y[l];
            }
        }
        let tail: f32 = cg.remainder().iter().zip(co.remainder()).map(|(a, b)| a * b).sum();
        let delta = lanes.iter().sum::<f32>() + tail;
        ds.iter_mut().zip(p).for_each(|(s, &pv)| *s = pv * (*s - delta) * scale);
    }
}

/// `c = alpha · a (m×k) @ b (k×n) + beta · c`, `c` dense row-major.
#[allow(clippy::too_many_arguments)]
fn product(m: usize, k: usize, n: usize, alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32]) {
    gemm((m, k, n), alpha, a, b, beta, c, n);
}

impl Inputs<'_> {
    /// The blocks of query rows a head is computed in, each with the keys
    /// it sees: all rows over all keys, or under a causal mask blocks of
    /// [`CAUSAL_ROWS`] over the keys up to their last row.
    fn blocks(&self) -> impl Iterator<Item = (std::ops::Range<usize>, usize)> {
        let AttnDims { lq, lk, .. } = self.dims;
        let rows = if self.causal { CAUSAL_ROWS } else { lq.max(1) };
        let causal = self.causal;
        (0..lq).step_by(rows).map(move |r0| {
            let r1 = (r0 + rows).min(lq);
            (r0..r1, if causal { r1.min(lk) } else { lk })
        })
    }

    /// The scaled, masked scores of batch·head `bh`, query rows `rows`
    /// over keys `0..kn`, into `s` (`rows.len() × kn`), −∞ where a key is
    /// hidden.
    fn scores(&self, bh: usize, rows: std::ops::Range<usize>, kn: usize, s: &mut [f32]) {
        let AttnDims { heads, lq, lk, d, .. } = self.dims;
        let (q, k) = (&self.q[bh * lq * d..][rows.start * d..rows.end * d], &self.k[bh * lk * d..][..kn * d]);
        product(rows.len(), d, kn, self.scale, Mat::rows(q, d), Mat::transposed(k, d), 0.0, s);
        for (r, i) in rows.enumerate() {
            let row = &mut s[r * kn..(r + 1) * kn];
            if let Some((m, st)) = self.mask {
                let base = (bh / heads) * st[0] + (bh % heads) * st[1] + i * st[2];
                row.iter_mut().enumerate().for_each(|(j, x)| *x += m[base + j * st[3]]);
            }
            if self.causal && i + 1 < kn {
                row[i + 1..].fill(f32::NEG_INFINITY);
            }
        }
    }
}

/// Forward: `out [B·H, Lq, Dv]` and `lse [B·H, Lq]` (zeros and +∞ for a
/// row whose keys are all hidden).
pub(crate) fn forward(x: &Inputs, out: &mut [f32], lse: &mut [f32]) {
    let AttnDims { lq, lk, dv, .. } = x.dims;
    let bhs = x.dims.bh();
    out[..bhs * lq * dv]
        .par_chunks_mut((lq * dv).max(1))
        .zip(lse[..bhs * lq].par_chunks_mut(lq.max(1)))
        .enumerate()
        .for_each_init(Vec::new, |p, (bh, (out, lse))| {
            for (rows, kn) in x.blocks() {
                p.resize(rows.len() * kn, 0.0);
                x.scores(bh, rows.clone(), kn, p);
                for (r, l) in lse[rows.clone()].iter_mut().enumerate() {
                    // A row of no keys (kn = 0) is all hidden.
                    let row = &mut p[r * kn..(r + 1) * kn];
                    let m = row_max(row);
                    if m == f32::NEG_INFINITY {
                        row.fill(0.0);
                        *l = f32::INFINITY;
                        continue;
                    }
                    let sum = exp_shifted(row, m);
                    divide(row, sum);
                    *l = m + sum.ln();
                }
                let (v, o) = (&x.v[bh * lk * dv..][..kn * dv], &mut out[rows.start * dv..rows.end * dv]);
                product(rows.len(), kn, dv, 1.0, Mat::rows(p, kn), Mat::rows(v, dv), 0.0, o);
            }
        });
}

/// Backward: `(dq, dk, dv)` from the forward's `out`, `lse` and the output
/// gradient `dout`.
pub(crate) fn backward(
    x: &Inputs,
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let AttnDims { lq, lk, d, dv: w, .. } = x.dims;
    let bhs = x.dims.bh();
    dq[..bhs * lq * d]
        .par_chunks_mut((lq * d).max(1))
        .zip(dk[..bhs * lk * d].par_chunks_mut((lk * d).max(1)))
        .zip(dv[..bhs * lk * w].par_chunks_mut((lk * w).max(1)))
        .enumerate()
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(p, ds), (bh, ((dq, dk), dv))| {
                let (o, g) = (&out[bh * lq * w..][..lq * w], &dout[bh * lq * w..][..lq * w]);
                let (q, k, v) =
                    (&x.q[bh * lq * d..][..lq * d], &x.k[bh * lk * d..][..lk * d], &x.v[bh * lk * w..][..lk * w]);
                // dK and dV sum over the blocks of rows.
                dk.fill(0.0);
                dv.fill(0.0);
                for (rows, kn) in x.blocks() {
                    let n = rows.len();
                    // P = exp(S − lse), zero where hidden or the whole row is.
                    p.resize(n * kn, 0.0);
                    x.scores(bh, rows.clone(), kn, p);
                    for (r, &l) in lse[bh * lq..][rows.clone()].iter().enumerate() {
                        let row = &mut p[r * kn..(r + 1) * kn];
                        if l == f32::INFINITY {
                            row.fill(0.0);
                        } else {
                            exp_shifted(row, l);
                        }
                    }
                    let (gb, ob, qb) = (
                        &g[rows.start * w..rows.end * w],
                        &o[rows.start * w..rows.end * w],
                        &q[rows.start * d..rows.end * d],
                    );
                    // dV += Pᵀ dO; dP = dO Vᵀ; dS = P (dP − δ) · scale with δ_i = dO_i · O_i.
                    product(kn, n, w, 1.0, Mat::transposed(p, kn), Mat::rows(gb, w), 1.0, &mut dv[..kn * w]);
                    ds.resize(n * kn, 0.0);
                    product(n, w, kn, 1.0, Mat::rows(gb, w), Mat::transposed(&v[..kn * w], w), 0.0, ds);
                    for i in 0..n {
                        let (dsr, pr) = (&mut ds[i * kn..(i + 1) * kn], &p[i * kn..(i + 1) * kn]);
                        score_grad(dsr, pr, &gb[i * w..][..w], &ob[i * w..][..w], x.scale);
                    }
                    // dQ = dS K; dK += dSᵀ Q.
                    let dqb = &mut dq[rows.start * d..rows.end * d];
                    product(n, kn, d, 1.0, Mat::rows(ds, kn), Mat::rows(&k[..kn * d], d), 0.0, dqb);
                    product(kn, n, d, 1.0, Mat::transposed(ds, kn), Mat::rows(qb, d), 1.0, &mut dk[..kn * d]);
                }
            },
        );
}

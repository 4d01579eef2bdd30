//! Fast attention: per batch·head (split over all cores) the scores as one
//! sgemm `S = Q Kᵀ`, the masked softmax row by row, and the outputs and
//! gradients as sgemms over the `Lq × Lk` probabilities, in f32 (the
//! reference twin in `kernels/attention.rs` accumulates in f64 and never holds
//! the score matrix; this path holds one `Lq × Lk` block per running task).

use rayon::prelude::*;

use super::gemm::{gemm, Mat};
use super::simd::multiversion;
use crate::kernels::attention::{AttnDims, Inputs};
use crate::kernels::fast_math::exp;

multiversion! {
    /// `row[j] = e^(row[j] − m)`, exactly 0 for a hidden key (−∞; the
    /// branch-free `exp` clamps its argument, so it would give 1e-38);
    /// returns their sum. The branch-free `exp` lets the loop vectorize
    /// (libm's `expf` was a call per score).
    fn exp_shifted(row: &mut [f32], m: f32) -> f32 {
        let mut sum = 0.0;
        for s in row.iter_mut() {
            *s = if *s == f32::NEG_INFINITY { 0.0 } else { exp(*s - m) };
            sum += *s;
        }
        sum
    }
}

/// `c = alpha · a (m×k) @ b (k×n)`, `c` dense row-major (overwritten).
fn product(m: usize, k: usize, n: usize, alpha: f32, a: Mat, b: Mat, c: &mut [f32]) {
    gemm((m, k, n), alpha, a, b, 0.0, c, n);
}

impl Inputs<'_> {
    /// The scaled, masked scores of batch·head `bh` into `s` (`Lq × Lk`),
    /// −∞ where a key is hidden.
    fn scores(&self, bh: usize, s: &mut [f32]) {
        let AttnDims { heads, lq, lk, d, .. } = self.dims;
        let (q, k) = (&self.q[bh * lq * d..][..lq * d], &self.k[bh * lk * d..][..lk * d]);
        product(lq, d, lk, self.scale, Mat::rows(q, d), Mat::transposed(k, d), s);
        for i in 0..lq {
            let row = &mut s[i * lk..(i + 1) * lk];
            if let Some((m, st)) = self.mask {
                let base = (bh / heads) * st[0] + (bh % heads) * st[1] + i * st[2];
                row.iter_mut().enumerate().for_each(|(j, x)| *x += m[base + j * st[3]]);
            }
            if self.causal && i + 1 < lk {
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
        .for_each(|(bh, (out, lse))| {
            let mut p = vec![0.0f32; lq * lk];
            x.scores(bh, &mut p);
            for (i, l) in lse.iter_mut().enumerate() {
                let row = &mut p[i * lk..(i + 1) * lk];
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if m == f32::NEG_INFINITY {
                    row.fill(0.0);
                    *l = f32::INFINITY;
                    continue;
                }
                let sum = exp_shifted(row, m);
                row.iter_mut().for_each(|s| *s /= sum);
                *l = m + sum.ln();
            }
            product(lq, lk, dv, 1.0, Mat::rows(&p, lk), Mat::rows(&x.v[bh * lk * dv..][..lk * dv], dv), out);
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
        .for_each(|(bh, ((dq, dk), dv))| {
            let (o, g) = (&out[bh * lq * w..][..lq * w], &dout[bh * lq * w..][..lq * w]);
            let (q, k, v) =
                (&x.q[bh * lq * d..][..lq * d], &x.k[bh * lk * d..][..lk * d], &x.v[bh * lk * w..][..lk * w]);
            // P = exp(S − lse), zero where hidden or the whole row is.
            let mut p = vec![0.0f32; lq * lk];
            x.scores(bh, &mut p);
            for (i, &l) in lse[bh * lq..][..lq].iter().enumerate() {
                let row = &mut p[i * lk..(i + 1) * lk];
                if l == f32::INFINITY {
                    row.fill(0.0);
                } else {
                    exp_shifted(row, l);
                }
            }
            // dV = Pᵀ dO; dP = dO Vᵀ; dS = P (dP − δ) · scale with δ_i = dO_i · O_i.
            product(lk, lq, w, 1.0, Mat::transposed(&p, lk), Mat::rows(g, w), dv);
            let mut ds = vec![0.0f32; lq * lk];
            product(lq, w, lk, 1.0, Mat::rows(g, w), Mat::transposed(v, w), &mut ds);
            for i in 0..lq {
                let (dsr, pr) = (&mut ds[i * lk..(i + 1) * lk], &p[i * lk..(i + 1) * lk]);
                let delta: f32 = g[i * w..][..w].iter().zip(&o[i * w..][..w]).map(|(a, b)| a * b).sum();
                dsr.iter_mut().zip(pr).for_each(|(s, &pv)| *s = pv * (*s - delta) * x.scale);
            }
            // dQ = dS K; dK = dSᵀ Q.
            product(lq, lk, d, 1.0, Mat::rows(&ds, lk), Mat::rows(k, d), dq);
            product(lk, lq, d, 1.0, Mat::transposed(&ds, lk), Mat::rows(q, d), dk);
        });
}

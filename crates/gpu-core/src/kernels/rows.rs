//! The row kernels' (softmax, cross-entropy, layer and group norm)
//! reference twins, one row at a time, and their shader variants: f16
//! inputs and texture operands. The launches are `ops/softmax.rs` and
//! `ops/norm.rs`; the twins accumulate in f64, the more exact side and so a
//! fair oracle for the kernels' reduction trees.

use super::io::{Binding, IoLibrary, Storage};
use super::variants::{FamilyShaders, Variant};

/// The shaders this family derives from its files by swapping includes,
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("softmax_f16", "softmax", &[("load_x_f32", "load_x_f16")]),
        Variant::new("softmax_f16_native", "softmax", &[("load_x_f32", "load_x_f16_native")]).f16(),
        Variant::new("norm_f16", "norm", &[("load_x_f32", "load_x_f16")]),
        Variant::new("norm_f16_native", "norm", &[("load_x_f32", "load_x_f16_native")]).f16(),
        Variant::new("softmax_tex", "softmax", &[("load_x_f32", "load_x_tex"), ("row_grads_f32", "row_grads_tex")]),
        Variant::new("norm_tex", "norm", &[("load_x_f32", "load_x_tex"), ("row_grads_f32", "row_grads_tex")]),
    ],
    io: &[
        // The input x (binding 1) of the row kernels, and of reduce.wgsl and
        // unary.wgsl too: f16 inputs are widened on load, outputs stay f32.
        IoLibrary { stem: "load_x", storages: Storage::ALL, bindings: &[Binding::load("x", 1)] },
        // The backward passes' output gradient dy and forward output y.
        IoLibrary {
            stem: "row_grads",
            storages: Storage::F32_TEX,
            bindings: &[Binding::load("dy", 1), Binding::load("y", 2)],
        },
    ],
};

/// The row statistics softmax and cross-entropy share: (max, Σ exp(x − max)),
/// each exp(x − max) left in `exps` (computed once: a libm call each).
fn row_stats(row: &[f32], exps: &mut [f32]) -> (f32, f32) {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = -0.0f64;
    for (e, &v) in exps.iter_mut().zip(row) {
        *e = (v - m).exp();
        s += *e as f64;
    }
    (m, s as f32)
}

/// Softmax of one row `x` into `y`, `exp(x − max) / Σ exp(x − max)`, or
/// log-softmax when `log`, `(x − max) − ln Σ exp(x − max)`
/// (`torch.softmax` / `torch.log_softmax` over the last dim).
pub(crate) fn softmax_row(x: &[f32], y: &mut [f32], log: bool) {
    let (m, s) = row_stats(x, y);
    let log_s = s.ln();
    for (y, &v) in y.iter_mut().zip(x) {
        *y = if log { (v - m) - log_s } else { *y / s };
    }
}

/// Backward of [`softmax_row`] from its output `y` and the output gradient
/// `dy`: `dx = y·(dy − Σ dy·y)`, or `dx = dy − exp(y)·Σ dy` when `log`.
pub(crate) fn softmax_backward_row(y: &[f32], dy: &[f32], dx: &mut [f32], log: bool) {
    let s = if log {
        dy.iter().map(|&g| g as f64).sum::<f64>() as f32
    } else {
        dy.iter().zip(y).map(|(&g, &y)| g as f64 * y as f64).sum::<f64>() as f32
    };
    for ((d, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
        *d = if log { g - yv.exp() * s } else { yv * (g - s) };
    }
}

/// A cross-entropy's options as its twins read them (`ops::softmax::CeArgs`
/// without its buffers): see `ops/softmax.rs` for the target
/// distribution `q` they define.
#[derive(Clone, Copy)]
pub(crate) struct CrossEntropy {
    /// Classes per row.
    pub(crate) cols: usize,
    /// Whether the targets are probability rows (else class indices).
    pub(crate) probs: bool,
    /// A class index whose rows contribute nothing (class targets only).
    pub(crate) ignore_index: Option<u32>,
    /// Label smoothing in `[0, 1]`.
    pub(crate) label_smoothing: f32,
}

/// One row's class target as both twins read it (the kernel's `RowTarget`).
#[derive(Clone, Copy)]
struct RowTarget {
    t: usize,
    /// w_t; 0 when ignored, NaN when out of range.
    w: f32,
    ignored: bool,
    bad: bool,
}

impl CrossEntropy {
    fn row_target(&self, r: usize, targets: &[u32], weights: Option<&[f32]>) -> RowTarget {
        if self.probs {
            return RowTarget { t: 0, w: 1.0, ignored: false, bad: false };
        }
        let t = targets[r];
        if self.ignore_index == Some(t) {
            return RowTarget { t: t as usize, w: 0.0, ignored: true, bad: false };
        }
        let t = t as usize;
        if t >= self.cols {
            return RowTarget { t, w: f32::NAN, ignored: false, bad: true };
        }
        RowTarget { t, w: weights.map_or(1.0, |w| w[t]), ignored: false, bad: false }
    }

    /// q_c of row `r` (`ops/softmax.rs`'s module docs).
    fn mass(&self, r: usize, c: usize, rt: RowTarget, targets: &[u32], weights: Option<&[f32]>) -> f32 {
        let e = self.label_smoothing;
        let smooth = e / self.cols as f32;
        let wc = weights.map_or(1.0, |w| w[c]);
        if self.probs {
            return wc * ((1.0 - e) * f32::from_bits(targets[r * self.cols + c]) + smooth);
        }
        let q = smooth * wc;
        if c == rt.t {
            q + (1.0 - e) * rt.w
        } else {
            q
        }
    }

    /// Row `r` of the fused softmax cross-entropy of the logits `x`
    /// (`torch.nn.functional.cross_entropy` with `reduction='none'`):
    /// writes the softmax into `probs` and returns (loss, the weight
    /// `'mean'` divides by); 0 and 0 for an ignored row, a NaN loss for a
    /// class index out of range. `targets` holds every row's class index,
    /// or every row's probabilities as f32 bits.
    pub(crate) fn forward_row(
        &self,
        r: usize,
        x: &[f32],
        targets: &[u32],
        weights: Option<&[f32]>,
        probs: &mut [f32],
    ) -> (f32, f32) {
        let rt = self.row_target(r, targets, weights);
        let (m, s) = row_stats(x, probs);
        let log_s = s.ln();
        let mut acc = 0.0f64;
        for (c, &v) in x.iter().enumerate() {
            let z = v - m;
            probs[c] /= s;
            // As the kernel: a class target's classes of no mass add
            // nothing (a masked logit of -inf gives PyTorch's finite loss).
            let q = self.mass(r, c, rt, targets, weights);
            if !rt.ignored && !rt.bad && (self.probs || q != 0.0) {
                acc += q as f64 * (z - log_s) as f64;
            }
        }
        (if rt.bad { f32::NAN } else { -acc as f32 }, rt.w)
    }

    /// Backward of [`forward_row`](Self::forward_row) for row `r`, from its
    /// saved `probs` and the gradient `grad` of its loss:
    /// `dx_c = grad·(probs_c·Σ q − q_c)`, zeros for an ignored row, NaNs
    /// for a class index out of range.
    pub(crate) fn backward_row(
        &self,
        r: usize,
        probs: &[f32],
        grad: f32,
        targets: &[u32],
        weights: Option<&[f32]>,
        dx: &mut [f32],
    ) {
        let rt = self.row_target(r, targets, weights);
        let mass: f64 = (0..self.cols).map(|c| self.mass(r, c, rt, targets, weights) as f64).sum();
        for (c, d) in dx.iter_mut().enumerate() {
            let q = self.mass(r, c, rt, targets, weights);
            *d = if rt.bad {
                f32::NAN
            } else if rt.ignored {
                0.0
            } else {
                grad * (probs[c] * mass as f32 - q)
            };
        }
    }
}

/// One row of `torch.nn.functional.layer_norm` without its affine (and of
/// group and instance norm, whose rows the callers choose): writes
/// `y = (x − mean) · rstd`, `rstd = 1 / sqrt(var + eps)` with the biased
/// variance, and returns (mean, rstd).
pub(crate) fn normalize_row(row: &[f32], eps: f32, y: &mut [f32]) -> (f32, f32) {
    let cols = row.len() as f64;
    let m = row.iter().map(|&v| v as f64).sum::<f64>() / cols;
    let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / cols;
    let s = 1.0 / (var + eps as f64).sqrt();
    for (o, &v) in y.iter_mut().zip(row) {
        *o = ((v as f64 - m) * s) as f32;
    }
    (m as f32, s as f32)
}

/// Layer norm's affine on one normalised row: `z = y · weight + bias`
/// (no bias: 0), one weight and bias per column.
#[inline]
pub(crate) fn affine_row(y: &[f32], weight: &[f32], bias: Option<&[f32]>, z: &mut [f32]) {
    for (j, (zv, &yv)) in z.iter_mut().zip(y).enumerate() {
        *zv = yv * weight[j] + bias.map_or(0.0, |b| b[j]);
    }
}

/// Backward of [`normalize_row`] from its output `y` and `rstd`:
/// `dx = rstd · (g − mean(g) − y · mean(g · y))` with `g = dy`, or
/// `g = dy · w` (the product in f32, as the kernel takes it) for the
/// affine's weight `w`.
pub(crate) fn normalize_backward_row(dy: &[f32], w: Option<&[f32]>, y: &[f32], rstd: f32, dx: &mut [f32]) {
    let cols = dy.len() as f64;
    let g = |j: usize| w.map_or(dy[j], |w| dy[j] * w[j]) as f64;
    let mg = (0..dy.len()).map(g).sum::<f64>() / cols;
    let mgy = (0..dy.len()).map(|j| g(j) * y[j] as f64).sum::<f64>() / cols;
    for (j, d) in dx.iter_mut().enumerate() {
        *d = (rstd as f64 * (g(j) - mg - y[j] as f64 * mgy)) as f32;
    }
}

//! [`ChannelDims`]: the `[outer, channels, inner]` view batch and layer
//! norm work on, shared by the launches (`ops/batch_norm.rs`) and the fast
//! path (`cpu/batch_norm.rs`), and batch norm's reference twins: the
//! statistics, the fused forward, the gradient sums and the input gradient.

use super::io::{Binding, Elem, IoLibrary, Storage};
use super::variants::{FamilyShaders, Variant};

/// The `[outer, channels, inner]` view batch norm works on: statistics are
/// per channel, over `outer · inner` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelDims {
    /// Leading size (the batch N; layer norm's rows).
    pub outer: usize,
    /// Channels C (layer norm's normalised columns).
    pub channels: usize,
    /// Trailing size (H·W; 1 for `[N, C]` input and layer norm).
    pub inner: usize,
}

impl ChannelDims {
    /// `[N, C, *]` shape as dims.
    pub fn of_shape(shape: &[usize]) -> ChannelDims {
        assert!(shape.len() >= 2, "wgrad internal: ChannelDims needs rank ≥ 2, got {shape:?}");
        ChannelDims { outer: shape[0], channels: shape[1], inner: shape[2..].iter().product() }
    }

    /// All elements.
    pub fn numel(&self) -> usize {
        self.outer * self.channels * self.inner
    }

    /// Values per channel.
    pub fn count(&self) -> usize {
        self.outer * self.inner
    }
}

/// The shaders this family derives from its files by swapping includes,
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("batch_norm_f16", "batch_norm", &[("batch_norm_io_f32", "batch_norm_io_f16")]),
        Variant::new("batch_norm_f16_native", "batch_norm", &[("batch_norm_io_f32", "batch_norm_io_f16_native")]).f16(),
        Variant::new("batch_norm_tex", "batch_norm", &[("batch_norm_io_f32", "batch_norm_io_tex")]),
    ],
    io: &[IoLibrary {
        stem: "batch_norm_io",
        storages: Storage::ALL,
        bindings: &[
            // Activations: x (stats and forward), dy, x and the saved ReLU
            // output y (gradient entries), the residual; each entry binds its
            // own, so some share a number.
            Binding::load("x", 1).units().quads(),
            Binding::load("dy", 1).units().quads(),
            Binding::load("x2", 2).units().quads(),
            Binding::load("y", 3).units().quads(),
            Binding::load("res", 5).units().quads(),
            Binding::store("y", 5).quads(),
            Binding::store("y_res", 6).quads(),
            Binding::store("dx", 8).quads(),
            Binding::store("dres", 9).quads(),
            // Per channel, f32 in every variant: the forward's [mean; rstd],
            // weight and bias; the backward's statistics, weight and the sums
            // Σdy', Σdy'·xhat. A texture in the texture variant: on llvmpipe a
            // per-channel load costs what an activation's does when channels
            // differ between lanes, and the elementwise entries make several.
            Binding::load("fwd_stat", 2).of(Elem::F32),
            Binding::load("fwd_weight", 3).of(Elem::F32),
            Binding::load("fwd_bias", 4).of(Elem::F32),
            Binding::load("bwd_stat", 4).of(Elem::F32),
            Binding::load("bwd_weight", 5).of(Elem::F32),
            Binding::load("bwd_dbias", 6).of(Elem::F32),
            Binding::load("bwd_dweight", 7).of(Elem::F32),
        ],
    }],
};

// ---- Reference twins: the kernels' meaning over host slices, element by
// element, accumulating in f64 (the more exact side, so a fair oracle for
// the kernels' fixed-order reductions). Per-channel statistics are
// `(mean, rstd)` pairs; `[A, C, B]` data is flat, `d.numel()` long.

/// Per-channel index of flat element `i`.
pub(crate) fn channel(d: &ChannelDims, i: usize) -> usize {
    (i / d.inner) % d.channels
}

/// The output gradient behind a fused ReLU: `dy` where the output `y` is
/// positive, else 0; `dy` itself without one.
pub(crate) fn masked(dy: &[f32], y: Option<&[f32]>, i: usize) -> f64 {
    match y {
        Some(y) if !crate::kernels::unary::relu_passes(y[i]) => 0.0,
        _ => dy[i] as f64,
    }
}

/// Per channel `(mean, Σ(x − mean)²)` of `xs`, two passes in f64 (the
/// statistics kernels' `stats_partial` and `stats_final`).
pub(crate) fn moments(xs: &[f32], d: &ChannelDims) -> Vec<(f64, f64)> {
    let c = d.channels;
    let mut moments = vec![(0.0f64, 0.0f64); c];
    for (ch, m) in moments.iter_mut().enumerate() {
        let values =
            || (0..d.outer).flat_map(move |a| (0..d.inner).map(move |b| xs[(a * c + ch) * d.inner + b] as f64));
        let mean = values().sum::<f64>() / d.count() as f64;
        let m2 = values().map(|v| (v - mean).powi(2)).sum::<f64>();
        *m = (mean, m2);
    }
    moments
}

/// The `[mean; rstd]` statistics (`2·C`) of per-channel `moments` (from
/// [`moments`] or the fast path's): the biased variance,
/// `rstd = 1/sqrt(var + eps)`.
pub(crate) fn write_stats(moments: &[(f64, f64)], d: &ChannelDims, eps: f32, stats: &mut [f32]) {
    let c = d.channels;
    for (ch, &(mean, m2)) in moments.iter().enumerate() {
        stats[ch] = mean as f32;
        stats[c + ch] = (1.0 / (m2 / d.count() as f64 + eps as f64).sqrt()) as f32;
    }
}

/// The running statistics' update from per-channel `moments`, in place:
/// `(1 − momentum)·running + momentum·batch`, with the *unbiased* variance
/// (PyTorch's rule).
pub(crate) fn update_running(moments: &[(f64, f64)], d: &ChannelDims, momentum: f32, rm: &mut [f32], rv: &mut [f32]) {
    let keep = 1.0 - momentum as f64;
    for (ch, &(mean, m2)) in moments.iter().enumerate() {
        rm[ch] = (keep * rm[ch] as f64 + momentum as f64 * mean) as f32;
        let unbiased = m2 / (d.count() as f64 - 1.0);
        rv[ch] = (keep * rv[ch] as f64 + momentum as f64 * unbiased) as f32;
    }
}

/// Evaluation statistics (`eval_stats`): `[mean; 1/sqrt(var + eps)]` of the
/// running `mean` and `var`, one channel per element.
pub(crate) fn eval_stats(mean: &[f32], var: &[f32], eps: f32, stats: &mut [f32]) {
    let channels = mean.len();
    for ch in 0..channels {
        stats[ch] = mean[ch];
        stats[channels + ch] = (1.0 / (var[ch] as f64 + eps as f64).sqrt()) as f32;
    }
}

/// The fused forward (`forward*`): `out = act(xhat · w + bias + r)` per
/// element, `xhat = (x − mean) · rstd` with the per-channel `ms`, each of
/// weight, bias and residual `r` optional, `act` a ReLU when `relu`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    xs: &[f32],
    d: &ChannelDims,
    ms: &[(f64, f64)],
    w: Option<&[f32]>,
    bi: Option<&[f32]>,
    r: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
) {
    for (i, out) in out.iter_mut().enumerate() {
        let ch = channel(d, i);
        let (mean, rstd) = ms[ch];
        let mut v = (xs[i] as f64 - mean) * rstd;
        if let Some(w) = w {
            v *= w[ch] as f64;
        }
        if let Some(b) = bi {
            v += b[ch] as f64;
        }
        if let Some(r) = r {
            v += r[i] as f64;
        }
        if relu {
            v = crate::kernels::unary::relu(v);
        }
        *out = v as f32;
    }
}

/// The per-channel gradient sums (`grad_partial`, `grad_final`):
/// `(Σdy', Σdy'·xhat)`, `dy'` the output gradient `gs` masked by the fused
/// ReLU's output `ys` when given.
pub(crate) fn grad_sums(
    gs: &[f32],
    xs: &[f32],
    ys: Option<&[f32]>,
    d: &ChannelDims,
    ms: &[(f64, f64)],
) -> Vec<(f64, f64)> {
    let mut acc = vec![(0.0f64, 0.0f64); d.channels];
    for (i, &xv) in xs[..d.numel()].iter().enumerate() {
        let ch = channel(d, i);
        let gv = masked(gs, ys, i);
        let (mean, rstd) = ms[ch];
        acc[ch].0 += gv;
        acc[ch].1 += gv * (xv as f64 - mean) * rstd;
    }
    acc
}

/// The input gradient (`backward*`) into `out`: with the sums `s`
/// (`(Σdy', Σdy'·xhat)`) the training formula
/// `w·rstd·(dy' − Σdy'/M − xhat·Σdy'xhat/M)`, without it `w·rstd·dy'`;
/// `dy'` also into `r` (the residual's gradient) when given.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    gs: &[f32],
    xs: &[f32],
    ys: Option<&[f32]>,
    d: &ChannelDims,
    ms: &[(f64, f64)],
    w: Option<&[f32]>,
    s: Option<(&[f32], &[f32])>,
    out: &mut [f32],
    mut r: Option<&mut [f32]>,
) {
    let m = d.count() as f64;
    for (i, o) in out.iter_mut().enumerate() {
        let ch = channel(d, i);
        let gv = masked(gs, ys, i);
        let (mean, rstd) = ms[ch];
        let scale = rstd * w.map_or(1.0, |w| w[ch] as f64);
        *o = match s {
            Some((sb, sw)) => {
                let xhat = (xs[i] as f64 - mean) * rstd;
                scale * (gv - sb[ch] as f64 / m - xhat * sw[ch] as f64 / m)
            }
            None => scale * gv,
        } as f32;
        if let Some(r) = &mut r {
            r[i] = gv as f32;
        }
    }
}

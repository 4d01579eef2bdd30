//! [`ChannelDims`]: the `[outer, channels, inner]` view batch and layer
//! norm work on, shared by the launches and twins (`ops/batch_norm.rs`)
//! and the fast path (`cpu/batch_norm.rs`).

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
/// and the inputs its texture variants read through textures (`shaders.rs`
/// collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("batch_norm_f16", "batch_norm", &[("batch_norm_io_f32", "batch_norm_io_f16")]),
        Variant::new("batch_norm_f16_native", "batch_norm", &[("batch_norm_io_f32", "batch_norm_io_f16_native")]).f16(),
        Variant::new("batch_norm_tex", "batch_norm", &[("batch_norm_io_f32", "batch_norm_io_tex")]),
    ],
    texture_inputs: &[
        ("batch_norm_tex", "stats_partial", &[0]),
        ("batch_norm_tex", "forward", &[0, 1, 2, 3]),
        ("batch_norm_tex", "forward4", &[0, 1, 2, 3]),
        ("batch_norm_tex", "forward_res", &[0, 1, 2, 3, 4]),
        ("batch_norm_tex", "forward4_res", &[0, 1, 2, 3, 4]),
        ("batch_norm_tex", "grad_partial", &[0, 1, 2, 3]),
        ("batch_norm_tex", "backward", &[0, 1, 2, 3, 4, 5, 6]),
        ("batch_norm_tex", "backward4", &[0, 1, 2, 3, 4, 5, 6]),
        ("batch_norm_tex", "backward_res", &[0, 1, 2, 3, 4, 5, 6]),
        ("batch_norm_tex", "backward4_res", &[0, 1, 2, 3, 4, 5, 6]),
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

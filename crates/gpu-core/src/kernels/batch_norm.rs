//! [`ChannelDims`]: the `[outer, channels, inner]` view batch and layer
//! norm work on, shared by the launches and twins (`ops/batch_norm.rs`)
//! and the fast path (`cpu/batch_norm.rs`).

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
};

//! [`ChannelDims`]: the `[outer, channels, inner]` view batch and layer
//! norm work on, shared by the launches and twins (`ops/batch_norm.rs`)
//! and the fast path (`cpu/batch_norm.rs`).

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

//! Attention's descriptors: its sizes ([`AttnDims`]) and which form a
//! device computes it in ([`AttentionPath`]), below the launches and twins
//! (`ops/attention.rs`), the fast path (`cpu/attention.rs`) and the device
//! setting (`GpuContext::attention`).

use super::variants::{FamilyShaders, Variant};

/// How attention is computed on a device (`Device::set_attention_path`,
/// `WGRAD_ATTENTION=auto|fused|composite`). The choice is made by the
/// autograd op, which owns the composite form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionPath {
    /// [`Composite`](Self::Composite) on CPU adapters (lavapipe) for
    /// unmasked attention whose score matrix is small, [`Fused`](Self::Fused)
    /// everywhere else.
    #[default]
    Auto,
    /// The fused kernels of this module: O(L·D) memory, one launch forward
    /// and two backward. The choice for GPUs and the CPU backend.
    Fused,
    /// `softmax(q kᵀ · scale) v` from matmul and softmax, the score matrix in
    /// memory. On CPU adapters, where every lane-divergent load of the fused
    /// backward is a loop over the SIMD lanes, the products run on the
    /// subgroup matmul instead and a step of the sequence bench's Transformer
    /// is faster (docs/performance.md).
    Composite,
}

impl AttentionPath {
    /// The code stored in the device (`GpuContext::attention`).
    pub(crate) fn code(self) -> u8 {
        match self {
            AttentionPath::Auto => 0,
            AttentionPath::Fused => 1,
            AttentionPath::Composite => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> AttentionPath {
        match c {
            1 => AttentionPath::Fused,
            2 => AttentionPath::Composite,
            _ => AttentionPath::Auto,
        }
    }

    /// `WGRAD_ATTENTION`'s value: `auto` (or unset), `fused`, `composite`.
    pub(crate) fn from_env() -> AttentionPath {
        match std::env::var("WGRAD_ATTENTION").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Ok("fused") => AttentionPath::Fused,
            Ok("composite") => AttentionPath::Composite,
            _ => AttentionPath::Auto,
        }
    }
}

/// Sizes of one attention call: `q [batch·heads, lq, d]`, `k [batch·heads, lk, d]`,
/// `v [batch·heads, lk, dv]`, all dense row-major f32; `out [batch·heads, lq, dv]`.
/// `batch` and `heads` are separate only for the mask's strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    /// Batch size `B`.
    pub batch: usize,
    /// Heads per batch entry `H`.
    pub heads: usize,
    /// Query rows `Lq`.
    pub lq: usize,
    /// Key (and value) rows `Lk`.
    pub lk: usize,
    /// Head dim of q and k.
    pub d: usize,
    /// Head dim of v and of the output.
    pub dv: usize,
}

impl AttnDims {
    /// Number of (batch, head) pairs.
    pub fn bh(&self) -> usize {
        self.batch * self.heads
    }
}

/// The shaders this family derives from its files by swapping includes,
/// and the inputs its texture variants read through textures (`shaders.rs`
/// collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("attention_f16", "attention", &[("attention_io_f32", "attention_io_f16")]),
        Variant::new("attention_f16_native", "attention", &[("attention_io_f32", "attention_io_f16_native")]).f16(),
    ],
    texture_inputs: &[],
};

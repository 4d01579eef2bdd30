//! Transformer encoder and decoder layers (`nn.TransformerEncoderLayer`,
//! `nn.TransformerDecoderLayer`) with PyTorch's parameter names, both norm
//! placements and ReLU or GELU feed-forward blocks.
//!
//! Post-LN (PyTorch's default, the original paper) normalises after each
//! residual sum; pre-LN (`norm_first`, GPT-2 and most modern models)
//! normalises each block's input and leaves the residual path untouched,
//! which trains deep stacks without warm-up tricks.

use std::marker::PhantomData;

use wgrad_autograd::Tensor;

use crate::construction::{copy_builder, Built, Init};

use crate::layers::attention::{AttentionMask, KvCache, MultiheadAttention};
use crate::layers::dropout::Dropout;
use crate::layers::linear::Linear;
use crate::layers::norm::LayerNorm;
use crate::Module;

/// The feed-forward block's nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedForwardActivation {
    /// `max(0, x)`, PyTorch's default.
    Relu,
    /// Exact (erf) GELU, as in BERT and GPT-2.
    Gelu,
}

/// Sizes and options shared by encoder and decoder layers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformerConfig {
    /// Model width E.
    pub d_model: usize,
    /// Attention heads (must divide `d_model`).
    pub heads: usize,
    /// Hidden width of the feed-forward block (PyTorch default 2048).
    pub dim_feedforward: usize,
    /// Dropout on attention weights, after each block and inside the
    /// feed-forward block (PyTorch default 0.1).
    pub dropout: f32,
    /// The feed-forward nonlinearity.
    pub activation: FeedForwardActivation,
    /// LayerNorm eps (default 1e-5).
    pub layer_norm_eps: f32,
    /// `[B, L, E]` instead of `[L, B, E]`.
    pub batch_first: bool,
    /// Pre-LN instead of post-LN.
    pub norm_first: bool,
}

/// Options of a [`TransformerEncoderLayer`] or [`TransformerDecoderLayer`]
/// (`L`), with PyTorch's defaults: feed-forward width 2048, dropout 0.1,
/// ReLU, LayerNorm eps 1e-5, time-major, post-LN; [`build`](Self::build)
/// makes it.
pub struct TransformerBuilder<L> {
    config: TransformerConfig,
    class: PhantomData<fn() -> L>,
}
copy_builder!(TransformerBuilder);

impl<L> TransformerBuilder<L> {
    fn new(d_model: usize, nhead: usize) -> Self {
        let config = TransformerConfig {
            d_model,
            heads: nhead,
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: FeedForwardActivation::Relu,
            layer_norm_eps: 1e-5,
            batch_first: false,
            norm_first: false,
        };
        TransformerBuilder { config, class: PhantomData }
    }

    /// Hidden width of the feed-forward block (default 2048).
    pub fn dim_feedforward(mut self, width: usize) -> Self {
        self.config.dim_feedforward = width;
        self
    }

    /// Dropout on attention weights, after each block and inside the
    /// feed-forward block (default 0.1).
    pub fn dropout(mut self, p: f32) -> Self {
        self.config.dropout = p;
        self
    }

    /// The feed-forward nonlinearity (default ReLU).
    pub fn activation(mut self, activation: FeedForwardActivation) -> Self {
        self.config.activation = activation;
        self
    }

    /// LayerNorm eps (default 1e-5).
    pub fn layer_norm_eps(mut self, eps: f32) -> Self {
        self.config.layer_norm_eps = eps;
        self
    }

    /// `[B, L, E]` inputs and outputs (default false: `[L, B, E]`).
    pub fn batch_first(mut self, yes: bool) -> Self {
        self.config.batch_first = yes;
        self
    }

    /// Pre-LN instead of post-LN (default false).
    pub fn norm_first(mut self, yes: bool) -> Self {
        self.config.norm_first = yes;
        self
    }
}

impl<L: Built<TransformerConfig>> TransformerBuilder<L> {
    /// The layer, initialised like PyTorch's (parameters drawn in its
    /// registration order).
    ///
    /// # Panics
    /// When the heads do not divide `d_model`, or dropout is outside [0, 1].
    pub fn build(self, init: &mut Init) -> L {
        L::built(self.config, init)
    }
}

/// `linear2(dropout(act(linear1(x))))`, the position-wise feed-forward block.
/// The layers flatten it (`#[module(flatten)]`): PyTorch registers
/// `linear1`, `dropout`, `linear2` on the layer itself.
#[derive(Module)]
struct FeedForward {
    #[module]
    linear1: Linear,
    #[module]
    dropout: Dropout,
    #[module]
    linear2: Linear,
    activation: FeedForwardActivation,
}

impl FeedForward {
    fn new(c: &TransformerConfig, init: &mut Init) -> Self {
        FeedForward {
            linear1: Linear::builder(c.d_model, c.dim_feedforward).build(init),
            dropout: Dropout::builder(c.dropout).build(init),
            linear2: Linear::builder(c.dim_feedforward, c.d_model).build(init),
            activation: c.activation,
        }
    }
}

impl FeedForward {
    /// `residual + self.forward(x)`. On a GPU the activation joins
    /// `linear1`'s store and the residual `linear2`'s (the fuser).
    fn forward_residual(&self, x: &Tensor, residual: Option<&Tensor>) -> Tensor {
        let h = self.linear1.forward(x);
        let h = match self.activation {
            FeedForwardActivation::Relu => h.relu(),
            FeedForwardActivation::Gelu => h.gelu(),
        };
        let y = self.linear2.forward(&self.dropout.forward(&h));
        match residual {
            Some(r) => r + &y,
            None => y,
        }
    }
}

impl Module for FeedForward {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_residual(x, None)
    }

    fn describe(&self) -> String {
        format!("FeedForward(activation={:?})", self.activation)
    }
}

fn layer_norm(c: &TransformerConfig, init: &mut Init) -> LayerNorm {
    LayerNorm::builder(&[c.d_model]).eps(c.layer_norm_eps).build(init)
}

fn attention(c: &TransformerConfig, init: &mut Init) -> MultiheadAttention {
    MultiheadAttention::builder(c.d_model, c.heads).dropout(c.dropout).batch_first(c.batch_first).build(init)
}

/// A residual block `x + dropout(f(x))` placed around `norm` as the config
/// says. `f(h, r)` computes the branch on `h`; when dropout is the identity
/// it is handed `r = Some(x)` to add in its last product's store (no
/// launch for the block's add), else `None` and the add follows.
fn residual(
    norm_first: bool,
    x: &Tensor,
    norm: &LayerNorm,
    drop: &Dropout,
    f: impl FnOnce(&Tensor, Option<&Tensor>) -> Tensor,
) -> Tensor {
    let h = if norm_first { norm.forward(x) } else { x.clone() };
    let y = if drop.is_identity() { f(&h, Some(x)) } else { x + &drop.forward(&f(&h, None)) };
    if norm_first {
        y
    } else {
        norm.forward(&y)
    }
}

/// `y`, plus `r` if given: a branch with no product to add `r` in.
fn plus(y: Tensor, r: Option<&Tensor>) -> Tensor {
    match r {
        Some(r) => r + &y,
        None => y,
    }
}

/// Self-attention then feed-forward, each in a residual block.
#[derive(Module)]
pub struct TransformerEncoderLayer {
    /// The self-attention.
    #[module]
    pub self_attn: MultiheadAttention,
    #[module(flatten)]
    ff: FeedForward,
    /// Norm of the attention block.
    #[module]
    pub norm1: LayerNorm,
    /// Norm of the feed-forward block.
    #[module]
    pub norm2: LayerNorm,
    #[module]
    dropout1: Dropout,
    #[module]
    dropout2: Dropout,
    config: TransformerConfig,
}

impl TransformerEncoderLayer {
    /// `nn.TransformerEncoderLayer(d_model, nhead)`.
    pub fn builder(d_model: usize, nhead: usize) -> TransformerBuilder<TransformerEncoderLayer> {
        TransformerBuilder::new(d_model, nhead)
    }

    /// The layer's configuration.
    pub fn config(&self) -> &TransformerConfig {
        &self.config
    }

    /// The layer on `src` under `mask` (`src_mask`, `src_key_padding_mask`, `is_causal`).
    pub fn forward_masked(&self, src: &Tensor, mask: &AttentionMask) -> Tensor {
        let nf = self.config.norm_first;
        let x = residual(nf, src, &self.norm1, &self.dropout1, |h, r| self.self_attn.self_attention_plus(h, mask, r));
        residual(nf, &x, &self.norm2, &self.dropout2, |h, r| self.ff.forward_residual(h, r))
    }

    /// The layer under a causal mask on the positions `src` (`[B, T, E]`)
    /// that follow those in `cache`, which grows by T (see
    /// [`MultiheadAttention::self_attention_cached`]). Positions are
    /// independent outside attention, so the result equals the last T
    /// positions of [`forward_masked`](Self::forward_masked) on the whole
    /// sequence with a causal mask.
    pub fn forward_cached(&self, src: &Tensor, cache: &mut KvCache) -> Tensor {
        let nf = self.config.norm_first;
        let x = residual(nf, src, &self.norm1, &self.dropout1, |h, r| {
            plus(self.self_attn.self_attention_cached(h, cache), r)
        });
        residual(nf, &x, &self.norm2, &self.dropout2, |h, r| self.ff.forward_residual(h, r))
    }
}

impl Module for TransformerEncoderLayer {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_masked(x, &AttentionMask::default())
    }

    fn describe(&self) -> String {
        describe("TransformerEncoderLayer", &self.config)
    }
}

/// Masked self-attention, cross-attention over the encoder's memory, then
/// feed-forward, each in a residual block.
#[derive(Module)]
pub struct TransformerDecoderLayer {
    /// Self-attention over the target sequence.
    #[module]
    pub self_attn: MultiheadAttention,
    /// Attention of the target over the memory.
    #[module]
    pub multihead_attn: MultiheadAttention,
    #[module(flatten)]
    ff: FeedForward,
    /// Norms of the three blocks.
    #[module]
    pub norm1: LayerNorm,
    /// See `norm1`.
    #[module]
    pub norm2: LayerNorm,
    /// See `norm1`.
    #[module]
    pub norm3: LayerNorm,
    #[module]
    dropout1: Dropout,
    #[module]
    dropout2: Dropout,
    #[module]
    dropout3: Dropout,
    config: TransformerConfig,
}

impl TransformerDecoderLayer {
    /// `nn.TransformerDecoderLayer(d_model, nhead)`.
    pub fn builder(d_model: usize, nhead: usize) -> TransformerBuilder<TransformerDecoderLayer> {
        TransformerBuilder::new(d_model, nhead)
    }

    /// The layer's configuration.
    pub fn config(&self) -> &TransformerConfig {
        &self.config
    }

    /// The layer on `tgt` attending to `memory`, with the target's mask
    /// (usually causal) and the memory's (usually key padding).
    pub fn forward_with_memory(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        tgt_mask: &AttentionMask,
        memory_mask: &AttentionMask,
    ) -> Tensor {
        let nf = self.config.norm_first;
        let x =
            residual(nf, tgt, &self.norm1, &self.dropout1, |h, r| self.self_attn.self_attention_plus(h, tgt_mask, r));
        let x = residual(nf, &x, &self.norm2, &self.dropout2, |h, r| {
            plus(self.multihead_attn.attend(h, memory, memory, memory_mask), r)
        });
        residual(nf, &x, &self.norm3, &self.dropout3, |h, r| self.ff.forward_residual(h, r))
    }
}

impl Module for TransformerDecoderLayer {
    /// Causal self-attention over `x` attending to itself as memory (a
    /// stand-in so the layer can sit in generic code; use
    /// [`forward_with_memory`](Self::forward_with_memory)).
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with_memory(x, x, &AttentionMask::causal(), &AttentionMask::default())
    }

    fn describe(&self) -> String {
        describe("TransformerDecoderLayer", &self.config)
    }
}

fn describe(name: &str, c: &TransformerConfig) -> String {
    format!(
        "{name}(d_model={}, nhead={}, dim_feedforward={}, dropout={}, activation={:?}, norm_first={})",
        c.d_model, c.heads, c.dim_feedforward, c.dropout, c.activation, c.norm_first
    )
}

impl crate::construction::sealed::Sealed for TransformerEncoderLayer {}

impl Built<TransformerConfig> for TransformerEncoderLayer {
    fn built(c: TransformerConfig, init: &mut Init) -> Self {
        TransformerEncoderLayer {
            self_attn: attention(&c, init),
            ff: FeedForward::new(&c, init),
            norm1: layer_norm(&c, init),
            norm2: layer_norm(&c, init),
            dropout1: Dropout::builder(c.dropout).build(init),
            dropout2: Dropout::builder(c.dropout).build(init),
            config: c,
        }
    }
}

impl crate::construction::sealed::Sealed for TransformerDecoderLayer {}

impl Built<TransformerConfig> for TransformerDecoderLayer {
    fn built(c: TransformerConfig, init: &mut Init) -> Self {
        TransformerDecoderLayer {
            self_attn: attention(&c, init),
            multihead_attn: attention(&c, init),
            ff: FeedForward::new(&c, init),
            norm1: layer_norm(&c, init),
            norm2: layer_norm(&c, init),
            norm3: layer_norm(&c, init),
            dropout1: Dropout::builder(c.dropout).build(init),
            dropout2: Dropout::builder(c.dropout).build(init),
            dropout3: Dropout::builder(c.dropout).build(init),
            config: c,
        }
    }
}

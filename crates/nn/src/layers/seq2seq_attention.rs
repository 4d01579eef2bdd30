//! Attention of one decoder state over an encoder's outputs, the two classic
//! scorers of RNN encoder-decoders: additive (Bahdanau et al. 2015) and
//! dot-product (Luong et al. 2015).
//!
//! Both take the decoder query `[B, Dq]`, the encoder outputs `[B, S, Dk]`
//! (keys and values at once) and an optional additive `[B, S]` mask for
//! padded source positions, and return the context `[B, Dk]` and the
//! attention weights `[B, S]` (to plot alignments).

use wgrad_autograd::Tensor;

use crate::construction::Init;

use crate::layers::linear::Linear;
use crate::Module;

/// Softmax of `scores [B, S]` plus `mask`, and the weighted sum of `values [B, S, D]`.
fn context(scores: Tensor, values: &Tensor, mask: Option<&Tensor>) -> (Tensor, Tensor) {
    let scores = match mask {
        Some(m) => scores + m,
        None => scores,
    };
    let weights = scores.softmax(-1);
    let ctx = weights.unsqueeze(1).matmul(values).squeeze(1);
    (ctx, weights)
}

/// Checks `query [B, Dq]` against `keys [B, S, Dk]`.
fn check(name: &str, query: &Tensor, keys: &Tensor, dq: usize, dk: usize) {
    let (q, k) = (query.shape(), keys.shape());
    assert!(
        q.len() == 2 && k.len() == 3 && q[0] == k[0] && q[1] == dq && k[2] == dk,
        "{name}: expects query [B, {dq}] and keys [B, S, {dk}], got {q:?} and {k:?}"
    );
}

/// `score(q, k) = vᵀ tanh(W_q q + W_k k)`: a one-hidden-layer network scores
/// each source position against the decoder state.
#[derive(Module)]
pub struct AdditiveAttention {
    /// Query projection `[A, Dq]`, no bias.
    #[module]
    pub query: Linear,
    /// Key projection `[A, Dk]` with bias.
    #[module]
    pub key: Linear,
    /// Score vector `[1, A]`, no bias.
    #[module]
    pub v: Linear,
}

/// The sizes of an [`AdditiveAttention`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdditiveAttentionBuilder {
    dq: usize,
    dk: usize,
    attn_dim: usize,
}

impl AdditiveAttentionBuilder {
    /// The scorer: PyTorch-default Linear layers `query` (no bias), `key`, `v` (no bias), in that order.
    pub fn build(self, init: &mut Init) -> AdditiveAttention {
        AdditiveAttention {
            query: Linear::builder(self.dq, self.attn_dim).bias(false).build(init),
            key: Linear::builder(self.dk, self.attn_dim).build(init),
            v: Linear::builder(self.attn_dim, 1).bias(false).build(init),
        }
    }
}

impl AdditiveAttention {
    /// Scorer for queries of width `dq`, keys of width `dk`, hidden width
    /// `attn_dim` (Bahdanau et al.).
    pub fn builder(dq: usize, dk: usize, attn_dim: usize) -> AdditiveAttentionBuilder {
        AdditiveAttentionBuilder { dq, dk, attn_dim }
    }

    /// Projects the keys once per source sentence (`[B, S, A]`); pass the
    /// result to [`attend_projected`](Self::attend_projected) at every
    /// decoder step instead of re-projecting.
    pub fn project_keys(&self, keys: &Tensor) -> Tensor {
        self.key.forward(keys)
    }

    /// Context `[B, Dk]` and weights `[B, S]` of `query` over `keys`.
    ///
    /// # Panics
    /// On shape mismatches.
    pub fn attend(&self, query: &Tensor, keys: &Tensor, mask: Option<&Tensor>) -> (Tensor, Tensor) {
        let (dq, dk) = (self.query.weight.shape()[1], self.key.weight.shape()[1]);
        check("AdditiveAttention", query, keys, dq, dk);
        self.attend_projected(query, &self.project_keys(keys), keys, mask)
    }

    /// [`attend`](Self::attend) with keys already projected by [`project_keys`](Self::project_keys).
    pub fn attend_projected(
        &self,
        query: &Tensor,
        projected_keys: &Tensor,
        values: &Tensor,
        mask: Option<&Tensor>,
    ) -> (Tensor, Tensor) {
        let q = self.query.forward(query).unsqueeze(1);
        let scores = self.v.forward(&(projected_keys + &q).tanh()).squeeze(-1);
        context(scores, values, mask)
    }
}

impl Module for AdditiveAttention {
    /// Not meaningful alone (two inputs): self-scores `x [B, S, D]` with its mean as the query.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.attend(&x.mean(&[1], false), x, None).0
    }

    fn describe(&self) -> String {
        let (a, dq) = (self.query.weight.shape()[0], self.query.weight.shape()[1]);
        format!("AdditiveAttention(query={dq}, key={}, attn_dim={a})", self.key.weight.shape()[1])
    }
}

/// `score(q, k) = q·k`, optionally scaled by 1/√D (Luong's "dot" score;
/// query and keys share a width). No parameters.
#[derive(Clone, Copy, Debug, Module)]
pub struct DotProductAttention {
    /// Divide scores by √D.
    pub scaled: bool,
}

impl DotProductAttention {
    /// Context `[B, D]` and weights `[B, S]` of `query [B, D]` over `keys [B, S, D]`.
    ///
    /// # Panics
    /// On shape mismatches.
    pub fn attend(&self, query: &Tensor, keys: &Tensor, mask: Option<&Tensor>) -> (Tensor, Tensor) {
        let d = query.shape().last().copied().unwrap_or(0);
        check("DotProductAttention", query, keys, d, d);
        let mut scores = keys.matmul(&query.unsqueeze(2)).squeeze(2);
        if self.scaled {
            scores = scores.mul_scalar(1.0 / (d as f32).sqrt());
        }
        context(scores, keys, mask)
    }
}

impl Module for DotProductAttention {
    /// Not meaningful alone (two inputs): self-scores `x [B, S, D]` with its mean as the query.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.attend(&x.mean(&[1], false), x, None).0
    }

    fn describe(&self) -> String {
        format!("DotProductAttention(scaled={})", self.scaled)
    }
}

//! A GPT-style decoder-only language model: token and learned position
//! embeddings, a stack of pre-LN Transformer blocks with causal
//! self-attention and GELU feed-forward, a final LayerNorm and a linear head
//! over the vocabulary (optionally tied to the token embedding, as in GPT-2).

use wgrad_autograd::{no_grad, Device, Tensor};
use wgrad_nn::layers::attention::{AttentionMask, KvCache};
use wgrad_nn::{
    Dropout, Embedding, FeedForwardActivation, Init, LayerNorm, LearnedPositionalEmbedding, Linear, Module,
    TransformerEncoderLayer,
};

use crate::sampling::Sampler;

/// Sizes of a [`Gpt`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptConfig {
    /// Number of token ids.
    pub vocab: usize,
    /// Longest sequence (positions) the model sees.
    pub context: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads per block (must divide `width`).
    pub heads: usize,
    /// Model width (embedding size).
    pub width: usize,
    /// Feed-forward hidden width (GPT uses 4·width).
    pub ffn: usize,
    /// Dropout after embeddings, on attention weights and in each block.
    pub dropout: f32,
    /// Use the token embedding's transpose as the output head (no `head.weight`).
    pub tie_weights: bool,
}

impl Gpt {
    /// A model over `vocab` token ids seeing `context` positions, with
    /// GPT-2 small's shape unless set (12 layers, 12 heads, width 768,
    /// `ffn = 4·width`), no dropout, untied weights.
    pub fn builder(vocab: usize, context: usize) -> GptConfig {
        GptConfig { vocab, context, layers: 12, heads: 12, width: 768, ffn: 0, dropout: 0.0, tie_weights: false }
    }
}

impl GptConfig {
    /// Transformer blocks (default 12).
    pub fn layers(self, layers: usize) -> Self {
        GptConfig { layers, ..self }
    }

    /// Attention heads per block (default 12; must divide the width).
    pub fn heads(self, heads: usize) -> Self {
        GptConfig { heads, ..self }
    }

    /// Model width (default 768).
    pub fn width(self, width: usize) -> Self {
        GptConfig { width, ..self }
    }

    /// Feed-forward hidden width (default `4·width`).
    pub fn ffn(self, ffn: usize) -> Self {
        GptConfig { ffn, ..self }
    }

    /// Dropout after embeddings, on attention weights and in each block (default 0).
    pub fn dropout(self, dropout: f32) -> Self {
        GptConfig { dropout, ..self }
    }

    /// Use the token embedding's transpose as the output head (default false).
    pub fn tie_weights(self, tie_weights: bool) -> Self {
        GptConfig { tie_weights, ..self }
    }

    /// The model, initialised like GPT-2: N(0, 0.02²) embeddings, PyTorch's
    /// defaults for the blocks and the head.
    ///
    /// # Panics
    /// For zero sizes or heads that do not divide the width.
    pub fn build(self, init: &mut Init) -> Gpt {
        Gpt::new(self, init)
    }
}

/// The model. Parameter names: `tok_emb.weight`, `pos_emb.weight`,
/// `blocks.{i}.…` (those of `nn.TransformerEncoderLayer`), `ln_f.weight`,
/// `ln_f.bias`, `head.weight` (absent when tied).
#[derive(Module)]
pub struct Gpt {
    config: GptConfig,
    /// Token embedding `[vocab, width]`.
    #[module]
    pub tok_emb: Embedding,
    /// Position embedding `[context, width]`.
    #[module]
    pub pos_emb: LearnedPositionalEmbedding,
    #[module]
    drop: Dropout,
    /// The Transformer blocks (pre-LN, GELU, batch-first).
    #[module]
    pub blocks: Vec<TransformerEncoderLayer>,
    /// The final LayerNorm.
    #[module]
    pub ln_f: LayerNorm,
    /// The output head `[vocab, width]`, without bias; `None` when tied.
    #[module]
    pub head: Option<Linear>,
}

impl Gpt {
    /// A model initialised like GPT-2: N(0, 0.02²) embeddings, PyTorch's
    /// defaults for the blocks and the head.
    ///
    /// # Panics
    /// For zero sizes or heads that do not divide the width.
    fn new(config: GptConfig, init: &mut Init) -> Self {
        let ffn = if config.ffn == 0 { 4 * config.width } else { config.ffn };
        let c = GptConfig { ffn, ..config };
        assert!(c.vocab > 0 && c.context > 0 && c.layers > 0 && c.width > 0, "Gpt: sizes must be positive: {c:?}");
        let tok_emb = Embedding::builder(c.vocab, c.width).build(init);
        wgrad_nn::init::normal_(&tok_emb.weight, 0.0, 0.02, init.generator());
        let pos_emb = LearnedPositionalEmbedding::builder(c.context, c.width).build(init);
        let blocks = (0..c.layers)
            .map(|_| {
                TransformerEncoderLayer::builder(c.width, c.heads)
                    .dim_feedforward(c.ffn)
                    .dropout(c.dropout)
                    .activation(FeedForwardActivation::Gelu)
                    .batch_first(true)
                    .norm_first(true)
                    .build(init)
            })
            .collect();
        Gpt {
            config: c,
            tok_emb,
            pos_emb,
            drop: Dropout::builder(c.dropout).build(init),
            blocks,
            ln_f: LayerNorm::builder(&[c.width]).build(init),
            head: (!c.tie_weights).then(|| Linear::builder(c.width, c.vocab).bias(false).build(init)),
        }
    }

    /// The model's sizes.
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// Logits `[B, L, vocab]` for U32 token ids `[B, L]` (L ≤ context): the
    /// logits at position t predict token t + 1 from tokens 0..=t.
    ///
    /// # Panics
    /// When `ids` is not `[B, L]` with `1 ≤ L ≤ context`.
    pub fn logits(&self, ids: &Tensor) -> Tensor {
        let s = ids.shape();
        assert!(
            s.len() == 2 && s[1] >= 1 && s[1] <= self.config.context,
            "Gpt: expects token ids [B, L] with 1 ≤ L ≤ {}, got {s:?}",
            self.config.context
        );
        let mut x = self.drop.forward(&self.pos_emb.forward(&self.tok_emb.forward(ids)));
        let causal = AttentionMask::causal();
        for b in &self.blocks {
            x = b.forward_masked(&x, &causal);
        }
        self.head_logits(&self.ln_f.forward(&x))
    }

    /// Mean next-token cross-entropy of `ids [B, L]` against `targets [B, L]` (U32).
    pub fn loss(&self, ids: &Tensor, targets: &Tensor) -> Tensor {
        let logits = self.logits(ids);
        let (b, l) = (logits.shape()[0], logits.shape()[1]);
        logits
            .reshape(&[b * l, self.config.vocab])
            .cross_entropy(&targets.reshape(&[b * l]), &wgrad_autograd::CrossEntropyOptions::default())
    }

    /// Logits `[B, T, vocab]` of the T positions `ids [B, T]` that follow
    /// those in `caches` (one [`KvCache`] per block, all the same length),
    /// which grow by T: the last T positions of [`logits`](Self::logits) on
    /// the whole sequence, without recomputing its prefix.
    ///
    /// # Panics
    /// When `caches` has not one cache per block, or the positions pass the context.
    pub fn logits_cached(&self, ids: &Tensor, caches: &mut [KvCache]) -> Tensor {
        assert_eq!(caches.len(), self.blocks.len(), "Gpt: one KvCache per block");
        let past = caches[0].len();
        let mut x = self.drop.forward(&self.pos_emb.forward_at(&self.tok_emb.forward(ids), past));
        for (b, cache) in self.blocks.iter().zip(caches.iter_mut()) {
            x = b.forward_cached(&x, cache);
        }
        self.head_logits(&self.ln_f.forward(&x))
    }

    /// The output head on the final norm's output.
    fn head_logits(&self, x: &Tensor) -> Tensor {
        match &self.head {
            Some(h) => h.forward(x),
            None => x.matmul(&self.tok_emb.weight.t()),
        }
    }

    /// Continues `prompt` by `max_new` tokens, each drawn by `sampler` from
    /// the logits of the last position given the last `context` tokens. No
    /// gradient is recorded; call `eval()` first to switch dropout off.
    ///
    /// A key/value cache per block holds the positions seen so far, so each
    /// new token costs one position's work. Positions are learned and
    /// absolute, so once the sequence outgrows the context the window
    /// slides and is recomputed from its new first token, as
    /// [`generate_uncached`](Self::generate_uncached) does every step.
    ///
    /// # Panics
    /// For an empty prompt or ids outside the vocabulary.
    pub fn generate(&self, prompt: &[u32], max_new: usize, sampler: &mut Sampler, device: &Device) -> Vec<u32> {
        self.check_prompt(prompt);
        let context = self.config.context;
        let mut tokens = prompt.to_vec();
        let mut caches = vec![KvCache::new(); self.blocks.len()];
        no_grad(|| {
            for _ in 0..max_new {
                if caches[0].len() >= context {
                    caches.iter_mut().for_each(KvCache::clear); // the window slides
                }
                let feed = if caches[0].is_empty() {
                    &tokens[tokens.len().saturating_sub(context)..]
                } else {
                    &tokens[tokens.len() - 1..]
                };
                let ids = Tensor::from_u32(feed, &[1, feed.len()], device);
                let last = self.logits_cached(&ids, &mut caches).narrow(1, feed.len() - 1, 1).to_vec();
                tokens.push(sampler.sample(&last));
            }
        });
        tokens
    }

    /// [`generate`](Self::generate) without a cache: every step recomputes
    /// the whole window (the reference the cache is tested and benchmarked
    /// against).
    pub fn generate_uncached(
        &self,
        prompt: &[u32],
        max_new: usize,
        sampler: &mut Sampler,
        device: &Device,
    ) -> Vec<u32> {
        self.check_prompt(prompt);
        let mut tokens = prompt.to_vec();
        no_grad(|| {
            for _ in 0..max_new {
                let window = &tokens[tokens.len().saturating_sub(self.config.context)..];
                let ids = Tensor::from_u32(window, &[1, window.len()], device);
                let last = self.logits(&ids).narrow(1, window.len() - 1, 1).to_vec();
                tokens.push(sampler.sample(&last));
            }
        });
        tokens
    }

    fn check_prompt(&self, prompt: &[u32]) {
        assert!(!prompt.is_empty(), "Gpt::generate: the prompt must have at least one token");
        let v = self.config.vocab;
        assert!(prompt.iter().all(|&t| (t as usize) < v), "Gpt::generate: prompt ids must be < vocab {v}");
    }
}

impl Module for Gpt {
    /// [`logits`](Self::logits).
    fn forward(&self, ids: &Tensor) -> Tensor {
        self.logits(ids)
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "Gpt(vocab={}, context={}, layers={}, heads={}, width={}, tie_weights={})",
            c.vocab, c.context, c.layers, c.heads, c.width, c.tie_weights
        )
    }
}

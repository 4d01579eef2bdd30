//! A recurrent language model (char-rnn, Karpathy 2015; Zaremba et al.
//! 2014): token embedding, a multi-layer LSTM (or GRU / RNN) and a linear
//! head over the vocabulary, trained with truncated BPTT and sampled one
//! token at a time with the recurrent state carried along.

use wgrad_autograd::{no_grad, Device, RecurrentKind, Tensor};
use wgrad_nn::{Dropout, Embedding, Init, Linear, Module, Recurrent, RecurrentState};

use crate::sampling::Sampler;

/// Sizes of an [`RnnLm`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RnnLmConfig {
    /// Number of token ids.
    pub vocab: usize,
    /// Embedding width.
    pub embed: usize,
    /// Hidden width of each recurrent layer.
    pub hidden: usize,
    /// Stacked recurrent layers.
    pub layers: usize,
    /// Dropout between recurrent layers and before the head.
    pub dropout: f32,
    /// The cell (LSTM by default).
    pub kind: RecurrentKind,
}

impl RnnLm {
    /// A model over `vocab` token ids: a 2-layer LSTM, embedding 128 and
    /// hidden 256 wide, no dropout, unless set.
    pub fn builder(vocab: usize) -> RnnLmConfig {
        RnnLmConfig { vocab, embed: 128, hidden: 256, layers: 2, dropout: 0.0, kind: RecurrentKind::Lstm }
    }
}

impl RnnLmConfig {
    /// Embedding width (default 128).
    pub fn embed(self, embed: usize) -> Self {
        RnnLmConfig { embed, ..self }
    }

    /// Hidden width of each recurrent layer (default 256).
    pub fn hidden(self, hidden: usize) -> Self {
        RnnLmConfig { hidden, ..self }
    }

    /// Stacked recurrent layers (default 2).
    pub fn layers(self, layers: usize) -> Self {
        RnnLmConfig { layers, ..self }
    }

    /// Dropout between recurrent layers and before the head (default 0).
    pub fn dropout(self, dropout: f32) -> Self {
        RnnLmConfig { dropout, ..self }
    }

    /// The cell (default LSTM).
    pub fn kind(self, kind: RecurrentKind) -> Self {
        RnnLmConfig { kind, ..self }
    }

    /// The model with PyTorch's default initialisations.
    pub fn build(self, init: &mut Init) -> RnnLm {
        RnnLm::new(self, init)
    }
}

/// The model. Parameter names: `embedding.weight`, `rnn.weight_ih_l0`, …
/// (those of `nn.LSTM`), `head.weight`, `head.bias` — the same module names
/// as the PyTorch script in `benches/lstm_pytorch.py`.
#[derive(Module)]
pub struct RnnLm {
    config: RnnLmConfig,
    /// Token embedding.
    #[module]
    pub embedding: Embedding,
    /// The batch-first recurrent stack.
    #[module]
    pub rnn: Recurrent,
    #[module]
    drop: Dropout,
    /// Output layer `[vocab, hidden]`.
    #[module]
    pub head: Linear,
}

impl RnnLm {
    fn new(config: RnnLmConfig, init: &mut Init) -> Self {
        let c = config;
        RnnLm {
            config: c,
            embedding: Embedding::builder(c.vocab, c.embed).build(init),
            rnn: Recurrent::builder(c.kind, c.embed, c.hidden)
                .num_layers(c.layers)
                .dropout(c.dropout)
                .batch_first(true)
                .build(init),
            drop: Dropout::builder(c.dropout).build(init),
            head: Linear::builder(c.hidden, c.vocab).build(init),
        }
    }

    /// The model's sizes.
    pub fn config(&self) -> &RnnLmConfig {
        &self.config
    }

    /// Logits `[B, L, vocab]` for ids `[B, L]` (U32) from `state` (zeros when
    /// `None`), and the state after the last position.
    pub fn forward_with_state(&self, ids: &Tensor, state: Option<&RecurrentState>) -> (Tensor, RecurrentState) {
        let (h, state) = self.rnn.forward_with_state(&self.embedding.forward(ids), state);
        (self.head.forward(&self.drop.forward(&h)), state)
    }

    /// Feeds `prompt` through the model, then draws `max_new` tokens one at a
    /// time, carrying the recurrent state (each new token costs one step).
    /// No gradient is recorded; call `eval()` first to switch dropout off.
    ///
    /// # Panics
    /// For an empty prompt or ids outside the vocabulary.
    pub fn generate(&self, prompt: &[u32], max_new: usize, sampler: &mut Sampler, device: &Device) -> Vec<u32> {
        assert!(!prompt.is_empty(), "RnnLm::generate: the prompt must have at least one token");
        let v = self.config.vocab;
        assert!(prompt.iter().all(|&t| (t as usize) < v), "RnnLm::generate: prompt ids must be < vocab {v}");
        let mut tokens = prompt.to_vec();
        no_grad(|| {
            let ids = Tensor::from_u32(prompt, &[1, prompt.len()], device);
            let (logits, mut state) = self.forward_with_state(&ids, None);
            let mut last = logits.narrow(1, prompt.len() - 1, 1).to_vec();
            for _ in 0..max_new {
                let t = sampler.sample(&last);
                tokens.push(t);
                let (logits, next) = self.forward_with_state(&Tensor::from_u32(&[t], &[1, 1], device), Some(&state));
                (last, state) = (logits.to_vec(), next);
            }
        });
        tokens
    }
}

impl Module for RnnLm {
    /// Logits from the zero state.
    fn forward(&self, ids: &Tensor) -> Tensor {
        self.forward_with_state(ids, None).0
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "RnnLm(vocab={}, embed={}, hidden={}, layers={}, kind={:?}, dropout={})",
            c.vocab, c.embed, c.hidden, c.layers, c.kind, c.dropout
        )
    }
}

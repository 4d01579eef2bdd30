//! An RNN encoder-decoder with attention (Bahdanau et al. 2015; Luong et
//! al. 2015): a GRU encodes the source; a GRU cell decodes one token at a
//! time, attending over the encoder outputs with an additive or dot-product
//! scorer. Train with teacher forcing ([`Seq2Seq::logits`]); decode with
//! [`greedy_search`](crate::decoding::greedy_search) or
//! [`beam_search`](crate::decoding::beam_search) through [`Seq2Seq::decoder`].

use wgrad_autograd::{RecurrentKind, Tensor};
use wgrad_nn::{AdditiveAttention, DotProductAttention, Embedding, Init, Linear, Module, RecurrentCell, GRU};

use crate::decoding::StepDecoder;

/// Which attention scorer the decoder uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionScore {
    /// `vᵀ tanh(W_q q + W_k k)` (Bahdanau).
    Additive,
    /// `q·k` (Luong "dot").
    Dot,
}

/// Sizes of a [`Seq2Seq`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seq2SeqConfig {
    /// Source vocabulary.
    pub src_vocab: usize,
    /// Target vocabulary.
    pub tgt_vocab: usize,
    /// Embedding width of both vocabularies.
    pub embed: usize,
    /// Hidden width of encoder and decoder.
    pub hidden: usize,
    /// The attention scorer.
    pub attention: AttentionScore,
}

impl Seq2Seq {
    /// A model from `src_vocab` to `tgt_vocab` ids: embeddings and GRUs 128
    /// wide (PyTorch's seq2seq tutorial), additive attention, unless set.
    pub fn builder(src_vocab: usize, tgt_vocab: usize) -> Seq2SeqConfig {
        Seq2SeqConfig { src_vocab, tgt_vocab, embed: 128, hidden: 128, attention: AttentionScore::Additive }
    }
}

impl Seq2SeqConfig {
    /// Embedding width of both vocabularies (default 128).
    pub fn embed(self, embed: usize) -> Self {
        Seq2SeqConfig { embed, ..self }
    }

    /// Hidden width of encoder and decoder (default 128).
    pub fn hidden(self, hidden: usize) -> Self {
        Seq2SeqConfig { hidden, ..self }
    }

    /// The attention scorer (default additive).
    pub fn attention(self, attention: AttentionScore) -> Self {
        Seq2SeqConfig { attention, ..self }
    }

    /// The model with PyTorch's default initialisations.
    pub fn build(self, init: &mut Init) -> Seq2Seq {
        Seq2Seq::new(self, init)
    }
}

/// The encoder-decoder. Parameter names: `src_emb`, `encoder` (a GRU),
/// `tgt_emb`, `decoder` (a GRU cell), `attention` (additive only), `out`.
#[derive(Module)]
pub struct Seq2Seq {
    config: Seq2SeqConfig,
    /// Source embedding.
    #[module]
    pub src_emb: Embedding,
    /// Batch-first one-layer GRU over the source.
    #[module]
    pub encoder: GRU,
    /// Target embedding.
    #[module]
    pub tgt_emb: Embedding,
    /// Decoder cell; input = target embedding ⊕ context.
    #[module]
    pub decoder: RecurrentCell,
    #[module(rename = "attention")]
    additive: Option<AdditiveAttention>,
    /// Output layer over decoder state ⊕ context.
    #[module]
    pub out: Linear,
}

/// What the decoder needs from the encoder, for `B` sentences.
#[derive(Clone)]
pub struct Encoded {
    /// Encoder outputs `[B, S, H]` (keys and values of the attention).
    pub memory: Tensor,
    /// Keys projected once for the additive scorer (`[B, S, A]`).
    pub projected: Option<Tensor>,
    /// Additive `[B, S]` mask of padded source positions.
    pub mask: Option<Tensor>,
    /// Decoder state `[B, H]` (starts as the encoder's final state).
    pub h: Tensor,
}

impl Seq2Seq {
    fn new(config: Seq2SeqConfig, init: &mut Init) -> Self {
        let c = config;
        Seq2Seq {
            config: c,
            src_emb: Embedding::builder(c.src_vocab, c.embed).build(init),
            encoder: GRU::builder(c.embed, c.hidden).batch_first(true).build(init),
            tgt_emb: Embedding::builder(c.tgt_vocab, c.embed).build(init),
            decoder: RecurrentCell::builder(RecurrentKind::Gru, c.embed + c.hidden, c.hidden).build(init),
            additive: (c.attention == AttentionScore::Additive)
                .then(|| AdditiveAttention::builder(c.hidden, c.hidden, c.hidden).build(init)),
            out: Linear::builder(2 * c.hidden, c.tgt_vocab).build(init),
        }
    }

    /// The model's sizes.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.config
    }

    /// Encodes source ids `[B, S]` (U32); `lengths` (each ≤ S) masks padding
    /// in the attention. (The final state is the state after position S − 1,
    /// padding included: keep padded batches sorted by length or pad little.)
    pub fn encode(&self, src: &Tensor, lengths: Option<&[usize]>) -> Encoded {
        let s = src.shape();
        assert!(s.len() == 2, "Seq2Seq::encode: expects source ids [B, S], got {s:?}");
        let (memory, state) = self.encoder.forward_with_state(&self.src_emb.forward(src), None);
        let h = state.h.narrow(0, 0, 1).reshape(&[s[0], self.config.hidden]);
        let mask = lengths.map(|l| wgrad_nn::padding_mask(l, s[1], &src.device()));
        let projected = self.additive.as_ref().map(|a| a.project_keys(&memory));
        Encoded { memory, projected, mask, h }
    }

    /// One decoder step for the previous target tokens `[B]` (U32): returns
    /// logits `[B, V]` and the new state.
    pub fn decode_step(&self, prev: &Tensor, enc: &Encoded) -> (Tensor, Encoded) {
        let ctx = match &self.additive {
            Some(a) => a.attend_projected(&enc.h, enc.projected.as_ref().unwrap(), &enc.memory, enc.mask.as_ref()).0,
            None => DotProductAttention { scaled: false }.attend(&enc.h, &enc.memory, enc.mask.as_ref()).0,
        };
        let input = Tensor::cat(&[&self.tgt_emb.forward(prev), &ctx], 1);
        let (h, _) = self.decoder.step(&input, Some((&enc.h, None)));
        let logits = self.out.forward(&Tensor::cat(&[&h, &ctx], 1));
        (logits, Encoded { h, ..enc.clone() })
    }

    /// Teacher-forced logits `[B, T, V]`: step t reads target token
    /// `tgt_in[:, t]` (the gold previous token, starting with BOS).
    pub fn logits(&self, src: &Tensor, src_lengths: Option<&[usize]>, tgt_in: &Tensor) -> Tensor {
        let t = tgt_in.shape();
        assert!(t.len() == 2, "Seq2Seq::logits: expects target ids [B, T], got {t:?}");
        let mut enc = self.encode(src, src_lengths);
        let mut steps = Vec::with_capacity(t[1]);
        for i in 0..t[1] {
            let (logits, next) = self.decode_step(&tgt_in.narrow(1, i, 1).reshape(&[t[0]]), &enc);
            steps.push(logits);
            enc = next;
        }
        let refs: Vec<&Tensor> = steps.iter().collect();
        Tensor::stack(&refs, 1)
    }

    /// A [`StepDecoder`] over one encoded source sentence, for greedy and beam search.
    pub fn decoder(&self) -> Seq2SeqDecoder<'_> {
        Seq2SeqDecoder { model: self }
    }
}

/// [`Seq2Seq`] as a [`StepDecoder`]: the state is the encoded sentence
/// repeated per hypothesis.
pub struct Seq2SeqDecoder<'a> {
    model: &'a Seq2Seq,
}

impl StepDecoder for Seq2SeqDecoder<'_> {
    type State = Encoded;

    fn step(&self, tokens: &[u32], state: &Encoded) -> (Vec<f32>, Encoded) {
        wgrad_autograd::no_grad(|| {
            let dev = state.h.device();
            let n = tokens.len();
            let state = if state.h.shape()[0] == n { state.clone() } else { self.select(state, &vec![0; n]) };
            let (logits, next) = self.model.decode_step(&Tensor::from_u32(tokens, &[n], &dev), &state);
            (logits.log_softmax(-1).to_vec(), next)
        })
    }

    fn select(&self, state: &Encoded, rows: &[u32]) -> Encoded {
        let idx = Tensor::from_u32(rows, &[rows.len()], &state.h.device());
        let pick = |t: &Tensor| t.index_select(0, &idx);
        Encoded {
            memory: pick(&state.memory),
            projected: state.projected.as_ref().map(pick),
            mask: state.mask.as_ref().map(pick),
            h: pick(&state.h),
        }
    }
}

impl Module for Seq2Seq {
    /// Not meaningful alone (needs a target): encodes `src [B, S]` and
    /// returns the encoder outputs.
    fn forward(&self, src: &Tensor) -> Tensor {
        self.encode(src, None).memory
    }

    fn describe(&self) -> String {
        let c = &self.config;
        format!(
            "Seq2Seq(src_vocab={}, tgt_vocab={}, hidden={}, attention={:?})",
            c.src_vocab, c.tgt_vocab, c.hidden, c.attention
        )
    }
}

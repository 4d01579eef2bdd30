//! Positional encodings: attention is blind to order, so each position's
//! embedding gets a position signal added, fixed (sinusoidal) or learned.

use wgrad_autograd::{Device, Tensor};

use crate::construction::{setters, Init};
use crate::Module;

/// Adds the sinusoids of "Attention Is All You Need" to `[B, L, E]`
/// (batch-first) or `[L, B, E]` input: `pe[pos, 2i] = sin(pos / 10000^(2i/E))`,
/// `pe[pos, 2i+1] = cos(...)`. The table is computed, not learned, and is not
/// part of the state dict.
#[derive(Module)]
pub struct SinusoidalPositionalEncoding {
    // A constant recomputed by `new`, not state: PyTorch tutorials register
    // it as a buffer, but it stays out of this layer's state dict.
    #[skip]
    pe: Tensor,
    /// Input is `[B, L, E]` (else `[L, B, E]`).
    pub batch_first: bool,
}

impl SinusoidalPositionalEncoding {
    /// The table for positions `0..max_len` of width `d_model`, for
    /// time-major `[L, B, E]` input unless
    /// [`batch_first`](SinusoidalBuilder::batch_first).
    pub fn builder(d_model: usize, max_len: usize) -> SinusoidalBuilder {
        SinusoidalBuilder { d_model, max_len, batch_first: false }
    }

    fn new(d_model: usize, max_len: usize, batch_first: bool, device: &Device) -> Self {
        let mut v = vec![0f32; max_len * d_model];
        for pos in 0..max_len {
            for i in 0..d_model {
                let freq = (-(10000f64.ln()) * (2 * (i / 2)) as f64 / d_model as f64).exp();
                let a = pos as f64 * freq;
                v[pos * d_model + i] = if i % 2 == 0 { a.sin() } else { a.cos() } as f32;
            }
        }
        SinusoidalPositionalEncoding { pe: Tensor::from_vec(&v, &[max_len, d_model], device), batch_first }
    }

    /// The `[len, d_model]` encodings of positions `0..len`.
    ///
    /// # Panics
    /// When `len` exceeds the table.
    pub fn encodings(&self, len: usize) -> Tensor {
        let max = self.pe.shape()[0];
        assert!(len <= max, "SinusoidalPositionalEncoding: sequence of {len} exceeds max_len {max}");
        self.pe.narrow(0, 0, len)
    }
}

impl Module for SinusoidalPositionalEncoding {
    fn forward(&self, x: &Tensor) -> Tensor {
        let s = x.shape();
        assert!(s.len() == 3, "SinusoidalPositionalEncoding: expects rank-3 input, got {s:?}");
        if self.batch_first {
            x + &self.encodings(s[1])
        } else {
            x + &self.encodings(s[0]).unsqueeze(1)
        }
    }

    fn describe(&self) -> String {
        let s = self.pe.shape();
        format!("SinusoidalPositionalEncoding(d_model={}, max_len={})", s[1], s[0])
    }
}

/// Options of a [`SinusoidalPositionalEncoding`]; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SinusoidalBuilder {
    d_model: usize,
    max_len: usize,
    batch_first: bool,
}

impl SinusoidalBuilder {
    setters! {
        /// `[B, L, E]` input (default false: `[L, B, E]`).
        batch_first: bool,
    }

    /// The table (constant: it draws nothing from the generator).
    pub fn build(self, init: &mut Init) -> SinusoidalPositionalEncoding {
        SinusoidalPositionalEncoding::new(self.d_model, self.max_len, self.batch_first, init.device())
    }
}

/// A learned `weight [max_len, d_model]` table (GPT-2's `wpe`), initialised
/// N(0, 0.02²); adds row `pos` to position `pos` of `[B, L, E]` input.
#[derive(Module)]
pub struct LearnedPositionalEmbedding {
    /// `[max_len, d_model]`.
    #[param]
    pub weight: Tensor,
}

impl LearnedPositionalEmbedding {
    /// A table for positions `0..max_len`; [`build`](LearnedPositionalBuilder::build) makes it.
    pub fn builder(max_len: usize, d_model: usize) -> LearnedPositionalBuilder {
        LearnedPositionalBuilder { max_len, d_model }
    }
}

/// The sizes of a [`LearnedPositionalEmbedding`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearnedPositionalBuilder {
    max_len: usize,
    d_model: usize,
}

impl LearnedPositionalBuilder {
    /// The table, drawn N(0, 0.02²).
    pub fn build(self, init: &mut Init) -> LearnedPositionalEmbedding {
        let weight = Tensor::zeros(&[self.max_len, self.d_model], init.device()).requires_grad_();
        crate::init::normal_(&weight, 0.0, 0.02, init.generator());
        LearnedPositionalEmbedding { weight }
    }
}

impl LearnedPositionalEmbedding {
    /// `x [B, L, E]` plus rows `offset..offset + L` (positions after
    /// `offset` cached ones, when decoding with a key/value cache).
    ///
    /// # Panics
    /// When the positions pass the table.
    pub fn forward_at(&self, x: &Tensor, offset: usize) -> Tensor {
        let s = x.shape();
        let max = self.weight.shape()[0];
        assert!(
            s.len() == 3 && offset + s[1] <= max,
            "LearnedPositionalEmbedding: positions {offset}..{} of [B, L, E] {s:?} pass the table's {max}",
            offset + s.get(1).copied().unwrap_or(0)
        );
        x + &self.weight.narrow(0, offset, s[1])
    }
}

impl Module for LearnedPositionalEmbedding {
    /// `x [B, L, E]` plus the first L rows.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_at(x, 0)
    }

    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!("LearnedPositionalEmbedding({}, {})", s[0], s[1])
    }
}

/// Options of a [`RotaryEmbedding`]; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RotaryBuilder {
    dim: usize,
    max_len: usize,
    base: f64,
}

impl RotaryBuilder {
    setters! {
        /// The frequency base (default 10,000; longer contexts use larger ones).
        base: f64,
    }

    /// The cos/sin tables (constant: nothing is drawn from the generator).
    pub fn build(self, init: &mut Init) -> RotaryEmbedding {
        let (cos, sin) = Tensor::rotary_tables(self.max_len, self.dim, 0, self.base, init.device());
        RotaryEmbedding { cos, sin, dim: self.dim, max_len: self.max_len }
    }
}

/// Rotary position embeddings (RoPE) for queries and keys of
/// `[.., seq, head_dim]`: each pair of features `(i, i + d/2)` at position
/// `p` rotates by `p·base^(-2i/d)`, so attention scores depend on relative
/// positions (LLaMA, GPT-NeoX). Not a module: it has no parameters or state;
/// attention applies it to q and k before the scores.
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
    /// The rotated feature dim (even).
    pub dim: usize,
    /// Positions the tables cover.
    pub max_len: usize,
}

impl RotaryEmbedding {
    /// Tables for positions `0..max_len` of `dim` features, base 10,000
    /// unless [`base`](RotaryBuilder::base) says otherwise.
    pub fn builder(dim: usize, max_len: usize) -> RotaryBuilder {
        RotaryBuilder { dim, max_len, base: 10_000.0 }
    }

    /// `x` (`[.., seq, dim]`) rotated for positions `offset..offset + seq`:
    /// `offset` is the number of tokens already cached when decoding.
    ///
    /// # Panics
    /// When the positions pass `max_len` or the last dim is not `dim`.
    pub fn apply(&self, x: &Tensor, offset: usize) -> Tensor {
        let seq = x.shape()[x.dims().saturating_sub(2)];
        assert!(
            offset + seq <= self.max_len,
            "RotaryEmbedding: positions {offset}..{} pass max_len {}",
            offset + seq,
            self.max_len
        );
        x.apply_rotary(&self.cos.narrow(0, offset, seq), &self.sin.narrow(0, offset, seq))
    }
}

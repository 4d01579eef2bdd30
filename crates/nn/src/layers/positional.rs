//! Positional encodings: attention is blind to order, so each position's
//! embedding gets a position signal added, fixed (sinusoidal) or learned.

use wgrad_autograd::{Device, Generator, Tensor};

use crate::init;
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
    /// The table for positions `0..max_len` of width `d_model`.
    pub fn new(d_model: usize, max_len: usize, batch_first: bool, device: &Device) -> Self {
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

/// A learned `weight [max_len, d_model]` table (GPT-2's `wpe`), initialised
/// N(0, 0.02²); adds row `pos` to position `pos` of `[B, L, E]` input.
#[derive(Module)]
pub struct LearnedPositionalEmbedding {
    /// `[max_len, d_model]`.
    #[param]
    pub weight: Tensor,
}

impl LearnedPositionalEmbedding {
    /// A table for positions `0..max_len`.
    pub fn new(max_len: usize, d_model: usize, gen: &mut Generator, device: &Device) -> Self {
        let weight = Tensor::zeros(&[max_len, d_model], device).requires_grad_();
        init::normal_(&weight, 0.0, 0.02, gen);
        LearnedPositionalEmbedding { weight }
    }
}

impl Module for LearnedPositionalEmbedding {
    /// `x [B, L, E]` plus the first L rows.
    fn forward(&self, x: &Tensor) -> Tensor {
        let s = x.shape();
        let max = self.weight.shape()[0];
        assert!(s.len() == 3 && s[1] <= max, "LearnedPositionalEmbedding: expects [B, L ≤ {max}, E], got {s:?}");
        x + &self.weight.narrow(0, 0, s[1])
    }

    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!("LearnedPositionalEmbedding({}, {})", s[0], s[1])
    }
}

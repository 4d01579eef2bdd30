//! Inverted dropout with a mask from the counter-based Philox stream, so a
//! generator state reproduces the same mask on the GPU and the CPU backend.

use wgrad_gpu_core::ops::random;
use wgrad_gpu_core::Layout;

use crate::tensor::expect;
use crate::{DType, Generator, Tensor};

impl Tensor {
    /// `torch.nn.functional.dropout`: in training, zeroes each element with
    /// probability `p` and scales the rest by `1 / (1 − p)`; the identity
    /// when `!training` or `p == 0`, zeros when `p == 1`. The backward
    /// multiplies by the same mask.
    ///
    /// The mask is element `i`'s uniform draw `u_i < p` from `gen`, which
    /// advances like [`Generator::uniform`] for `numel` values (only when a
    /// mask is drawn, i.e. `0 < p < 1` in training, as in PyTorch).
    ///
    /// # Panics
    /// When `p` is outside `[0, 1]` or `self` is not F32.
    pub fn dropout(&self, p: f32, training: bool, gen: &mut Generator) -> Tensor {
        const OP: &str = "dropout";
        assert!((0.0..=1.0).contains(&p), "{OP}: probability must be in [0, 1], got {p}");
        if self.dtype() == DType::F16 {
            return self.f32_input(OP).dropout(p, training, gen);
        }
        self.expect_dtype(OP, DType::F32);
        if !training || p == 0.0 {
            return self.clone();
        }
        if p == 1.0 {
            return self.mul_scalar(0.0);
        }
        let n = self.numel();
        let at = gen.offset;
        gen.offset += random::counters_used(n);
        let mask = expect(OP, random::dropout_mask(&self.device(), n, p, gen.seed, at));
        self * &Tensor::constant(mask, Layout::contiguous(&self.shape()), DType::F32)
    }
}

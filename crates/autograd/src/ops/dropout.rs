//! Inverted dropout with a mask from the counter-based Philox stream, so a
//! generator state reproduces the same mask on the GPU and the CPU backend.

use wgrad_gpu_core::ops::binary::{self, BinaryOp};
use wgrad_gpu_core::ops::{cast, random};
use wgrad_gpu_core::Layout;

use crate::tensor::expect;
use crate::trace::TraceOp;
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
    /// An F16 input gives an F16 output: `x · mask · 1/(1 − p)` computed in
    /// f32 and rounded once (as PyTorch's f16 dropout does), with the same
    /// mask as an F32 input would get, and an F16 gradient.
    ///
    /// # Panics
    /// When `p` is outside `[0, 1]` or `self` is not F32 or F16.
    pub fn dropout(&self, p: f32, training: bool, gen: &mut Generator) -> Tensor {
        let scope = crate::trace::scope();
        scope.output(|| TraceOp::Dropout { p, training }, &[self], self.dropout_untraced(p, training, gen))
    }

    fn dropout_untraced(&self, p: f32, training: bool, gen: &mut Generator) -> Tensor {
        const OP: &str = "dropout";
        assert!((0.0..=1.0).contains(&p), "{OP}: probability must be in [0, 1], got {p}");
        self.float_storage(OP);
        if !training || p == 0.0 {
            return self.clone();
        }
        if p == 1.0 {
            return self.mul_scalar(0.0);
        }
        let n = self.numel();
        let at = gen.take(random::counters_used(n));
        // Inside a compiled step's recording, a row of its counter table.
        let source = crate::compiled_random::source(gen, at);
        let mask = expect(OP, random::dropout_mask_from(&self.device(), n, p, source.counter()));
        let layout = Layout::contiguous(&self.shape());
        if self.dtype() == DType::F32 {
            return self * &Tensor::constant(mask, layout, DType::F32);
        }
        // f16: the widened span, the product and the rounding (one fused
        // kernel on a GPU); only the f16 output and the mask stay alive.
        let (x, lx) = self.f32_words();
        let (y, _) = expect(OP, binary::binary(BinaryOp::Mul, &x, &lx, &mask, &layout));
        let y = expect(OP, cast::f32_to_f16(&y, n));
        let mask = Tensor::constant(mask, layout.clone(), DType::F32);
        // The rule's f32 product is rounded to f16 by the graph (the input's dtype).
        Tensor::from_op_dtype(OP, y, layout, DType::F16, &[self], move |g, _, _| vec![Some(g * &mask)])
    }
}

//! Softmax and log-softmax along any axis: the axis is moved last (a view),
//! made contiguous, and handed to gpu-core's row kernels; the result is
//! permuted back. The backward is one fused row kernel from the saved output.
//! An F16 input is read as f16 by the kernel (no widened copy); the output is
//! F32 and the input's gradient, computed in f32, is rounded to F16.

use wgrad_gpu_core::ops::softmax;
use wgrad_gpu_core::Layout;

use crate::graph::Saves;
use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// `exp(x) / Σ exp(x)` along `dim` (negative counts from the end), computed
    /// with the maximum subtracted so large inputs do not overflow (`torch.softmax`).
    pub fn softmax(&self, dim: isize) -> Tensor {
        self.softmax_along("softmax", dim, false)
    }

    /// `x − log Σ exp(x)` along `dim`, stable like [`softmax`](Self::softmax)
    /// and more accurate than `softmax(dim).log()` (`torch.log_softmax`).
    pub fn log_softmax(&self, dim: isize) -> Tensor {
        self.softmax_along("log_softmax", dim, true)
    }

    fn softmax_along(&self, op: &'static str, dim: isize, log: bool) -> Tensor {
        let scope = crate::trace::scope();
        let y = self.softmax_along_untraced(op, dim, log);
        scope.output(|| TraceOp::Softmax { dim: self.dim_index(op, dim), log }, &[self], y)
    }

    fn softmax_along_untraced(&self, op: &'static str, dim: isize, log: bool) -> Tensor {
        self.float_storage(op);
        let d = self.dim_index(op, dim);
        let rank = self.dims();
        if rank == 0 || d == rank - 1 {
            return self.softmax_last(op, log);
        }
        let mut perm: Vec<usize> = (0..rank).filter(|&i| i != d).collect();
        perm.push(d);
        let mut inverse = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        self.permute(&perm).softmax_last(op, log).permute(&inverse)
    }

    /// Softmax over the last axis (a 0-d tensor is one row of one element).
    fn softmax_last(&self, op: &'static str, log: bool) -> Tensor {
        let shape = self.shape();
        let cols = shape.last().copied().unwrap_or(1);
        let rows = self.numel().checked_div(cols).unwrap_or(0);
        let (dtype, io) = (self.dtype(), self.float_storage(op));
        let y = expect(op, softmax::softmax_rows_io(&self.dense_buffer(), io, rows, cols, log));
        let layout = Layout::contiguous(&shape);
        let saves = Saves::inputs([false]).and_output();
        Tensor::from_op_saving(op, y, layout.clone(), DType::F32, &[self], saves, move |g, _, out| {
            let dx = softmax::softmax_rows_backward(&out.dense_buffer(), &g.dense_buffer(), rows, cols, log);
            // f32 math; an F16 input gets its gradient rounded once.
            vec![Some(Tensor::from_parts(expect(op, dx), layout.clone(), DType::F32).to_dtype(dtype))]
        })
    }
}

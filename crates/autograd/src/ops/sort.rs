//! Sorting: `torch.argsort` (stable), `torch.sort` and `torch.topk`. The
//! positions come from one kernel (`gpu-core`'s `argsort`: a bitonic network
//! per fiber on a GPU, the same order as the CPU twin); the values are a
//! `gather` at them, so their gradient is gather's (each input element
//! gets the gradient of the place it went to) and a trace records the
//! argsort, a slice and a gather.
//!
//! Order: ascending or largest first, equal values in position order (as
//! PyTorch's `stable=True`), NaN above every number, -0.0 equal to 0.0.

use wgrad_gpu_core::ops::argsort as kernel;
use wgrad_gpu_core::Layout;

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// The positions that sort `dim` (`torch.argsort(x, dim, descending,
    /// stable=True)`), as a U32 tensor of `self`'s shape. Not differentiable.
    ///
    /// # Panics
    /// For a dim out of range, or a tensor that is not F32 or F16.
    pub fn argsort(&self, dim: isize, descending: bool) -> Tensor {
        const OP: &str = "argsort";
        let scope = crate::trace::scope();
        let d = self.dim_index(OP, dim);
        let wide = self.widened(OP);
        let shape: Vec<usize> = if wide.dims() == 0 { vec![1] } else { wide.shape().to_vec() };
        let idx = expect(OP, kernel::argsort(&wide.dense_buffer(), &shape, d, descending));
        let t = Tensor::constant(idx, Layout::contiguous(&self.shape()), DType::U32);
        scope.output(|| TraceOp::ArgSort { dim: d, descending }, &[self], t)
    }

    /// The values along `dim` in order and where each came from
    /// (`torch.sort(x, dim, descending, stable=True)`): `(values, indices)`,
    /// the indices U32. The values' gradient goes back to where each value
    /// came from.
    ///
    /// ```
    /// # use wgrad_autograd::{Device, Tensor};
    /// let x = Tensor::from_vec(&[3.0, 1.0, 2.0], &[3], &Device::cpu());
    /// let (v, i) = x.sort(0, false);
    /// assert_eq!((v.to_vec(), i.to_vec_u32()), (vec![1.0, 2.0, 3.0], vec![1, 2, 0]));
    /// ```
    ///
    /// # Panics
    /// As [`argsort`](Self::argsort).
    pub fn sort(&self, dim: isize, descending: bool) -> (Tensor, Tensor) {
        let idx = self.argsort(dim, descending);
        (self.gather_values(dim, &idx), idx)
    }

    /// The `k` largest (or, with `largest` false, smallest) values along
    /// `dim`, in order, and their positions (`torch.topk(x, k, dim,
    /// largest, sorted=True)`): `(values, indices)`, the indices U32.
    /// Equal values come in position order.
    ///
    /// # Panics
    /// As [`argsort`](Self::argsort), and when `k` exceeds the dim's size.
    pub fn topk(&self, k: usize, dim: isize, largest: bool) -> (Tensor, Tensor) {
        let d = self.dim_index("topk", dim);
        let n = if self.dims() == 0 { 1 } else { self.shape()[d] };
        assert!(k <= n, "topk: k ({k}) is larger than dim {d} ({n}) of shape {:?}", self.shape());
        let idx = self.argsort(dim, largest);
        let idx = if self.dims() == 0 || k == n { idx } else { idx.narrow(d as isize, 0, k) };
        (self.gather_values(dim, &idx), idx)
    }

    /// `gather` for F32 or F16 values (F16 gathered as f32: exact).
    fn gather_values(&self, dim: isize, idx: &Tensor) -> Tensor {
        if self.dims() == 0 {
            return self.reshape(&[]);
        }
        match self.dtype() {
            DType::F16 => self.to_dtype(DType::F32).gather(dim, idx).to_dtype(DType::F16),
            _ => self.gather(dim, idx),
        }
    }
}

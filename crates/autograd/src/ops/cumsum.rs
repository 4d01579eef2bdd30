//! `torch.cumsum`: running sums along a dim, whose gradient is the running
//! sums of the output gradient from the other end. Both are one launch
//! (`gpu-core`'s `cumsum`), adding in order: the same bits on every device
//! and run.
//!
//! F16 input is summed in f32 and rounded once per element (PyTorch's
//! autocast runs cumsum in f32 too).

use wgrad_gpu_core::ops::cumsum as kernel;
use wgrad_gpu_core::Layout;

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// Running sums along `dim` (`torch.cumsum(x, dim)`): element `j` is
    /// the sum of elements `0..=j` along it.
    ///
    /// ```
    /// # use wgrad_autograd::{Device, Tensor};
    /// let x = Tensor::from_vec(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &Device::cpu());
    /// assert_eq!(x.cumsum(-1).to_vec(), [1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
    /// ```
    ///
    /// # Panics
    /// For a dim out of range, or a tensor that is not F32 or F16.
    pub fn cumsum(&self, dim: isize) -> Tensor {
        const OP: &str = "cumsum";
        let scope = crate::trace::scope();
        let d = self.dim_index(OP, dim);
        let dtype = self.dtype();
        let wide = self.widened(OP);
        // A 0-d tensor is its own running sum (PyTorch's too).
        let shape: Vec<usize> = if wide.dims() == 0 { vec![1] } else { wide.shape().to_vec() };
        let out = expect(OP, kernel::cumsum(&wide.dense_buffer(), &shape, d, false));
        let y = Tensor::from_op(OP, out, Layout::contiguous(&wide.shape()), &[&wide], move |g, _, _| {
            let dx = expect(OP, kernel::cumsum(&g.dense_buffer(), &shape, d, true));
            vec![Some(Tensor::from_parts(dx, Layout::contiguous(&g.shape()), DType::F32))]
        });
        let y = if dtype == DType::F16 { y.to_dtype(DType::F16) } else { y };
        scope.output(|| TraceOp::CumSum { dim: d }, &[self], y)
    }
}

//! Reductions over any set of axes, with keepdim.

use wgrad_gpu_core::ops::reduce::{self, ReduceOp};
use wgrad_gpu_core::Layout;

use crate::graph::Saves;
use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// Normalises user axes (negative allowed; empty = all) to sorted indices.
    pub(crate) fn axes(&self, op: &str, axes: &[isize]) -> Vec<usize> {
        let mut v: Vec<usize> = if axes.is_empty() {
            (0..self.dims()).collect()
        } else {
            axes.iter().map(|&a| self.dim_index(op, a)).collect()
        };
        v.sort_unstable();
        let before = v.len();
        v.dedup();
        assert_eq!(before, v.len(), "{op}: repeated axis in {axes:?}");
        v
    }

    /// The reduction's buffer and shape; an F16 view is read as f16 by the
    /// kernel (no widened copy), the result is f32 (u32 for the arg ops).
    fn reduce_raw(
        &self,
        op: ReduceOp,
        axes: &[usize],
        keepdim: bool,
    ) -> (wgrad_gpu_core::Buffer, wgrad_gpu_core::Dims) {
        let io = self.float_storage(op.name());
        let (b, l) = self.buffer_and_layout();
        expect(op.name(), reduce::reduce_io(op, &b, io, &l, axes, keepdim))
    }

    /// The shape `self` has after reducing `axes` with keepdim.
    fn kept_shape(&self, axes: &[usize]) -> wgrad_gpu_core::Dims {
        let mut s = self.shape();
        for &a in axes {
            s[a] = 1;
        }
        s
    }

    /// Reduction whose gradient is `g` broadcast back times `scale(inputs, out)`.
    /// An F16 input is read as f16 and reduced in f32 (long sums would lose
    /// f16's precision): the result is F32, and the input's gradient (f32
    /// math) is rounded to F16 by the graph.
    fn reduce_op(&self, op: ReduceOp, axes: &[isize], keepdim: bool) -> Tensor {
        let scope = crate::trace::scope();
        let ax = self.axes(op.name(), axes);
        let (buf, shape) = self.reduce_raw(op, &ax, keepdim);
        let in_shape = self.shape();
        let kept = self.kept_shape(&ax);
        let count: usize = ax.iter().map(|&a| in_shape[a]).product();
        // A sum's or a mean's rule broadcasts the gradient back, reading no value.
        let saves = if matches!(op, ReduceOp::Sum | ReduceOp::Mean) { Saves::NOTHING } else { Saves::ALL };
        let layout = Layout::contiguous(&shape);
        let y = Tensor::from_op_saving(op.name(), buf, layout, DType::F32, &[self], saves, move |g, inputs, out| {
            // The mean's scale goes on the reduced gradient, before it is
            // broadcast: one multiply per output, not per input element
            // (a launch over the whole input on a device), same values.
            let g = if op == ReduceOp::Mean { g.mul_scalar(1.0 / count as f32) } else { g.clone() };
            let g = g.reshape(&kept).expand(&in_shape);
            let x = &inputs[0];
            let gx = match op {
                ReduceOp::Sum | ReduceOp::Mean => g,
                // Ties share the gradient evenly (PyTorch's amax/amin rule).
                ReduceOp::Max | ReduceOp::Min => {
                    let hit = x.eq(&out.reshape(&kept));
                    let ties = hit.sum_keepdim(&ax);
                    &g * &hit / ties
                }
                ReduceOp::Var { correction } => {
                    let mean = x.mean_keepdim(&ax);
                    let denom = (count as f32 - correction as f32).max(0.0);
                    &g * &(x - &mean).mul_scalar(2.0 / denom)
                }
                ReduceOp::ArgMax | ReduceOp::ArgMin => unreachable!("index results carry no gradient"),
            };
            vec![Some(gx)]
        });
        scope.output(|| TraceOp::Reduce { op, axes: self.axes(op.name(), axes), keepdim }, &[self], y)
    }

    fn sum_keepdim(&self, axes: &[usize]) -> Tensor {
        let a: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
        self.sum(&a, true)
    }

    fn mean_keepdim(&self, axes: &[usize]) -> Tensor {
        let a: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
        self.mean(&a, true)
    }

    /// Sum over `axes` (empty = all).
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Tensor {
        self.reduce_op(ReduceOp::Sum, axes, keepdim)
    }
    /// Mean over `axes` (empty = all).
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Tensor {
        self.reduce_op(ReduceOp::Mean, axes, keepdim)
    }
    /// Maximum over `axes` (empty = all); ties share the gradient.
    pub fn max(&self, axes: &[isize], keepdim: bool) -> Tensor {
        self.reduce_op(ReduceOp::Max, axes, keepdim)
    }
    /// Minimum over `axes` (empty = all); ties share the gradient.
    pub fn min(&self, axes: &[isize], keepdim: bool) -> Tensor {
        self.reduce_op(ReduceOp::Min, axes, keepdim)
    }
    /// Variance over `axes`; `correction` 1 is unbiased (PyTorch's default), 0 biased.
    pub fn var(&self, axes: &[isize], correction: usize, keepdim: bool) -> Tensor {
        self.reduce_op(ReduceOp::Var { correction }, axes, keepdim)
    }
    /// Sum of all elements as a 0-d tensor.
    pub fn sum_all(&self) -> Tensor {
        self.sum(&[], false)
    }
    /// Mean of all elements as a 0-d tensor.
    pub fn mean_all(&self) -> Tensor {
        self.mean(&[], false)
    }

    fn arg(&self, op: ReduceOp, axis: isize, keepdim: bool) -> Tensor {
        let scope = crate::trace::scope();
        let ax = [self.dim_index(op.name(), axis)];
        let (buf, shape) = self.reduce_raw(op, &ax, keepdim);
        let y = Tensor::constant(buf, Layout::contiguous(&shape), DType::U32);
        scope.output(|| TraceOp::Reduce { op, axes: ax.to_vec(), keepdim }, &[self], y)
    }

    /// Index of the maximum along `axis` (U32; first index on ties).
    pub fn argmax(&self, axis: isize, keepdim: bool) -> Tensor {
        self.arg(ReduceOp::ArgMax, axis, keepdim)
    }
    /// Index of the minimum along `axis` (U32; first index on ties).
    pub fn argmin(&self, axis: isize, keepdim: bool) -> Tensor {
        self.arg(ReduceOp::ArgMin, axis, keepdim)
    }

    /// Sums a broadcast gradient back to `shape` (the inverse of broadcasting).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Tensor {
        let s = self.shape();
        if s == shape {
            return self.clone();
        }
        let lead = s.len() - shape.len();
        let axes: Vec<isize> =
            (0..s.len()).filter(|&d| d < lead || (shape[d - lead] == 1 && s[d] != 1)).map(|d| d as isize).collect();
        self.sum(&axes, true).reshape(shape)
    }
}

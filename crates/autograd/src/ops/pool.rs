//! 2-D pooling of `[N, C, H, W]` (or unbatched `[C, H, W]`) tensors, like
//! `torch.nn.functional`'s max_pool2d, avg_pool2d and adaptive_avg_pool2d.
//! Each backward is one gather kernel.
//!
//! Window sizes are `(height, width)` tuples. The positional forms take
//! PyTorch's positional arguments, all of them, so `F.max_pool2d(x, 2)` is
//! `x.max_pool2d((2, 2), (2, 2), (0, 0), (1, 1))`; the `_window` forms take
//! a [`PoolWindow`], whose defaults are PyTorch's and which holds
//! `ceil_mode` too: `F.max_pool2d(x, 3, 2, ceil_mode=True)` is
//! `x.max_pool2d_window(PoolWindow::new((3, 3)).stride((2, 2)).ceil_mode(true))`.
//!
//! F16 input (mixed precision: autocast's convolutions return f16
//! activations) runs the f16 kernels: read as f16, f32 arithmetic (an
//! average sums in f32 and rounds once, a maximum is exact), an F16 result
//! and an F16 input gradient, like PyTorch's f16 pooling. Nothing is widened
//! or kept in f32 for the backward pass.

use wgrad_gpu_core::ops::pool::{self, Operands};
use wgrad_gpu_core::{Buffer, Layout};

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, PoolWindow, Tensor};

type Pair = (usize, usize);

/// The window of PyTorch's positional pooling arguments (`ceil_mode` off).
fn positional(kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> PoolWindow {
    PoolWindow::new(kernel).stride(stride).padding(padding).dilation(dilation)
}

impl Tensor {
    /// The input as a 4-D tensor, whether it was unbatched `[C, H, W]`, and
    /// how the kernels store its values (F32 or F16, the tensor's dtype).
    fn pool_input(&self, op: &str) -> (Tensor, bool, Operands) {
        let io = self.float_storage(op);
        let x = self.clone();
        match x.dims() {
            4 => (x, false, io),
            3 => (x.unsqueeze(0), true, io),
            _ => panic!("{op}: expects an [N, C, H, W] or [C, H, W] tensor, got shape {:?}", self.shape()),
        }
    }

    /// Records a pooling of the 4-D `x4` whose output is `out` (of `x4`'s
    /// dtype); `back` maps the dense output gradient to the dense input
    /// gradient, both of that dtype. Drops the batch dim again for unbatched input.
    fn pool_result(
        x4: &Tensor,
        unbatched: bool,
        op: &'static str,
        out: Buffer,
        out_shape: &[usize],
        back: impl Fn(&Buffer, &[usize]) -> wgrad_gpu_core::Result<Buffer> + Send + Sync + 'static,
    ) -> Tensor {
        let dtype = x4.dtype();
        let y = Tensor::from_op_dtype(op, out, Layout::contiguous(out_shape), dtype, &[x4], move |g, inputs, _| {
            let shape = inputs[0].shape();
            let g = if g.dtype() == dtype { g.clone() } else { g.to_dtype(dtype) };
            let dx = expect(op, back(&g.dense_buffer(), &shape));
            vec![Some(Tensor::from_parts(dx, Layout::contiguous(&shape), dtype))]
        });
        if unbatched {
            y.squeeze(0)
        } else {
            y
        }
    }

    /// Max pooling over `kernel` windows moved by `stride`, with implicit −∞
    /// `padding` (at most half the kernel) and `dilation` between window
    /// elements (`F.max_pool2d`). The gradient goes to each window's maximum
    /// (the first one on ties).
    ///
    /// # Panics
    /// For input that is not 3-D or 4-D F32 or F16, or a window that does not fit.
    pub fn max_pool2d(&self, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Tensor {
        self.max_pool2d_window(positional(kernel, stride, padding, dilation))
    }

    /// [`max_pool2d`](Self::max_pool2d) over a [`PoolWindow`] (which can
    /// also round output sizes up: `ceil_mode`).
    pub fn max_pool2d_window(&self, window: PoolWindow) -> Tensor {
        let scope = crate::trace::scope();
        let y = self.max_pool2d_op("max_pool2d", window).0;
        scope.output(|| TraceOp::MaxPool2d { window, indices: false }, &[self], y)
    }

    /// [`max_pool2d`](Self::max_pool2d) that also returns, as a U32 tensor
    /// shaped like the output, each window's argmax as a flat index
    /// `y·W + x` into its input image (`return_indices=True`).
    pub fn max_pool2d_with_indices(
        &self,
        kernel: Pair,
        stride: Pair,
        padding: Pair,
        dilation: Pair,
    ) -> (Tensor, Tensor) {
        self.max_pool2d_window_with_indices(positional(kernel, stride, padding, dilation))
    }

    /// [`max_pool2d_with_indices`](Self::max_pool2d_with_indices) over a [`PoolWindow`].
    pub fn max_pool2d_window_with_indices(&self, window: PoolWindow) -> (Tensor, Tensor) {
        let scope = crate::trace::scope();
        let (y, arg, out_shape) = self.max_pool2d_op("max_pool2d", window);
        let idx = Tensor::constant(arg, Layout::contiguous(&out_shape), DType::U32);
        // Shaped like the output (unbatched input: no batch dim).
        let idx = if y.dims() < out_shape.len() { idx.squeeze(0) } else { idx };
        scope.record(|| TraceOp::MaxPool2d { window, indices: true }, &[Some(self)], &[&y, &idx]);
        (y, idx)
    }

    /// The recorded max pooling, its argmax buffer and the 4-D output shape.
    fn max_pool2d_op(&self, op: &'static str, window: PoolWindow) -> (Tensor, Buffer, wgrad_gpu_core::Dims) {
        let (x4, unbatched, io) = self.pool_input(op);
        let shape = x4.shape();
        let (out, arg, out_shape) = expect(op, pool::max_pool2d_io(&x4.dense_buffer(), &shape, window, io));
        let saved = arg.clone();
        let y = Self::pool_result(&x4, unbatched, op, out, &out_shape, move |g, in_shape| {
            pool::max_pool2d_backward_io(g, &saved, in_shape, window, io)
        });
        (y, arg, out_shape)
    }

    /// Average pooling over `kernel` windows moved by `stride` with zero
    /// `padding` (at most half the kernel), like `F.avg_pool2d`. Each window's
    /// sum is divided by the kernel area when `count_include_pad` (PyTorch's
    /// default, true), else by the number of elements inside the input.
    ///
    /// # Panics
    /// For input that is not 3-D or 4-D F32 or F16, or a window that does not fit.
    pub fn avg_pool2d(&self, kernel: Pair, stride: Pair, padding: Pair, count_include_pad: bool) -> Tensor {
        self.avg_pool2d_window(positional(kernel, stride, padding, (1, 1)), count_include_pad)
    }

    /// [`avg_pool2d`](Self::avg_pool2d) over a [`PoolWindow`] (no dilation).
    /// With `ceil_mode`, a last window that runs past the padded input
    /// divides by its area up to there (PyTorch's rule).
    pub fn avg_pool2d_window(&self, window: PoolWindow, count_include_pad: bool) -> Tensor {
        const OP: &str = "avg_pool2d";
        let scope = crate::trace::scope();
        let (x4, unbatched, io) = self.pool_input(OP);
        let shape = x4.shape();
        let (out, out_shape) =
            expect(OP, pool::avg_pool2d_io(&x4.dense_buffer(), &shape, window, count_include_pad, io));
        let y = Self::pool_result(&x4, unbatched, OP, out, &out_shape, move |g, in_shape| {
            pool::avg_pool2d_backward_io(g, in_shape, window, count_include_pad, io)
        });
        scope.output(|| TraceOp::AvgPool2d { window, count_include_pad }, &[self], y)
    }

    /// Adaptive average pooling to `(out_h, out_w)` (`F.adaptive_avg_pool2d`):
    /// output row `i` averages input rows `floor(i·H/out_h) ..
    /// ceil((i+1)·H/out_h)`, and likewise for columns. `(1, 1)` is global
    /// average pooling.
    ///
    /// # Panics
    /// For input that is not 3-D or 4-D F32 or F16, or a zero output size.
    pub fn adaptive_avg_pool2d(&self, out_size: Pair) -> Tensor {
        const OP: &str = "adaptive_avg_pool2d";
        let scope = crate::trace::scope();
        let (x4, unbatched, io) = self.pool_input(OP);
        let shape = x4.shape();
        let (out, out_shape) = expect(OP, pool::adaptive_avg_pool2d_io(&x4.dense_buffer(), &shape, out_size, io));
        let y = Self::pool_result(&x4, unbatched, OP, out, &out_shape, move |g, in_shape| {
            pool::adaptive_avg_pool2d_backward_io(g, in_shape, out_size, io)
        });
        scope.output(|| TraceOp::AdaptiveAvgPool2d { out: out_size }, &[self], y)
    }
}

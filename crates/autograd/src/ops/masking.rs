//! Masking ops built on `where`: masked_fill, tril and triu. They need no
//! kernels of their own, so their gradients are `where`'s (the gradient
//! passes where the input is kept, 0 where it is replaced) and a trace
//! records `where`, its constants and casts (which ONNX export already
//! knows).

use wgrad_gpu_core::layout::broadcast_shapes;

use crate::{DType, Tensor};

impl Tensor {
    /// `value` where `mask` is nonzero, `self` elsewhere
    /// (`torch.Tensor.masked_fill` with a scalar). `mask` takes the
    /// condition as [`where_cond`](Self::where_cond) does: an F32 (or F16)
    /// tensor of 1.0 / 0.0, as the comparisons (`lt`, `eq`, ...) return, or
    /// a U32 one (nonzero is true); PyTorch takes a bool tensor. `mask` and
    /// `self` broadcast together, so the result has their broadcast shape,
    /// as PyTorch's out-of-place `masked_fill`. The result keeps `self`'s
    /// dtype (F16 stays F16, `value` rounded to it); the gradient of `self`
    /// is the output gradient with the filled elements zeroed, and `mask`
    /// gets none.
    ///
    /// # Panics
    /// When `self` is not F32 or F16 (PyTorch also fills integer tensors),
    /// the tensors are on different devices, or the shapes do not broadcast.
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Tensor {
        self.expect_float("masked_fill");
        self.expect_same_device("masked_fill", mask);
        let (shape, mask_shape) = (self.shape(), mask.shape());
        assert!(
            broadcast_shapes(&shape, &mask_shape).is_some(),
            "masked_fill: mask of shape {mask_shape:?} cannot be broadcast with shape {shape:?}"
        );
        let cond = if mask.dtype() == DType::U32 { mask.float() } else { mask.clone() };
        let fill = Tensor::full(&[], value, &self.device());
        self.keep_dtype(Tensor::where_cond(&cond, &fill, self))
    }

    /// The lower triangle of the last two dims, the rest zeroed
    /// (`torch.tril`): element (i, j) of each matrix is kept when
    /// `j - i <= diagonal`, so 0 keeps the main diagonal and below, a
    /// positive `diagonal` also that many diagonals above it, a negative one
    /// drops that many below it. Leading dims are a batch; matrices need not
    /// be square. The result keeps `self`'s dtype (F32 or F16); the gradient
    /// is the output gradient's lower triangle. Zeroed elements are 0 even
    /// where the input is NaN or infinite, as in PyTorch.
    ///
    /// # Panics
    /// When `self` has fewer than 2 dims or is not F32 or F16 (PyTorch also
    /// takes integer tensors).
    pub fn tril(&self, diagonal: isize) -> Tensor {
        self.triangle("tril", |j_minus_i| j_minus_i <= diagonal)
    }

    /// The upper triangle of the last two dims, the rest zeroed
    /// (`torch.triu`): element (i, j) is kept when `j - i >= diagonal`, so
    /// 0 keeps the main diagonal and above, a positive `diagonal` drops that
    /// many diagonals above it, a negative one also keeps that many below.
    /// Batched and non-square as [`tril`](Self::tril), with the same dtypes
    /// and gradient rule.
    ///
    /// # Panics
    /// When `self` has fewer than 2 dims or is not F32 or F16.
    pub fn triu(&self, diagonal: isize) -> Tensor {
        self.triangle("triu", |j_minus_i| j_minus_i >= diagonal)
    }

    /// `self` where `keep(j - i)` holds for element (i, j) of the last two
    /// dims, 0 elsewhere: a `where` with a host-made `[rows, cols]` mask
    /// (uploaded with the op, no launch), broadcast over the batch.
    fn triangle(&self, op: &str, keep: impl Fn(isize) -> bool) -> Tensor {
        let shape = self.shape();
        let rank = shape.len();
        assert!(rank >= 2, "{op}: expects at least a 2-D tensor, got shape {shape:?}");
        self.expect_float(op);
        let (rows, cols) = (shape[rank - 2], shape[rank - 1]);
        let mask: Vec<f32> =
            (0..rows * cols).map(|k| if keep((k % cols) as isize - (k / cols) as isize) { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(&mask, &[rows, cols], &self.device());
        let zero = Tensor::full(&[], 0.0, &self.device());
        self.keep_dtype(Tensor::where_cond(&mask, self, &zero))
    }

    /// Panics naming `op` unless `self` is F32 or F16.
    fn expect_float(&self, op: &str) {
        assert!(
            matches!(self.dtype(), DType::F32 | DType::F16),
            "{op}: expects F32 or F16 tensors, got {:?} of shape {:?} (use .to_dtype(DType::F32))",
            self.dtype(),
            self.shape()
        );
    }

    /// `y` (a `where` result, F32) in `self`'s dtype.
    fn keep_dtype(&self, y: Tensor) -> Tensor {
        if self.dtype() == DType::F16 {
            y.to_dtype(DType::F16)
        } else {
            y
        }
    }
}

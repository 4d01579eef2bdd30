//! Resizing `[N, C, H, W]` (or unbatched `[C, H, W]`) images, like
//! `torch.nn.functional.interpolate` in modes `nearest` and `bilinear`. The
//! backward is one gather kernel (deterministic).
//!
//! F16 input (autocast's convolutions return f16 activations) is resized in
//! f32 and rounded once: nearest copies values exactly, bilinear rounds its
//! f32 mix, as an f32 op and a cast would.

use wgrad_gpu_core::ops::interpolate::{self as kernel, Interpolation, Resize};
use wgrad_gpu_core::Layout;

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// Resizes the last two dims to `size` = (height, width)
    /// (`F.interpolate(x, size=size, mode=...)`).
    ///
    /// ```
    /// # use wgrad_autograd::{Device, Interpolation, Tensor};
    /// let x = Tensor::from_vec(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2], &Device::cpu());
    /// let y = x.interpolate((4, 4), Interpolation::Bilinear { align_corners: false });
    /// assert_eq!(y.to_vec()[..4], [1.0, 1.25, 1.75, 2.0]);
    /// ```
    ///
    /// # Panics
    /// For input that is not 3-D or 4-D F32 or F16, an empty image or size.
    pub fn interpolate(&self, size: (usize, usize), mode: Interpolation) -> Tensor {
        self.resize_by(Resize::to(size, mode))
    }

    /// Resizes the last two dims by `factor` = (height, width)
    /// (`F.interpolate(x, scale_factor=factor, mode=...)`, and
    /// `nn.Upsample(scale_factor=...)`): the output is `floor(h · factor)`
    /// by `floor(w · factor)`, and source positions step by `1 / factor`,
    /// as PyTorch's default `recompute_scale_factor=False` does (with
    /// `align_corners`, by the sizes' ratio instead).
    ///
    /// # Panics
    /// As [`interpolate`](Self::interpolate), and for a factor that is not
    /// positive and finite.
    pub fn interpolate_scale(&self, factor: (f64, f64), mode: Interpolation) -> Tensor {
        const OP: &str = "interpolate";
        let s = self.shape();
        let hw = if s.len() >= 2 { (s[s.len() - 2], s[s.len() - 1]) } else { (0, 0) };
        self.resize_by(expect(OP, Resize::by(hw, factor, mode)))
    }

    fn resize_by(&self, resize: Resize) -> Tensor {
        const OP: &str = "interpolate";
        let scope = crate::trace::scope();
        let (x4, unbatched) = match self.dims() {
            4 => (self.clone(), false),
            3 => (self.unsqueeze(0), true),
            _ => panic!("{OP}: expects an [N, C, H, W] or [C, H, W] tensor, got shape {:?}", self.shape()),
        };
        let dtype = x4.dtype();
        let wide = x4.widened(OP);
        let shape = wide.shape();
        let (out, out_shape) = expect(OP, kernel::interpolate2d(&wide.dense_buffer(), &shape, resize));
        let y = Tensor::from_op(OP, out, Layout::contiguous(&out_shape), &[&wide], move |g, inputs, _| {
            let shape = inputs[0].shape();
            let dx = expect(OP, kernel::interpolate2d_backward(&g.dense_buffer(), &shape, resize));
            vec![Some(Tensor::from_parts(dx, Layout::contiguous(&shape), DType::F32))]
        });
        let y = if dtype == DType::F16 { y.to_dtype(DType::F16) } else { y };
        let y = if unbatched { y.squeeze(0) } else { y };
        scope.output(|| TraceOp::Interpolate(resize), &[self], y)
    }
}

//! [`Upsample`]: resizing images inside a model.

use wgrad_autograd::{Interpolation, Tensor};

use crate::Module;

/// Resizes `[N, C, H, W]` (or `[C, H, W]`) images to a size or by a scale
/// factor (`nn.Upsample`), nearest or bilinear; no parameters.
///
/// ```
/// # use wgrad_nn::{Module, Upsample};
/// # use wgrad_autograd::{Device, Interpolation, Tensor};
/// // nn.Upsample(scale_factor=2, mode="nearest"), a U-Net decoder's step.
/// let up = Upsample::scale(2.0, Interpolation::Nearest);
/// let x = Tensor::zeros(&[1, 8, 5, 7], &Device::cpu());
/// assert_eq!(up.forward(&x).shape(), [1, 8, 10, 14]);
/// ```
#[derive(Clone, Copy, Debug, Module)]
pub struct Upsample {
    /// Output (height, width), or `None` to scale.
    pub size: Option<(usize, usize)>,
    /// Factors for (height, width) when `size` is `None`.
    pub scale_factor: (f64, f64),
    /// Nearest or bilinear (with `align_corners`).
    pub mode: Interpolation,
}

impl Upsample {
    /// To `size` = (height, width) (`nn.Upsample(size=...)`).
    pub fn to_size(size: (usize, usize), mode: Interpolation) -> Self {
        Upsample { size: Some(size), scale_factor: (1.0, 1.0), mode }
    }

    /// By `factor` along both axes (`nn.Upsample(scale_factor=...)`): the
    /// output is `floor(h · factor) × floor(w · factor)`, source positions
    /// step by `1 / factor` as in PyTorch.
    pub fn scale(factor: f64, mode: Interpolation) -> Self {
        Upsample { size: None, scale_factor: (factor, factor), mode }
    }
}

impl Module for Upsample {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self.size {
            Some(size) => x.interpolate(size, self.mode),
            None => x.interpolate_scale(self.scale_factor, self.mode),
        }
    }

    fn describe(&self) -> String {
        let (mode, align) = match self.mode {
            Interpolation::Nearest => ("nearest", String::new()),
            Interpolation::Bilinear { align_corners } => {
                ("bilinear", format!(", align_corners={}", if align_corners { "True" } else { "False" }))
            }
        };
        match self.size {
            Some(s) => format!("Upsample(size={s:?}, mode='{mode}'{align})"),
            None => format!("Upsample(scale_factor={:?}, mode='{mode}'{align})", self.scale_factor),
        }
    }
}

//! `F.normalize` and `F.cosine_similarity`, made of elementwise ops and a
//! sum (no kernels of their own: gradients and ONNX export come from the
//! parts).

use crate::Tensor;

impl Tensor {
    /// Each fiber along `dim` divided by its `p`-norm, or by `eps` when the
    /// norm is smaller (`F.normalize(x, p, dim, eps)`; PyTorch's defaults
    /// are p = 2, dim = 1, eps = 1e-12).
    ///
    /// The divisor is `max(Σ|x|^p, eps^p)^(1/p)`: `max(‖x‖_p, eps)`, with
    /// the clamp before the root, so a zero fiber's gradient is `1 / eps`,
    /// PyTorch's, where the root's derivative would divide by zero.
    ///
    /// # Panics
    /// When `p` is not positive or `eps` is negative, or `dim` is out of range.
    pub fn normalize(&self, p: f32, dim: isize, eps: f32) -> Tensor {
        assert!(p > 0.0 && eps >= 0.0, "normalize: p ({p}) must be positive and eps ({eps}) not negative");
        let powered = if p == 2.0 { self * self } else { self.abs().powf(p) };
        let norm = powered.sum(&[dim], true).clamp(eps.powf(p), f32::INFINITY).powf(1.0 / p);
        self / &norm
    }

    /// The cosine of the angle between `self` and `other` along `dim`
    /// (`F.cosine_similarity(x1, x2, dim, eps)`; PyTorch's defaults dim = 1,
    /// eps = 1e-8): each divided by its 2-norm, a norm below `eps` counting
    /// as `eps`, then their product summed over `dim`, which is dropped.
    /// The two broadcast.
    ///
    /// As in PyTorch, that clamp has no gradient of its own: below `eps`
    /// the gradient is the one of dividing by the norm itself (PyTorch
    /// clamps the norms in place under `no_grad`). `normalize`'s clamp has
    /// one.
    ///
    /// ```
    /// # use wgrad_autograd::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let a = Tensor::from_vec(&[1.0, 0.0, 1.0, 1.0], &[2, 2], &dev);
    /// let b = Tensor::from_vec(&[0.0, 2.0, 3.0, 3.0], &[2, 2], &dev);
    /// let c = a.cosine_similarity(&b, 1, 1e-8).to_vec();
    /// assert!(c[0].abs() < 1e-6 && (c[1] - 1.0).abs() < 1e-6);
    /// ```
    pub fn cosine_similarity(&self, other: &Tensor, dim: isize, eps: f32) -> Tensor {
        let unit = |x: &Tensor| {
            // The norm's own gradient stays finite for a zero fiber.
            let norm = (x * x).sum(&[dim], true).clamp(f32::MIN_POSITIVE, f32::INFINITY).sqrt();
            let clamped = &norm + &(&norm.clamp(eps, f32::INFINITY) - &norm).detach();
            x / &clamped
        };
        (&unit(self) * &unit(other)).sum(&[dim], false)
    }
}

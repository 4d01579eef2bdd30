//! Gradient clipping: `torch.nn.utils.clip_grad_norm_` and
//! `clip_grad_value_`, written with tensor ops so nothing is read back.

use wgrad_autograd::{no_grad, Device, Tensor};

/// Scales the gradients of `params` together so that their total L2 norm
/// is at most `max_norm`, and returns that norm (before clipping) as a 0-d
/// tensor on the parameters' device.
///
/// PyTorch's semantics: `coef = min(1, max_norm / (norm + 1e-6))` and every
/// gradient is multiplied by `coef` (also when it is 1, so the call costs
/// the same whatever the norm). Parameters without a gradient are skipped;
/// with none at all the norm is 0. The norm stays on the device: reading it
/// (`item()`) is the caller's choice, e.g. only when logging.
///
/// # Panics
/// When the gradients live on different devices.
pub fn clip_grad_norm_(params: &[Tensor], max_norm: f32) -> Tensor {
    let grads: Vec<Tensor> = params.iter().filter_map(|p| p.grad()).collect();
    let Some(first) = grads.first() else {
        let dev = params.first().map(|p| p.device()).unwrap_or_else(Device::cpu);
        return Tensor::scalar(0.0, &dev);
    };
    let dev = first.device();
    for g in &grads {
        assert!(
            g.device() == dev,
            "clip_grad_norm_: gradients on different devices ({} and {})",
            dev.name(),
            g.device().name()
        );
    }
    no_grad(|| {
        let squares = grads.iter().map(|g| g.square().sum_all());
        let total = squares.reduce(|a, b| &a + &b).expect("at least one gradient");
        let norm = total.sqrt();
        let coef = ((&norm + 1e-6).reciprocal() * max_norm).clamp(f32::NEG_INFINITY, 1.0);
        for g in &grads {
            g.assign(&(g * &coef));
        }
        norm
    })
}

/// Clamps every gradient of `params` elementwise to `[-clip, clip]`
/// (`torch.nn.utils.clip_grad_value_`); parameters without a gradient are
/// skipped.
///
/// # Panics
/// When `clip` is negative.
pub fn clip_grad_value_(params: &[Tensor], clip: f32) {
    assert!(clip >= 0.0, "clip_grad_value_: clip value {clip} is negative");
    no_grad(|| {
        for g in params.iter().filter_map(|p| p.grad()) {
            g.assign(&g.clamp(-clip, clip));
        }
    });
}

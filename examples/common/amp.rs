//! PyTorch's mixed-precision recipe as a hand-written step, the one the
//! examples' `--amp` runs through `Trainer::amp`. The forward pass runs
//! under autocast (f16 operands for matmul and convolution, f32 sums), and
//! a `GradScaler` scales the loss before backward, unscales the gradients
//! on the device, skips the step when they overflowed and adapts the scale.
//! Without `--amp` both are pass-throughs: the f32 step exactly. The soak
//! test and bench include it with `#[path]` for their hand-written loops.

use wgrad::nn::amp::{GradScaler, GradScalerOptions};
use wgrad::nn::optim::{clip_grad_norm_, Optimizer};
use wgrad::prelude::*;

/// Autocast and loss scaling, both on or both off.
pub struct Amp {
    enabled: bool,
    /// The loss scaler (its state belongs in checkpoints).
    pub scaler: GradScaler,
}

impl Amp {
    /// Mixed precision when `enabled`, plain f32 otherwise.
    pub fn new(enabled: bool) -> Self {
        Amp { enabled, scaler: GradScaler::with_options(GradScalerOptions::default().enabled(enabled)) }
    }

    /// Runs the forward pass `f` (model and loss), under autocast when enabled.
    pub fn forward<R>(&self, f: impl FnOnce() -> R) -> R {
        let _autocast = AutocastGuard::new(self.enabled);
        f()
    }

    /// Backward of the scaled loss, then (with `clip`) the global norm of the
    /// unscaled gradients clipped, the optimizer step (skipped when a
    /// gradient overflowed) and the scale update.
    pub fn backward_step(&mut self, loss: &Tensor, opt: &mut dyn Optimizer, clip: Option<(&[Tensor], f32)>) {
        self.scaler.scale(loss).backward();
        if let Some((params, max_norm)) = clip {
            self.scaler.unscale_(opt);
            clip_grad_norm_(params, max_norm);
        }
        // No readback: an overflow skips the update on the device.
        self.scaler.step_async(opt);
        self.scaler.update();
    }
}

//! Adam and AdamW: `torch.optim.Adam` / `torch.optim.AdamW`, with AMSGrad.

use wgrad_gpu_core::ops::optim::Rule;

use super::fused::{ensure, fused_optimizer, Algorithm, Field};

/// Hyper-parameters of [`Adam`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamOptions {
    /// Decay rates of the first and second moment averages. Default (0.9, 0.999).
    pub betas: (f32, f32),
    /// Added to the bias-corrected root of the second moment (outside it). Default 1e-8.
    pub eps: f32,
    /// L2 penalty added to the gradient (`g += wd·w`), used by the
    /// single-group constructors. Default 0.
    pub weight_decay: f32,
    /// Normalise by the running maximum of the second moment. Default false.
    pub amsgrad: bool,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0, amsgrad: false }
    }
}

/// Hyper-parameters of [`AdamW`], with PyTorch's defaults (those of Adam but
/// a weight decay of 0.01, applied decoupled from the gradient).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWOptions {
    /// Decay rates of the first and second moment averages. Default (0.9, 0.999).
    pub betas: (f32, f32),
    /// Added to the bias-corrected root of the second moment (outside it). Default 1e-8.
    pub eps: f32,
    /// Decoupled decay (`w ·= 1 − lr·wd` before the Adam update), used by the
    /// single-group constructors. Default 0.01.
    pub weight_decay: f32,
    /// Normalise by the running maximum of the second moment. Default false.
    pub amsgrad: bool,
}

impl Default for AdamWOptions {
    fn default() -> Self {
        AdamWOptions { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.01, amsgrad: false }
    }
}

fn validate(betas: (f32, f32), eps: f32, weight_decay: f32) -> Result<(), String> {
    ensure!(eps >= 0.0, "invalid eps {eps}");
    ensure!((0.0..1.0).contains(&betas.0), "invalid beta1 {}", betas.0);
    ensure!((0.0..1.0).contains(&betas.1), "invalid beta2 {}", betas.1);
    ensure!(weight_decay >= 0.0, "invalid weight_decay {weight_decay}");
    Ok(())
}

/// Implements [`Algorithm`] for an Adam-family options struct.
macro_rules! adam_algorithm {
    ($opts:ident, $name:literal, $decoupled:literal) => {
        impl Algorithm for $opts {
            const NAME: &'static str = $name;

            fn rule(&self) -> Rule {
                Rule::Adam {
                    beta1: self.betas.0,
                    beta2: self.betas.1,
                    eps: self.eps,
                    amsgrad: self.amsgrad,
                    decoupled: $decoupled,
                }
            }

            fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
                vec![
                    ("beta1", Field::F32(&mut self.betas.0)),
                    ("beta2", Field::F32(&mut self.betas.1)),
                    ("eps", Field::F32(&mut self.eps)),
                    ("amsgrad", Field::Bool(&mut self.amsgrad)),
                ]
            }

            fn validate(&self) -> Result<(), String> {
                validate(self.betas, self.eps, self.weight_decay)
            }
        }
    };
}

adam_algorithm!(AdamOptions, "Adam", false);
adam_algorithm!(AdamWOptions, "AdamW", true);

fused_optimizer!(
    /// `torch.optim.Adam`: `g += wd·w`; `m = lerp(m, g, 1−β1)`;
    /// `v = β2·v + (1−β2)·g²`; AMSGrad `v̂ = max(v̂, v)` (else `v̂ = v`);
    /// `w −= lr/(1−β1ᵗ) · m / (√v̂ / √(1−β2ᵗ) + eps)`. The whole update is one
    /// fused kernel per parameter tensor; the bias corrections are computed on
    /// the host in f64 from the step count. State `exp_avg`, `exp_avg_sq`,
    /// `max_exp_avg_sq` (AMSGrad).
    Adam,
    AdamOptions
);

fused_optimizer!(
    /// `torch.optim.AdamW`: Adam with decoupled weight decay: `w ·= 1 − lr·wd`,
    /// then the Adam update of the undecayed gradient, in the same fused
    /// kernel. State as [`Adam`]'s.
    AdamW,
    AdamWOptions
);

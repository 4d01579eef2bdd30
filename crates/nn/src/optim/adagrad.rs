//! AdaGrad: `torch.optim.Adagrad`, plus the textbook placement of eps.

use wgrad_gpu_core::ops::optim::Rule;

use super::fused::{ensure, fused_optimizer, Algorithm, Field};

/// Hyper-parameters of [`AdaGrad`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaGradOptions {
    /// Step t uses `lr / (1 + (t − 1)·lr_decay)`. Default 0.
    pub lr_decay: f32,
    /// L2 penalty added to the gradient, used by the single-group
    /// constructors. Default 0.
    pub weight_decay: f32,
    /// Starting value of the squared-gradient sum. Default 0.
    pub initial_accumulator_value: f32,
    /// Added to the denominator. Default 1e-10.
    pub eps: f32,
    /// `false` (PyTorch): `w −= lr·g / (√sum + eps)`. `true` (the textbook
    /// form, e.g. *Dive into Deep Learning* §12.7): `w −= lr·g / √(sum + eps)`.
    /// The two differ only while the sum is tiny, i.e. on the first steps of
    /// parameters with near-zero gradients. Default false.
    pub eps_inside_sqrt: bool,
}

impl Default for AdaGradOptions {
    fn default() -> Self {
        AdaGradOptions {
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            eps_inside_sqrt: false,
        }
    }
}

impl Algorithm for AdaGradOptions {
    const NAME: &'static str = "AdaGrad";

    fn rule(&self) -> Rule {
        Rule::AdaGrad { lr_decay: self.lr_decay, eps: self.eps, eps_inside_sqrt: self.eps_inside_sqrt }
    }

    fn initial_value(&self, _state: &str) -> f32 {
        self.initial_accumulator_value
    }

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr_decay", Field::F32(&mut self.lr_decay)),
            ("initial_accumulator_value", Field::F32(&mut self.initial_accumulator_value)),
            ("eps", Field::F32(&mut self.eps)),
            ("eps_inside_sqrt", Field::Bool(&mut self.eps_inside_sqrt)),
        ]
    }

    fn validate(&self) -> Result<(), String> {
        ensure!(self.lr_decay >= 0.0, "invalid lr_decay {}", self.lr_decay);
        ensure!(self.weight_decay >= 0.0, "invalid weight_decay {}", self.weight_decay);
        ensure!(
            self.initial_accumulator_value >= 0.0,
            "invalid initial_accumulator_value {}",
            self.initial_accumulator_value
        );
        ensure!(self.eps >= 0.0, "invalid eps {}", self.eps);
        Ok(())
    }
}

fused_optimizer!(
    /// `torch.optim.Adagrad`: `g += wd·w`; `sum += g²`;
    /// `w −= lr/(1 + (t−1)·lr_decay) · g / (√sum + eps)`. State `sum` (starting at
    /// `initial_accumulator_value`). See [`AdaGradOptions::eps_inside_sqrt`]
    /// for the textbook variant.
    AdaGrad,
    AdaGradOptions
);

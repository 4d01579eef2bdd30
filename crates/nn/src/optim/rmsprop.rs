//! RMSProp: `torch.optim.RMSprop`.

use wgrad_gpu_core::ops::optim::Rule;

use super::fused::{ensure, fused_optimizer, Algorithm, Field};

/// Hyper-parameters of [`RmsProp`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropOptions {
    /// Smoothing constant of the squared-gradient average. Default 0.99.
    pub alpha: f32,
    /// Added to the root of the average (outside it). Default 1e-8.
    pub eps: f32,
    /// L2 penalty added to the gradient, used by the single-group
    /// constructors. Default 0.
    pub weight_decay: f32,
    /// Momentum factor; 0 keeps no momentum buffer. Default 0.
    pub momentum: f32,
    /// Divide by an estimate of the gradient's variance (`E[g²] − E[g]²`)
    /// instead of its second moment. Default false.
    pub centered: bool,
}

impl Default for RmsPropOptions {
    fn default() -> Self {
        RmsPropOptions { alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false }
    }
}

impl Algorithm for RmsPropOptions {
    const NAME: &'static str = "RMSProp";

    fn rule(&self) -> Rule {
        Rule::RmsProp { alpha: self.alpha, eps: self.eps, momentum: self.momentum, centered: self.centered }
    }

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("alpha", Field::F32(&mut self.alpha)),
            ("eps", Field::F32(&mut self.eps)),
            ("momentum", Field::F32(&mut self.momentum)),
            ("centered", Field::Bool(&mut self.centered)),
        ]
    }

    fn validate(&self) -> Result<(), String> {
        ensure!(self.alpha >= 0.0, "invalid alpha {}", self.alpha);
        ensure!(self.eps >= 0.0, "invalid eps {}", self.eps);
        ensure!(self.momentum >= 0.0, "invalid momentum {}", self.momentum);
        ensure!(self.weight_decay >= 0.0, "invalid weight_decay {}", self.weight_decay);
        Ok(())
    }
}

fused_optimizer!(
    /// `torch.optim.RMSprop`: `g += wd·w`; `a = α·a + (1−α)·g²`; centered:
    /// `ḡ = lerp(ḡ, g, 1−α)`, `d = √(a − ḡ²) + eps`, else `d = √a + eps`; with
    /// momentum `b = μ·b + g/d`, `w −= lr·b`, else `w −= lr·g/d`. State
    /// `square_avg`, `momentum_buffer` (momentum > 0), `grad_avg` (centered).
    RmsProp,
    RmsPropOptions
);

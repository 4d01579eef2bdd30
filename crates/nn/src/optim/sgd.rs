//! Stochastic gradient descent with momentum, Nesterov momentum and L2
//! weight decay: `torch.optim.SGD`.

use wgrad_gpu_core::ops::optim::Rule;

use super::fused::{ensure, fused_optimizer, Algorithm, Field};

/// Hyper-parameters of [`Sgd`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdOptions {
    /// Momentum factor μ; 0 keeps no momentum buffer. Default 0.
    pub momentum: f32,
    /// Dampening of the gradient entering the momentum buffer. Default 0.
    pub dampening: f32,
    /// L2 penalty added to the gradient (`g += wd·w`), used by the
    /// single-group constructors. Default 0.
    pub weight_decay: f32,
    /// Nesterov momentum (needs momentum > 0 and dampening 0). Default false.
    pub nesterov: bool,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions { momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

impl Algorithm for SgdOptions {
    const NAME: &'static str = "SGD";

    fn rule(&self) -> Rule {
        Rule::Sgd { momentum: self.momentum, dampening: self.dampening, nesterov: self.nesterov }
    }

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("momentum", Field::F32(&mut self.momentum)),
            ("dampening", Field::F32(&mut self.dampening)),
            ("nesterov", Field::Bool(&mut self.nesterov)),
        ]
    }

    fn validate(&self) -> Result<(), String> {
        ensure!(self.momentum >= 0.0, "invalid momentum {}", self.momentum);
        ensure!(self.weight_decay >= 0.0, "invalid weight_decay {}", self.weight_decay);
        ensure!(
            !self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0),
            "Nesterov momentum requires a momentum and zero dampening"
        );
        Ok(())
    }
}

fused_optimizer!(
    /// `torch.optim.SGD`: `g += wd·w`; with momentum `v = μ·v + (1 − dampening)·g`
    /// (`v = g` on a parameter's first step), then `g = g + μ·v` (Nesterov) or
    /// `g = v`; `w −= lr·g`. One fused kernel per parameter and step; state
    /// `momentum_buffer` when momentum > 0.
    ///
    /// ```
    /// use wgrad_autograd::{Device, Tensor};
    /// use wgrad_nn::optim::{Optimizer, Sgd};
    /// let dev = Device::cpu();
    /// let x = Tensor::from_vec(&[3.0, 3.0], &[2], &dev).requires_grad_();
    /// let mut opt = Sgd::new(vec![x.clone()], 0.1);
    /// // f = x² + 2y²
    /// (&x.square() * &Tensor::from_vec(&[1.0, 2.0], &[2], &dev)).sum_all().backward();
    /// opt.step();
    /// let v = x.to_vec();
    /// assert!((v[0] - 2.4).abs() < 1e-6 && (v[1] - 1.8).abs() < 1e-6);
    /// ```
    Sgd,
    SgdOptions
);

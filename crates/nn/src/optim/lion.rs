//! Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms",
//! Algorithm 2). PyTorch has no Lion; this follows the paper and the
//! authors' reference implementation (the same as the `lion-pytorch` package).

use wgrad_gpu_core::ops::optim::Rule;

use super::fused::{ensure, fused_optimizer, Algorithm, Field};

/// Hyper-parameters of [`Lion`], with the paper's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LionOptions {
    /// β1 interpolates momentum and gradient for the update's sign, β2
    /// decays the momentum. Default (0.9, 0.99).
    pub betas: (f32, f32),
    /// Decoupled decay (`w ·= 1 − lr·wd`), used by the single-group
    /// constructors. Default 0.
    pub weight_decay: f32,
}

impl Default for LionOptions {
    fn default() -> Self {
        LionOptions { betas: (0.9, 0.99), weight_decay: 0.0 }
    }
}

impl Algorithm for LionOptions {
    const NAME: &'static str = "Lion";

    fn rule(&self) -> Rule {
        Rule::Lion { beta1: self.betas.0, beta2: self.betas.1 }
    }

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![("beta1", Field::F32(&mut self.betas.0)), ("beta2", Field::F32(&mut self.betas.1))]
    }

    fn validate(&self) -> Result<(), String> {
        ensure!((0.0..=1.0).contains(&self.betas.0), "invalid beta1 {}", self.betas.0);
        ensure!((0.0..=1.0).contains(&self.betas.1), "invalid beta2 {}", self.betas.1);
        ensure!(self.weight_decay >= 0.0, "invalid weight_decay {}", self.weight_decay);
        Ok(())
    }
}

fused_optimizer!(
    /// Lion: `w ·= 1 − lr·wd`; `w −= lr·sign(β1·m + (1−β1)·g)`;
    /// `m = β2·m + (1−β2)·g`. Every coordinate moves by exactly ±lr (or 0),
    /// so Lion wants a learning rate 3–10x smaller than AdamW's and a
    /// correspondingly larger weight decay. State `exp_avg`.
    Lion,
    LionOptions
);

//! Fully connected layer.

use wgrad_autograd::{Device, Generator, Tensor};

use crate::init;
use crate::Module;

/// `y = x Wᵀ + b` with `weight [out, in]` and `bias [out]`, like `nn.Linear`.
#[derive(Module)]
pub struct Linear {
    /// `[out_features, in_features]`.
    #[param]
    pub weight: Tensor,
    /// `[out_features]`, if the layer has a bias.
    #[param]
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with PyTorch's default initialisation (kaiming_uniform a=√5; bias ±1/√in).
    pub fn new(in_features: usize, out_features: usize, bias: bool, gen: &mut Generator, device: &Device) -> Self {
        let weight = Tensor::zeros(&[out_features, in_features], device).requires_grad_();
        init::default_weight_(&weight, gen);
        let bias = bias.then(|| {
            let b = Tensor::zeros(&[out_features], device).requires_grad_();
            init::default_bias_(&b, in_features, gen);
            b
        });
        Linear { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        // One launch: the bias is added in the product's store (and under
        // autocast the result is f16, rounded once).
        x.linear(&self.weight, self.bias.as_ref())
    }

    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!("Linear(in_features={}, out_features={}, bias={})", s[1], s[0], self.bias.is_some())
    }
}

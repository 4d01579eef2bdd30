//! Fully connected layer.

use wgrad_autograd::Tensor;

use crate::construction::{setters, Init};
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

/// Options of a [`Linear`] layer; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearBuilder {
    in_features: usize,
    out_features: usize,
    bias: bool,
}

impl Linear {
    /// `nn.Linear(in_features, out_features)`: with a bias unless
    /// [`bias(false)`](LinearBuilder::bias).
    pub fn builder(in_features: usize, out_features: usize) -> LinearBuilder {
        LinearBuilder { in_features, out_features, bias: true }
    }
}

impl LinearBuilder {
    setters! {
        /// Whether the layer adds a learned bias (default true).
        bias: bool,
    }

    /// The layer with PyTorch's default initialisation (kaiming_uniform
    /// a=√5; bias ±1/√in), drawn weight first.
    pub fn build(self, init: &mut Init) -> Linear {
        let (i, o) = (self.in_features, self.out_features);
        let weight = Tensor::zeros(&[o, i], init.device()).requires_grad_();
        init::default_weight_(&weight, init.generator());
        let bias = self.bias.then(|| {
            let b = Tensor::zeros(&[o], init.device()).requires_grad_();
            init::default_bias_(&b, i, init.generator());
            b
        });
        Linear { weight, bias }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        // One launch: the bias is added in the product's store (and under
        // autocast the result is f16, rounded once); an activation or a
        // residual add after it joins that store on a GPU (the fuser).
        x.linear(&self.weight, self.bias.as_ref())
    }

    fn describe(&self) -> String {
        let s = self.weight.shape();
        format!("Linear(in_features={}, out_features={}, bias={})", s[1], s[0], self.bias.is_some())
    }
}

//! A chain of modules.

use wgrad_autograd::{Tensor, UnaryOp};

use crate::Module;

/// Applies its modules in order; children are named `0`, `1`, ... as in PyTorch.
#[derive(Default, Module)]
pub struct Sequential {
    #[module(flatten)]
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a module (builder style).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, m: impl Module + 'static) -> Self {
        self.layers.push(Box::new(m));
        self
    }

    /// Appends a boxed module.
    pub fn push(&mut self, m: Box<dyn Module>) {
        self.layers.push(m);
    }

    /// The i-th module.
    pub fn get(&self, i: usize) -> &dyn Module {
        self.layers[i].as_ref()
    }

    /// Number of modules.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True when the chain is empty.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    /// Each layer in turn, with a [`ReLU`](crate::ReLU) fused into a
    /// neighbour (same values): into the layer after it when that layer
    /// takes it ([`Module::fuses_relu_before`]: MaxPool2d, whose backward
    /// then applies ReLU's derivative for free), else into the layer before
    /// when that one can; so does any other activation layer
    /// ([`Module::unary_op`]: GELU, Tanh, ...;
    /// [`Module::forward_activation_fused`]: Linear takes any op, Conv2d
    /// ReLU, in the product's store).
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.clone();
        let mut i = 0;
        let layer = |i: usize| self.layers.get(i).map(|m| m.as_ref());
        let relu_goes_on = |i: usize| layer(i).is_some_and(|m| m.fuses_relu_before());
        while let Some(m) = layer(i) {
            if m.unary_op() == Some(UnaryOp::Relu) && relu_goes_on(i + 1) {
                h = self.layers[i + 1].forward_after_relu(&h);
                i += 2;
                continue;
            }
            let fused = match layer(i + 1).and_then(|next| next.unary_op()) {
                // That ReLU goes to the layer after it instead.
                Some(UnaryOp::Relu) if relu_goes_on(i + 2) => None,
                Some(op) => m.forward_activation_fused(&h, op),
                None => None,
            };
            match fused {
                Some(y) => {
                    h = y;
                    i += 2;
                }
                None => {
                    h = m.forward(&h);
                    i += 1;
                }
            }
        }
        h
    }

    fn describe(&self) -> String {
        format!("Sequential({} layers)", self.layers.len())
    }
}

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
    /// Each layer in turn, with a [`ReLU`](crate::ReLU) given to the layer
    /// after it when that layer takes it ([`Module::fuses_relu_before`]:
    /// MaxPool2d, whose backward then applies ReLU's derivative for free;
    /// same values). Activations after a Linear or a Conv2d need nothing
    /// here: the fuser merges them into the product's store.
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.clone();
        let mut i = 0;
        while let Some(m) = self.layers.get(i) {
            let next = self.layers.get(i + 1).filter(|n| n.fuses_relu_before());
            match next {
                Some(next) if m.unary_op() == Some(UnaryOp::Relu) => {
                    h = next.forward_after_relu(&h);
                    i += 2;
                }
                _ => {
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

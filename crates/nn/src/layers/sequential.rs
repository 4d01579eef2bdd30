//! A chain of modules.

use wgrad_autograd::Tensor;

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
    /// Each layer in turn; a layer followed by [`ReLU`](crate::ReLU) that can
    /// fuse it ([`Module::forward_relu_fused`]: Linear, Conv2d) runs both
    /// as one op, the ReLU applied in its kernel's store (same values).
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.clone();
        let mut i = 0;
        while i < self.layers.len() {
            let m = &self.layers[i];
            let fused = match self.layers.get(i + 1) {
                Some(next) if next.is_relu() => m.forward_relu_fused(&h),
                _ => None,
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

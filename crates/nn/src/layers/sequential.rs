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
    /// Each layer in turn. The fusions a chain of layers offers (an
    /// activation after a Linear or a Conv2d, a ReLU's gradient in a max
    /// pooling's backward) are the fuser's to find, not the layers'.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.layers.iter().fold(x.clone(), |h, m| m.forward(&h))
    }

    fn describe(&self) -> String {
        format!("Sequential({} layers)", self.layers.len())
    }
}

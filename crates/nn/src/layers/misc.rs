//! Shape-only modules.

use wgrad_autograd::Tensor;

use crate::Module;

/// Flattens dims `start..=end` (PyTorch defaults 1 and -1).
#[derive(Clone, Copy, Debug, Module)]
pub struct Flatten {
    /// First dim to flatten.
    pub start: isize,
    /// Last dim to flatten.
    pub end: isize,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten { start: 1, end: -1 }
    }
}

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.flatten(self.start, self.end)
    }
    fn describe(&self) -> String {
        format!("Flatten(start_dim={}, end_dim={})", self.start, self.end)
    }
}

/// Returns its input.
#[derive(Clone, Copy, Debug, Default, Module)]
pub struct Identity;

impl Module for Identity {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.clone()
    }
    fn describe(&self) -> String {
        "Identity()".into()
    }
}

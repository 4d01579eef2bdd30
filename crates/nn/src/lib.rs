//! # wgrad-nn
//!
//! What models are built from: the [`Module`] trait, layers, activations,
//! losses and initialisation, with PyTorch's semantics and parameter names.
//!
//! Everything here is written with `wgrad-autograd` tensor ops; this crate
//! launches no kernels of its own and knows nothing of datasets or models.

pub mod init;
pub mod layers;
pub mod module;

pub use layers::activation::{LeakyReLU, Mish, PReLU, SiLU, Sigmoid, Softplus, Swish, Tanh, ELU, GELU, ReLU, SELU};
pub use layers::linear::Linear;
pub use layers::misc::{Flatten, Identity};
pub use layers::sequential::Sequential;
pub use module::{Module, ModuleExt};

//! # wgrad-models
//!
//! Ready-made models with PyTorch's parameter names, so PyTorch checkpoints
//! load. Each is built from `wgrad-nn` layers; this crate adds no ops.

mod autoencoder;
mod lenet;
mod mlp;
mod mnist_cnn;
mod resnet;

pub use autoencoder::{kl_divergence, reconstruction_loss, Autoencoder, Vae};
pub use lenet::lenet5;
pub use mlp::mlp;
pub use mnist_cnn::mnist_cnn;
pub use resnet::{BasicBlock, Bottleneck, ResNet, Shortcut};

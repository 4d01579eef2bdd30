//! # wgrad-models
//!
//! Ready-made models with PyTorch's parameter names, so PyTorch checkpoints
//! load. Each is built from `wgrad-nn` layers; this crate adds no ops.

mod autoencoder;
pub mod decoding;
mod gpt;
mod lenet;
mod mlp;
mod mnist_cnn;
mod resnet;
mod rnn_lm;
pub mod sampling;
mod seq2seq;

pub use autoencoder::{kl_divergence, reconstruction_loss, Autoencoder, Vae};
pub use decoding::{beam_search, greedy_search, Hypothesis, StepDecoder};
pub use gpt::{Gpt, GptConfig};
pub use lenet::lenet5;
pub use mlp::mlp;
pub use mnist_cnn::mnist_cnn;
pub use resnet::{BasicBlock, Bottleneck, ResNet, Shortcut};
pub use rnn_lm::{RnnLm, RnnLmConfig};
pub use sampling::{Sampler, Sampling};
pub use seq2seq::{AttentionScore, Encoded, Seq2Seq, Seq2SeqConfig, Seq2SeqDecoder};
/// The construction context every model constructor takes (re-exported from `wgrad-nn`).
pub use wgrad_nn::Init;

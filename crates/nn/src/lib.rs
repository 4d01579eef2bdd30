//! # wgrad-nn
//!
//! What models are built from: the [`Module`] trait, layers, activations,
//! losses and initialisation, with PyTorch's semantics and parameter names.
//!
//! Everything here is written with `wgrad-autograd` tensor ops; this crate
//! launches no kernels of its own and knows nothing of datasets or models.

pub mod amp;
pub mod checkpoint;
pub mod init;
pub mod layers;
pub mod loss;
pub mod module;
pub mod optim;
pub mod schedule;
pub mod state;
pub mod train;

pub use layers::activation::{
    LeakyReLU, LogSoftmax, Mish, PReLU, ReLU, SiLU, Sigmoid, Softmax, Softplus, Swish, Tanh, ELU, GELU, SELU,
};
pub use layers::conv::{Conv1d, Conv2d, ConvTranspose2d};
pub use layers::dropout::Dropout;
pub use layers::embedding::Embedding;
pub use layers::linear::Linear;
pub use wgrad_autograd::{Conv2dOptions, ConvTranspose2dOptions};

pub use layers::misc::{Flatten, Identity};
pub use layers::norm::{BatchNorm, BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, RMSNorm};
pub use layers::pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};

pub use layers::attention::{causal_mask, padding_mask, AttentionMask, KvCache, MultiheadAttention};
pub use layers::cell::{GRUCell, LSTMCell, RNNCell, RecurrentCell};
pub use layers::positional::{LearnedPositionalEmbedding, RotaryEmbedding, SinusoidalPositionalEncoding};
pub use layers::recurrent::{Recurrent, RecurrentConfig, RecurrentState, GRU, LSTM, RNN};
pub use layers::seq2seq_attention::{AdditiveAttention, DotProductAttention};
pub use layers::sequential::Sequential;
pub use layers::transformer::{
    FeedForwardActivation, TransformerConfig, TransformerDecoderLayer, TransformerEncoderLayer,
};
pub use module::{Module, ModuleExt};
pub use wgrad_autograd::RecurrentKind;
pub use wgrad_autograd::{CrossEntropyOptions, Reduction};

//! # wgrad-nn
//!
//! What models are built from: the [`Module`] trait, layers, activations,
//! losses and initialisation, with PyTorch's semantics and parameter names.
//!
//! Everything here is written with `wgrad-autograd` tensor ops; this crate
//! launches no kernels of its own and knows nothing of datasets or models.
//!
//! # Building layers
//!
//! Every layer is built one way: `X::builder(required sizes)`, named options
//! with PyTorch's defaults, `.build(&mut init)`, where [`Init`] carries the
//! device and the seeded generator (see [`construction`]):
//! `Conv2d::builder(3, 16, 3).stride(2).padding(1).bias(false).build(&mut init)`.
//!
//! # Writing a module
//!
//! Put `#[derive(Module)]` on the struct and mark its fields (`#[module]`
//! children, `#[param]`, `#[buffer]`, `#[training]`, `#[skip]`); the derive
//! writes [`ModuleFields`] (PyTorch's names and order, the state dict,
//! `train()`/`eval()` for every child) and you write `forward` and
//! `describe` in `impl Module`. See [`derive@Module`] for the attributes and
//! an example with `Vec` and `Option` children.

// The derive's expansion names `::wgrad_nn`, also inside this crate.
extern crate self as wgrad_nn;

pub mod amp;
pub mod checkpoint;
pub mod construction;
pub mod init;
pub mod layers;
pub mod loss;
pub mod module;
pub mod optim;
pub mod schedule;
pub mod state;
pub mod train;

pub use construction::{Built, Init};
pub use layers::activation::{
    LeakyReLU, LogSoftmax, Mish, PReLU, PReLUBuilder, ReLU, SiLU, Sigmoid, Softmax, Softplus, Swish, Tanh, ELU, GELU,
    SELU,
};
pub use layers::conv::{Conv1d, Conv1dBuilder, Conv2d, Conv2dBuilder, ConvTranspose2d, ConvTranspose2dBuilder};
pub use layers::dropout::{Dropout, DropoutBuilder};
pub use layers::embedding::{Embedding, EmbeddingBuilder};
pub use layers::linear::{Linear, LinearBuilder};
pub use wgrad_autograd::{Conv2dOptions, ConvTranspose2dOptions, Interpolation, PadMode, PoolWindow};

pub use layers::classes::{BatchNorm1d, BatchNorm2d, GRUCell, LSTMCell, RNNCell, GRU, LSTM, RNN};
pub use layers::misc::{Flatten, Identity};
pub use layers::norm::{
    BatchNorm, BatchNormBuilder, BatchNormOptions, GroupNorm, GroupNormBuilder, LayerNorm, LayerNormBuilder, RMSNorm,
    RMSNormBuilder,
};
pub use layers::padding::{
    ConstantPad2d, Padding2d, PixelShuffle, PixelUnshuffle, ReflectionPad2d, ReplicationPad2d, ZeroPad2d,
};
pub use layers::pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
pub use layers::upsample::Upsample;

pub use layers::attention::{
    causal_mask, padding_mask, AttentionMask, KvCache, MultiheadAttention, MultiheadAttentionBuilder,
};
pub use layers::cell::{CellBuilder, CellOptions, RecurrentCell};
pub use layers::positional::{
    LearnedPositionalBuilder, LearnedPositionalEmbedding, RotaryBuilder, RotaryEmbedding, SinusoidalBuilder,
    SinusoidalPositionalEncoding,
};
pub use layers::recurrent::{Recurrent, RecurrentBuilder, RecurrentConfig, RecurrentOptions, RecurrentState};
pub use layers::seq2seq_attention::{AdditiveAttention, AdditiveAttentionBuilder, DotProductAttention};
pub use layers::sequential::Sequential;
pub use layers::sync_batch_norm::{BatchStatsSync, SyncBatchNorm};
pub use layers::transformer::{
    FeedForwardActivation, TransformerBuilder, TransformerConfig, TransformerDecoderLayer, TransformerEncoderLayer,
};
pub use module::{module_generators, random_streams, set_module_generators, Module, ModuleExt, ModuleFields};
pub use wgrad_autograd::RecurrentKind;
pub use wgrad_autograd::{CrossEntropyOptions, Reduction};
/// `#[derive(Module)]`: writes [`ModuleFields`] (parameters, buffers,
/// training mode, children) from a struct's fields; `forward` and `describe`
/// stay in a hand-written `impl Module`.
///
/// Field attributes (every field is plain data unless marked):
///
/// | attribute | field type | contributes |
/// |---|---|---|
/// | `#[param]` | `Tensor`, `Option<Tensor>`, `Vec<Tensor>` | parameters named after the field (`None` skipped, elements `.0`, `.1`, ...) |
/// | `#[buffer]` | the same | buffers (running statistics) |
/// | `#[module]` | a `Module`, `Box<dyn Module>`, `Option<_>` or `Vec<_>` of them | a child: its parameters and buffers under `field.`, `set_training` reaches it, listed by `children()`; `Vec` elements are `field.0`, `field.1`, ... like `nn.ModuleList` |
/// | `#[training]` | `bool` | set by `set_training` |
/// | `#[skip]` | anything | nothing (a constant tensor that is not state) |
///
/// Options: `#[param(rename = "in_proj_weight")]`, `#[buffer(rename = "...")]`
/// and `#[module(rename = "0")]` use PyTorch's name instead of the field's;
/// `#[module(flatten)]` drops the field's name, so a `Vec` of layers is named
/// `0.weight`, ... (`nn.Sequential`) and a helper struct's children join its
/// parent's; `#[buffer(via = method)]` reads the tensor from `self.method()`
/// (state that is folded in lazily).
///
/// Order follows PyTorch's: a module's own parameters (buffers) in field
/// declaration order, then its children's in declaration order, so declare
/// children in the order PyTorch's `__init__` registers them. A flattened
/// child counts as a child at its position.
///
/// An unmarked field whose type mentions `Tensor` or `Module`, or one named
/// `training`, is a compile error: it is almost always a forgotten parameter,
/// child or mode flag. A child of a type that mentions neither (`Linear`)
/// cannot be detected, so mark every child with `#[module]`.
///
/// The expansion names `::wgrad_nn`, so the crate must depend on `wgrad-nn`
/// under that name, or say where it is on the struct:
/// `#[module(crate = "wgrad::nn")]` for a crate that depends on the `wgrad`
/// facade only. Calling `visit_parameters`, `set_training` or `children` on
/// a concrete type needs [`ModuleFields`] in scope (it is in `wgrad_nn::*`
/// and `wgrad::prelude`); `ModuleExt`'s `named_parameters`, `train`/`eval`
/// need only `ModuleExt`.
///
/// ```
/// use wgrad_nn::{BatchNorm1d, Dropout, Init, Linear, Module, ModuleExt};
/// use wgrad_autograd::{Device, Tensor};
///
/// #[derive(Module)]
/// struct Block {
///     #[module]
///     fc: Linear,
///     #[module]
///     norm: Option<BatchNorm1d>,
///     #[module]
///     drop: Dropout,
/// }
///
/// impl Module for Block {
///     fn forward(&self, x: &Tensor) -> Tensor {
///         let h = self.fc.forward(x);
///         let h = match &self.norm { Some(n) => n.forward(&h), None => h };
///         self.drop.forward(&h.relu())
///     }
///     fn describe(&self) -> String {
///         "Block".into()
///     }
/// }
///
/// #[derive(Module)]
/// struct Net {
///     #[module]
///     blocks: Vec<Block>,
///     #[param]
///     scale: Tensor,
/// }
///
/// impl Module for Net {
///     fn forward(&self, x: &Tensor) -> Tensor {
///         self.blocks.iter().fold(x.clone(), |h, b| b.forward(&h)) * &self.scale
///     }
///     fn describe(&self) -> String {
///         "Net".into()
///     }
/// }
///
/// let dev = Device::cpu();
/// let mut init = Init::new(&dev, 0);
/// let block = |init: &mut Init, norm: bool| Block {
///     fc: Linear::builder(4, 4).build(init),
///     norm: norm.then(|| BatchNorm1d::builder(4).build(init)),
///     drop: Dropout::builder(0.1).build(init),
/// };
/// let mut net = Net { blocks: vec![block(&mut init, true), block(&mut init, false)], scale: Tensor::ones(&[4], &dev) };
/// let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
/// // As in PyTorch, a module's own parameters come before its children's.
/// assert_eq!(
///     names,
///     ["scale", "blocks.0.fc.weight", "blocks.0.fc.bias", "blocks.0.norm.weight", "blocks.0.norm.bias",
///      "blocks.1.fc.weight", "blocks.1.fc.bias"]
/// );
/// net.eval(); // reaches both Dropouts and the BatchNorm
/// ```
pub use wgrad_nn_derive::Module;

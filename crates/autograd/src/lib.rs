//! # wgrad-autograd
//!
//! The [`Tensor`] users program with. Every op runs on gpu-core's kernels
//! (GPU, or the CPU twin) and, when an input requires a gradient, records a
//! node of the graph that [`Tensor::backward`] walks in reverse.
//!
//! On a GPU nothing is submitted per op: forward, backward and the optimizer
//! update of a training step are recorded into one command batch, submitted
//! when a value leaves the device (`to_vec`, `item`) or on `Device::flush`.
//!
//! This crate must not use wgpu directly (that is gpu-core's job) and knows
//! nothing of layers, losses or optimizers (that is `nn`).

pub mod anomaly;
pub mod autocast;
mod compiled;
mod compiled_random;
mod custom;
mod dtype;
mod grad_hook;
pub mod gradcheck;
mod graph;
mod ops;
mod pending;
mod random;
mod recover;
mod tensor;
pub mod trace;

pub use anomaly::{detect_anomaly, is_anomaly_enabled, AnomalyGuard};
pub use autocast::{autocast, is_autocast_enabled, AutocastGuard};
pub use compiled::CompiledStep;
pub use dtype::DType;
pub use grad_hook::{GradientHook, LeafHook};
pub use graph::{is_grad_enabled, no_grad, NoGradGuard};
pub use ops::conv::{Conv2dOptions, ConvTranspose2dOptions};
pub use ops::loss::{CrossEntropyOptions, Reduction};
pub use ops::padding::PadMode;
pub use ops::recurrent::{RecurrentKind, RecurrentOutput};
pub use pending::PendingVec;
pub use random::Generator;
pub use recover::{caught_by_try_run, try_run};
pub use tensor::Tensor;
pub use trace::{trace, TraceOp, TracedOp};
pub use wgrad_gpu_core::env;
pub use wgrad_gpu_core::ops::attention::AttentionPath;
pub use wgrad_gpu_core::ops::binary::BinaryOp;
pub use wgrad_gpu_core::ops::interpolate::{Interpolation, Resize};
pub use wgrad_gpu_core::ops::pool::PoolWindow;
pub use wgrad_gpu_core::ops::reduce::ReduceOp;
pub use wgrad_gpu_core::ops::unary::{Domain, UnaryOp};
pub use wgrad_gpu_core::{Device, Error, HostRng, Result, GOLDEN};

//! # wgrad
//!
//! A GPU-first deep-learning training framework: every tensor op is a WGSL
//! compute shader run through `wgpu` (Vulkan, Metal, DX12), with a plain-Rust
//! CPU backend that mirrors each kernel.
//!
//! This facade re-exports the workspace crates; most programs only need
//! `use wgrad::prelude::*;`.
//!
//! | crate | job |
//! |---|---|
//! | [`gpu_core`] | device choice, buffer pool, WGSL kernels and their CPU twins |
//! | [`autograd`] | `Tensor`, the recorded op graph, backward |
//! | [`nn`] | `Module`, layers, activations, losses, initialisation |
//! | [`onnx`] | ONNX export of a traced forward pass |
//! | [`distributed`] | data-parallel training over MPI (feature `mpi`; alone: a group of one) |

pub use wgrad_autograd as autograd;
pub use wgrad_autograd::{
    autocast, detect_anomaly, no_grad, try_run, AnomalyGuard, AutocastGuard, CompiledStep, DType, Generator,
    PendingVec, Tensor,
};
pub use wgrad_data as data;
pub use wgrad_distributed as distributed;
pub use wgrad_gpu_core as gpu_core;
pub use wgrad_gpu_core::{
    profile, Buffer, Device, DeviceInfo, DeviceSpec, Error, Layout, Profile, Result, StatsSnapshot,
};
pub use wgrad_models as models;
pub use wgrad_nn as nn;
pub use wgrad_onnx as onnx;

/// The names most programs use: tensors and devices, the common layers,
/// losses, optimizers and schedules, autocast and its `GradScaler`.
///
/// ```
/// use wgrad::prelude::*;
///
/// let dev = Device::cpu();
/// let mut init = Init::new(&dev, 0);
/// let model = Sequential::new()
///     .add(Linear::builder(4, 8).build(&mut init))
///     .add(ReLU)
///     .add(Linear::builder(8, 2).build(&mut init));
/// let mut opt = Adam::new(model.parameters(), 1e-2);
/// let (x, y) = (Tensor::randn(&[16, 4], 1, &dev), Tensor::randn(&[16, 2], 2, &dev));
/// let loss = MSELoss::default().forward(&model.forward(&x), &y);
/// opt.zero_grad();
/// loss.backward();
/// opt.step();
/// ```
pub mod prelude {
    pub use crate::gpu_core::ops;
    pub use crate::nn::amp::GradScaler;
    pub use crate::nn::loss::{
        BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss,
    };
    pub use crate::nn::optim::{clip_grad_norm_, AdaGrad, Adam, AdamW, Lion, Optimizer, ParamGroup, RmsProp, Sgd};
    pub use crate::nn::schedule::{
        CosineAnnealingLR, ExponentialLR, LinearWarmup, LrScheduler, MultiStepLR, OneCycleLR, ReduceLROnPlateau, StepLR,
    };
    pub use crate::nn::{
        AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d, Conv2dOptions, ConvTranspose2d,
        Dropout, Embedding, Flatten, GroupNorm, Identity, Init, Interpolation, LayerNorm, LeakyReLU, Linear, MaxPool2d,
        MultiheadAttention, PadMode, PoolWindow, RMSNorm, ReLU, Sequential, SiLU, Sigmoid, Softmax, Tanh,
        TransformerDecoderLayer, TransformerEncoderLayer, Upsample, GELU, GRU, LSTM, RNN,
    };
    pub use crate::nn::{Module, ModuleExt, ModuleFields};
    pub use crate::{
        autocast, detect_anomaly, no_grad, AnomalyGuard, AutocastGuard, Buffer, CompiledStep, DType, Device,
        DeviceSpec, Generator, Layout, Tensor,
    };
}

/// The README's code blocks, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The getting-started guide's code blocks, compiled and run as doctests.
#[doc = include_str!("../docs/getting-started.md")]
#[cfg(doctest)]
pub struct GettingStartedDoctests;

/// The layer reference's code blocks (the construction style), compiled and run as doctests.
#[doc = include_str!("../docs/nn.md")]
#[cfg(doctest)]
pub struct NnReferenceDoctests;

/// The mixed-precision guide's code blocks, compiled and run as doctests.
#[doc = include_str!("../docs/mixed-precision.md")]
#[cfg(doctest)]
pub struct MixedPrecisionDoctests;

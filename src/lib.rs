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

pub use wgrad_autograd as autograd;
pub use wgrad_autograd::{
    autocast, detect_anomaly, no_grad, try_run, AnomalyGuard, AutocastGuard, DType, Generator, NormEpilogue, Tensor,
};
pub use wgrad_data as data;
pub use wgrad_gpu_core as gpu_core;
pub use wgrad_gpu_core::{
    profile, Buffer, Device, DeviceInfo, DeviceSpec, Error, Layout, Profile, Result, StatsSnapshot,
};
pub use wgrad_models as models;
pub use wgrad_nn as nn;

/// The names most programs use.
pub mod prelude {
    pub use crate::gpu_core::ops;
    pub use crate::nn::{Module, ModuleExt, ModuleFields};
    pub use crate::{
        autocast, detect_anomaly, no_grad, AnomalyGuard, AutocastGuard, Buffer, DType, Device, DeviceSpec, Generator,
        Layout, Tensor,
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

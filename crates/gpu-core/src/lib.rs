//! # wgrad-gpu-core
//!
//! The bottom layer of wgrad: it opens a device (a wgpu adapter, or the
//! plain-Rust CPU backend when there is none), hands out pooled buffers, and
//! runs the kernel set on them. Each kernel is WGSL in `shaders/` with a CPU
//! twin in [`ops`] that defines its semantics and serves as the test oracle.
//!
//! On a GPU, ops are *recorded* into one pending command encoder and submitted
//! only when data leaves the device ([`Buffer::to_f32`]) or on
//! [`Device::flush`]; [`Stats`] counts submissions, dispatches, readbacks and
//! memory so that this is testable.
//!
//! This crate knows nothing about tensors, autograd or layers: it must not
//! depend on any other wgrad crate. Shapes enter only as [`Layout`]s of views.

pub mod buffer;
mod cpu;
pub mod device;
mod dims;
pub mod env;
pub mod error;
mod gpu;
mod host_rng;
mod index_check;
mod kernels;
pub mod layout;
pub mod memory;
pub mod ops;
pub mod profile;
mod profiler;
pub mod readback;
mod reservation;
pub mod select;
pub mod shaders;
mod size_class;
pub mod stats;
pub mod step_graph;
pub mod testing;
mod web;

pub use buffer::Buffer;
pub use cpu::simd::{host_simd_level, set_simd_level, simd_level, SimdLevel};
pub use device::{Device, DeviceInfo, MatrixUnitsInfo};
pub use error::{Error, Result};
pub use host_rng::{mix64, HostRng, GOLDEN};
pub use layout::{Dims, Layout};
pub use profile::Profile;
pub use readback::Readback;
pub use select::{enumerate_adapters, list_adapters, AdapterSummary, DeviceSpec};
pub use stats::{Stats, StatsSnapshot};
pub use step_graph::{Recording, StepGraph};

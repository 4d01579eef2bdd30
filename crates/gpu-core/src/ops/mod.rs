//! The kernel set. One file per kernel family; each holds the launch of
//! its WGSL kernel (`shaders/NAME.wgsl`) and its plain-Rust CPU twin, so
//! GPU and CPU semantics sit side by side (descriptors that the lower
//! layers share, such as the op tables, live in `kernels/` and are
//! re-exported here).
//!
//! Every op takes and returns [`Buffer`](crate::Buffer)s on one device; on a
//! GPU it records a launch and returns at once, on the CPU it runs. This
//! is the top layer of the crate: what an op means sits below in
//! `kernels/`, the fast CPU paths in `cpu/`, the recorder in `gpu/`, and
//! `launch.rs` is the one place an op reaches either backend.

pub mod amp;
pub mod argsort;
pub mod attention;
mod attention_split;
pub mod augment;
pub mod batch_norm;
mod batch_norm_split;
pub mod binary;
pub mod cast;
mod chunks;
pub mod conv;
mod conv_split;
pub mod convert;

pub mod copy;
pub mod cumsum;
pub mod epilogue;
mod fibers;
pub mod fill;
pub mod index;
pub mod index_add;
pub mod interpolate;
mod launch;
pub mod matmul;
pub mod norm;
pub mod operands;
pub mod optim;
pub(crate) mod params;
pub mod pool;
pub mod random;
pub mod recurrent;
pub mod reduce;
mod reduce_split;
mod rows;
pub mod softmax;

pub mod unary;

pub(crate) use crate::gpu::workgroups::groups;
pub(crate) use launch::{
    check_u32, dispatch, dispatch_fusable, dispatch_indexed, f32s, f32s_mut, launch_elementwise, past_limit, run,
    run_fallible, window_constants,
};
pub(crate) use params::{Kind, Params, ParamsDecl};

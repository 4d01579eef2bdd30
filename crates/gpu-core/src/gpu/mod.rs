//! The wgpu backend: device opening, pooled buffers, cached pipelines and
//! batched recording of kernel launches.

pub(crate) mod batch;
pub(crate) mod bind_groups;
pub(crate) mod context;
pub(crate) mod fused_wgsl;
pub(crate) mod fusion;
pub(crate) mod handle;
pub(crate) mod host_clock;
pub(crate) mod launch;
pub(crate) mod matrix_units;
pub(crate) mod open_pass;
pub(crate) mod pipeline_key;
pub(crate) mod pipelines;
pub(crate) mod pool;
pub(crate) mod product_store;
pub(crate) mod readback;
pub(crate) mod recorder;
pub(crate) mod replay;
pub(crate) mod specialize;
pub(crate) mod split;
pub(crate) mod submitter;
pub(crate) mod tails;
pub(crate) mod tape;
pub(crate) mod tape_recording;
pub(crate) mod texture_operands;
pub(crate) mod warmup;
pub(crate) mod window;
pub(crate) mod workgroups;

pub(crate) use context::GpuContext;
pub(crate) use launch::Launch;
pub(crate) use launch::PARAMS_WORDS;

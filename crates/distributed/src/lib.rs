//! # wgrad-distributed
//!
//! Data-parallel training across processes, GPUs and machines on MPI
//! (the `mpi` feature: Open MPI or MPICH through rsmpi): a
//! [`ProcessGroup`] (ranks and collectives) and
//! [`DistributedDataParallel`] (PyTorch DDP's gradient averaging, in
//! buckets overlapped with backward). The data side, each rank's shard of
//! an epoch, is `wgrad_data::DistributedSampler` / `DataLoader::shard`.
//!
//! WebGPU has no peer-to-peer copies or NCCL: gradients meet in host
//! memory, reduced by MPI. Without the feature every process is a group of
//! one, so the same program runs alone unchanged. How to launch, what is
//! averaged and what it costs: docs/distributed.md.
//!
//! This crate must not do anything MPI does (no transport of its own), and
//! holds no model or data code: it averages what `nn` computes.

mod bucket;
mod ddp;
mod error;
#[cfg(feature = "mpi")]
mod mpi_service;
mod process_group;
mod sync_batch_norm;

pub use ddp::{DdpOptions, DdpStats, DistributedDataParallel};
pub use error::{DistError, Result};
pub use process_group::{HostValues, PendingReduce, ProcessGroup, ReduceOp};

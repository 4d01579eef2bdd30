//! [`DataParallel`]: what a [`Trainer`](super::Trainer) asks of
//! data-parallel training. `wgrad_distributed::DistributedDataParallel`
//! implements it over MPI; this crate knows only the trait, so that
//! training needs no MPI unless a run uses it.

use wgrad_autograd::Tensor;

use super::BoxError;

/// The replicas of a model trained together, one per process (rank), each
/// on its own shard of every batch.
///
/// With one, [`Trainer::data_parallel`](super::Trainer::data_parallel)
/// runs backward through it (gradients averaged over the ranks), merges
/// the metrics of all ranks into each epoch's record, agrees on stop
/// requests, and only rank 0 shows progress and writes the run folder.
pub trait DataParallel {
    /// This process's rank, `0..world_size()`; rank 0 prints and writes files.
    fn rank(&self) -> usize;

    /// The number of replicas.
    fn world_size(&self) -> usize;

    /// Backward of `loss` (already scaled by a `GradScaler` when AMP is
    /// on); when `sync`, the parameters' gradients are then the mean over
    /// the ranks, identical on every rank. Without, they only accumulate
    /// locally (PyTorch's `no_sync`, for gradient accumulation): the next
    /// synced backward averages the sum.
    fn backward(&mut self, loss: &Tensor, sync: bool) -> Result<(), BoxError>;

    /// Every rank's `values`, in rank order (each rank gives the same length).
    fn all_gather(&self, values: &[f64]) -> Result<Vec<Vec<f64>>, BoxError>;
}

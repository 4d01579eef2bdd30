//! Synchronised batch normalisation (PyTorch's `SyncBatchNorm`): in
//! data-parallel training each replica sees only its shard of the batch,
//! and with [`SyncBatchNorm`] installed every training-mode batch norm on
//! this thread normalises with the statistics of the whole (global) batch,
//! summed across replicas by a [`BatchStatsSync`]
//! (`wgrad_distributed::ProcessGroup::sync_batch_norm` gives one over MPI).
//! A thread-local mode, like autocast, because models hold their batch
//! norm layers as typed fields: it switches them all without rebuilding
//! the model.

use std::cell::RefCell;
use std::sync::Arc;

use wgrad_autograd::{no_grad, DType, Tensor};

/// Sums per-channel partial sums over the replicas of a data-parallel run.
pub trait BatchStatsSync: Send + Sync {
    /// The element-wise sum of `local` over every replica, as a tensor
    /// whose gradient is the sum over replicas of the result's gradient
    /// (the all-reduce is its own adjoint). Every replica calls it for the
    /// same layers in the same order, in forward and in backward.
    fn all_reduce_sum(&self, local: &Tensor) -> Tensor;
}

thread_local! {
    static SYNC: RefCell<Option<Arc<dyn BatchStatsSync>>> = const { RefCell::new(None) };
}

/// While it lives, batch norm layers in training mode on this thread use
/// the global batch's statistics: per channel, the sums of x and x² and the
/// count over every replica's batch give the mean and (biased) variance
/// that normalise, and the running statistics take the unbiased variance
/// of the global batch, so every replica's running statistics agree.
/// Evaluation mode is unchanged (running statistics). Dropping the guard
/// restores the previous mode.
#[must_use = "batch norm is synchronised only while the guard lives"]
pub struct SyncBatchNorm {
    previous: Option<Arc<dyn BatchStatsSync>>,
}

impl SyncBatchNorm {
    /// Synchronises this thread's batch norms through `sync`.
    pub fn new(sync: Arc<dyn BatchStatsSync>) -> SyncBatchNorm {
        let previous = SYNC.with(|s| s.borrow_mut().replace(sync));
        SyncBatchNorm { previous }
    }
}

impl Drop for SyncBatchNorm {
    fn drop(&mut self) {
        let previous = self.previous.take();
        SYNC.with(|s| *s.borrow_mut() = previous);
    }
}

/// The installed synchronisation, if any.
pub(crate) fn current() -> Option<Arc<dyn BatchStatsSync>> {
    SYNC.with(|s| s.borrow().clone())
}

/// Training-mode batch norm of `x` (`[N, C, *]`) with global statistics:
/// the per-channel sums of x and x² and the element count, summed by
/// `sync` in one reduction, give the mean and biased variance; the running
/// statistics are updated with the unbiased variance. Composed of
/// differentiable ops around the reduction, so the gradient flows through
/// the global statistics to every replica's input. F16 input is normalised
/// in f32 and returned as f16.
pub(crate) fn forward(
    x: &Tensor,
    sync: &dyn BatchStatsSync,
    (running_mean, running_var): (&Tensor, &Tensor),
    (weight, bias): (Option<&Tensor>, Option<&Tensor>),
    (momentum, eps): (f32, f32),
) -> Tensor {
    let shape = x.shape();
    let c = shape[1];
    let xf = if x.dtype() == DType::F16 { x.float() } else { x.clone() };
    let axes: Vec<isize> = (0..shape.len() as isize).filter(|&d| d != 1).collect();
    let count = Tensor::full(&[1], (x.numel() / c) as f32, &x.device());
    let sum = xf.sum(&axes, false);
    let squares = xf.square().sum(&axes, false);
    let total = sync.all_reduce_sum(&Tensor::cat(&[&sum, &squares, &count], 0));
    let n = total.narrow(0, 2 * c, 1);
    let mean = &total.narrow(0, 0, c) / &n;
    let var = &(&total.narrow(0, c, c) / &n) - &mean.square();
    no_grad(|| {
        let unbiased = &var * &(&n / &n.add_scalar(-1.0));
        let keep = 1.0 - momentum;
        running_mean.assign(&(&running_mean.mul_scalar(keep) + &mean.mul_scalar(momentum)));
        running_var.assign(&(&running_var.mul_scalar(keep) + &unbiased.mul_scalar(momentum)));
    });
    let mut view = vec![1; shape.len()];
    view[1] = c;
    let inv_std = var.add_scalar(eps).rsqrt();
    let mut y = &(&xf - &mean.reshape(&view)) * &inv_std.reshape(&view);
    if let Some(w) = weight {
        y = &y * &w.reshape(&view);
    }
    if let Some(b) = bias {
        y = &y + &b.reshape(&view);
    }
    if x.dtype() == DType::F16 {
        y.to_dtype(DType::F16)
    } else {
        y
    }
}

//! Batch statistics summed across ranks, for `wgrad_nn::SyncBatchNorm`.

use std::sync::Arc;

use wgrad_autograd::Tensor;
use wgrad_nn::{BatchStatsSync, SyncBatchNorm};

use crate::process_group::{tensor_like, ProcessGroup, Reducer};

/// A sum over the ranks whose gradient is the sum over the ranks of the
/// result's gradient: both directions are one host-staged all-reduce.
struct GroupStats {
    reducer: Arc<Reducer>,
}

/// Sums `t` over the ranks. A failure here cannot be returned from inside
/// a forward or backward pass: it panics, which aborts the job (the other
/// ranks would wait for this one's sum forever).
fn sum_over_ranks(reducer: &Reducer, t: &Tensor) -> Tensor {
    let pending = reducer.all_reduce_async(t.to_vec_async().into());
    let (sums, _) = pending.wait().unwrap_or_else(|e| panic!("SyncBatchNorm: summing statistics across ranks: {e}"));
    tensor_like(t, &sums).unwrap_or_else(|e| panic!("SyncBatchNorm: {e}"))
}

impl BatchStatsSync for GroupStats {
    fn all_reduce_sum(&self, local: &Tensor) -> Tensor {
        let value = sum_over_ranks(&self.reducer, local);
        let reducer = self.reducer.clone();
        Tensor::custom_op("all_reduce_sum", &[local], &value, move |g| vec![Some(sum_over_ranks(&reducer, g))])
    }
}

impl ProcessGroup {
    /// Synchronised batch norm over this group: while the returned guard
    /// lives, every batch norm layer in training mode on this thread
    /// normalises with the statistics of all ranks' batches together
    /// (PyTorch's `SyncBatchNorm`), in forward and in backward. Costs two
    /// all-reduces of `2C + 1` values per layer and step.
    pub fn sync_batch_norm(&self) -> SyncBatchNorm {
        SyncBatchNorm::new(Arc::new(GroupStats { reducer: Arc::new(self.reducer()) }))
    }
}

//! Reading each step's loss a step late on a hardware GPU, as a training
//! loop that only reports should: the loss of step N is copied back
//! asynchronously (`Tensor::to_vec_async`, which submits the step) and read
//! while step N + 1 is recorded, so the host records the next step while
//! the GPU runs this one, with at most one step in flight (reading
//! `loss.item()` every step made them take turns). On a CPU adapter
//! (lavapipe) and the CPU backend the loss is read in its own step: there
//! the "device" runs on the cores that record, so overlapping only moves
//! time into the host-cost columns (a lavapipe Transformer step 8% shorter,
//! its recording time per launch 100x longer) and those columns are what
//! the benches measure there. Included with `#[path]`.
#![allow(dead_code)]

use wgrad::autograd::{Device, PendingVec, Tensor};

/// The loss of the step before, pending (hardware GPUs only).
pub struct LateLoss {
    late: bool,
    pending: Option<PendingVec>,
}

impl LateLoss {
    /// Late reads on hardware GPUs, reads in the step elsewhere.
    pub fn new(dev: &Device) -> Self {
        LateLoss { late: dev.is_gpu() && dev.info().device_type != "Cpu", pending: None }
    }

    /// Starts reading `loss` back and returns the previous step's loss
    /// (waiting for it if the device is still on it), if there was one;
    /// where reads are not late, reads `loss` now and returns it.
    pub fn push(&mut self, loss: &Tensor) -> Option<f32> {
        if !self.late {
            return Some(loss.item());
        }
        let previous = self.pending.replace(loss.to_vec_async());
        previous.map(|p| p.wait()[0])
    }

    /// The last step's loss (waits for the device to finish it).
    pub fn finish(&mut self, last: Option<f32>) -> Option<f32> {
        self.pending.take().map(|p| p.wait()[0]).or(last)
    }
}

//! Optimizers. Each keeps its state on the device and updates all parameters
//! of a group with fused kernels (no per-parameter readback).

mod adagrad;
mod adam;
pub mod clip;
mod fused;
mod lion;
mod rmsprop;
mod sgd;

pub use adagrad::{AdaGrad, AdaGradOptions};
pub use adam::{Adam, AdamOptions, AdamW, AdamWOptions};
pub use clip::{clip_grad_norm_, clip_grad_value_};
pub(crate) use fused::exclusive_buffer;
pub use lion::{Lion, LionOptions};
pub use rmsprop::{RmsProp, RmsPropOptions};
pub use sgd::{Sgd, SgdOptions};

use wgrad_autograd::Tensor;
use wgrad_gpu_core::Buffer;

use crate::state::StateDict;

/// Parameters that share hyper-parameters (e.g. no weight decay on biases).
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// The parameters (leaves requiring gradients).
    pub params: Vec<Tensor>,
    /// Learning rate; schedulers write it.
    pub lr: f32,
    /// Weight decay of this group (L2 for SGD/Adam, decoupled for AdamW/Lion).
    pub weight_decay: f32,
}

impl ParamGroup {
    /// A group with the optimizer's default weight decay.
    pub fn new(params: Vec<Tensor>, lr: f32, weight_decay: f32) -> Self {
        ParamGroup { params, lr, weight_decay }
    }
}

/// What every optimizer offers to the training loop, schedulers and checkpoints.
pub trait Optimizer {
    /// Applies one update from the parameters' current gradients (parameters
    /// without a gradient are skipped, as in PyTorch).
    fn step(&mut self);

    /// The host half of [`step`](Self::step), for a step recorded as a
    /// graph (`CompiledStep`): advances the step counts and writes the
    /// step's scalars to the device, for every parameter that requires a
    /// gradient, before the gradients exist. Call it outside the recorded
    /// step, and [`apply_step`](Self::apply_step) inside it. The default
    /// does nothing (and `apply_step` is then a whole `step`, whose
    /// changing scalars keep the step from being replayed).
    fn prepare_step(&mut self) {}

    /// The device half of [`step`](Self::step): the updates that
    /// [`prepare_step`](Self::prepare_step) prepared, the same launches
    /// every step. The default is `step`.
    fn apply_step(&mut self) {
        self.step()
    }

    /// [`step`](Self::step), skipped on the device when the loss scaler
    /// state `scaler` (`wgrad_gpu_core::ops::amp`) has found inf/NaN
    /// gradients: the update kernels then leave the parameters and their
    /// state as they are, and nothing is read back now (the optimizer takes
    /// the skipped step's counts back when it next prepares a step).
    /// Returns `false`, having done nothing, when the optimizer cannot skip
    /// on the device (the default: `GradScaler` then reads the flag back
    /// and calls `step` or not).
    fn step_unless_overflow(&mut self, _scaler: &Buffer) -> bool {
        false
    }

    /// [`apply_step`](Self::apply_step) gated as
    /// [`step_unless_overflow`](Self::step_unless_overflow) gates `step`.
    fn apply_step_unless_overflow(&mut self, _scaler: &Buffer) -> bool {
        false
    }

    /// Clears every parameter's gradient.
    fn zero_grad(&self) {
        for g in self.groups() {
            for p in &g.params {
                p.zero_grad();
            }
        }
    }

    /// The parameter groups.
    fn groups(&self) -> &[ParamGroup];

    /// The parameter groups, mutable (schedulers set `lr`).
    fn groups_mut(&mut self) -> &mut [ParamGroup];

    /// The state needed to resume exactly: per-parameter buffers (named
    /// `state.<param index>.<buffer>`, indices counted across groups in order),
    /// step counters and hyper-parameters as metadata.
    fn state_dict(&self) -> StateDict;

    /// Restores a state saved by [`state_dict`](Self::state_dict); a clear
    /// error on missing or mis-shaped entries.
    fn load_state_dict(&mut self, state: &StateDict) -> wgrad_autograd::Result<()>;
}

//! Learning-rate schedules, step for step the values of PyTorch's
//! `torch.optim.lr_scheduler` classes.
//!
//! A scheduler is built from an optimizer: it takes the groups' current `lr`s
//! as its base learning rates (PyTorch's `initial_lr`) and writes the epoch-0
//! learning rate, as PyTorch's constructors do. Each [`LrScheduler::step`]
//! (called after `optimizer.step()`, once per epoch or per batch as the
//! schedule intends) advances one step and writes every group's `lr`.
//!
//! ```
//! # use wgrad_nn::optim::{Optimizer, ParamGroup};
//! # use wgrad_nn::state::StateDict;
//! # struct Sgd(Vec<ParamGroup>);
//! # impl Optimizer for Sgd {
//! #     fn step(&mut self) {}
//! #     fn groups(&self) -> &[ParamGroup] { &self.0 }
//! #     fn groups_mut(&mut self) -> &mut [ParamGroup] { &mut self.0 }
//! #     fn state_dict(&self) -> StateDict { StateDict::new() }
//! #     fn load_state_dict(&mut self, _: &StateDict) -> wgrad_autograd::Result<()> { Ok(()) }
//! # }
//! # let mut opt = Sgd(vec![ParamGroup::new(vec![], 0.1, 0.0)]);
//! use wgrad_nn::schedule::{CosineAnnealingLR, LinearWarmup, LrScheduler};
//! // 5 warm-up epochs from 0.01 to 0.1, then 95 epochs of cosine annealing.
//! let cosine = CosineAnnealingLR::new(&mut opt, 95, 0.0);
//! let mut sched = LinearWarmup::new(&mut opt, cosine, 5, 0.1);
//! for _epoch in 0..100 {
//!     // ... train one epoch ...
//!     opt.step();
//!     sched.step(&mut opt);
//! }
//! ```
//!
//! # Precision and chaining
//!
//! Schedules compute in `f64` (hyper-parameters included), as PyTorch does
//! with Python floats, and round to the `f32` of
//! [`ParamGroup::lr`](crate::optim::ParamGroup) only when writing: a
//! recursion carried in `f32` drifts from PyTorch by more than 1e-6 within
//! 60 cosine steps. PyTorch's recursive schedules (step, multi-step, exponential,
//! cosine, plateau) derive the next lr from the group's *current* lr, so a
//! value set from outside (by hand, by another scheduler) is picked up: each
//! scheduler keeps the exact `f64` of what it wrote and continues from it
//! while the group still holds that value, and from the group's value once
//! someone changed it.
//!
//! # Metrics
//!
//! [`ReduceLROnPlateau`] needs a validation metric. The trait carries
//! [`LrScheduler::step_with`], whose default ignores the metric and calls
//! `step`, so a training loop with a metric can drive any scheduler the same
//! way; [`LrScheduler::uses_metric`] tells it whether computing one is worth
//! it. A plateau scheduler's plain `step` is a no-op (it cannot judge without
//! a metric; PyTorch would raise a `TypeError`), which also lets it sit inside
//! [`LinearWarmup`].
//!
//! # Saving
//!
//! [`LrScheduler::state_dict`] holds metadata only (counters, base lrs, the
//! current exact lrs, best values, hyper-parameters and a `kind` tag checked
//! on load), derived from each scheduler's field list (`reflect.rs`, the
//! schedulers' counterpart of the optimizers' `Field`), so saving and
//! loading cannot disagree. As in PyTorch, the groups' current lrs live in the optimizer's
//! state too: restore both, the scheduler after constructing it.

mod cosine;
mod inverse_time;
mod one_cycle;
mod plateau;
mod reflect;
mod step;
mod warmup;

pub use cosine::CosineAnnealingLR;
pub use inverse_time::InverseTimeDecay;
pub use one_cycle::{Anneal, OneCycleLR, OneCycleOptions};
pub use plateau::{PlateauMode, PlateauOptions, ReduceLROnPlateau, ThresholdMode};
pub use step::{ExponentialLR, MultiStepLR, StepLR};
pub use warmup::LinearWarmup;

use wgrad_autograd::Result;

use crate::optim::Optimizer;
use crate::state::StateDict;

/// A learning-rate schedule driving an [`Optimizer`]'s group `lr`s.
pub trait LrScheduler {
    /// Advances one step (epoch or batch) and writes each group's `lr`.
    ///
    /// # Panics
    /// If the optimizer's number of parameter groups differs from the one the
    /// scheduler was built with (PyTorch raises there too).
    fn step(&mut self, opt: &mut dyn Optimizer);

    /// Advances one step given a validation metric. Only metric-driven
    /// schedules ([`ReduceLROnPlateau`]) read it; the default ignores it and
    /// calls [`step`](Self::step).
    fn step_with(&mut self, metric: f32, opt: &mut dyn Optimizer) {
        let _ = metric;
        self.step(opt);
    }

    /// Whether [`step_with`](Self::step_with) needs a real metric (so a
    /// training loop knows whether to compute one).
    fn uses_metric(&self) -> bool {
        false
    }

    /// The learning rates of the last step (or of construction), one per
    /// group: PyTorch's `get_last_lr()`.
    fn last_lr(&self) -> Vec<f32>;

    /// The lrs the schedule starts from, one per group: PyTorch's `base_lrs`
    /// (its groups' `initial_lr`) — the groups' lrs at construction, or
    /// `max_lr / div_factor` for [`OneCycleLR`]. [`LinearWarmup`] warms up
    /// towards these.
    fn base_lrs(&self) -> Vec<f64>;

    /// Counters, base lrs, best values and hyper-parameters, as metadata.
    fn state_dict(&self) -> StateDict;

    /// Restores a state saved by [`state_dict`](Self::state_dict) of the same
    /// kind of scheduler; a clear error on a missing, malformed or foreign
    /// entry.
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()>;
}

impl<S: LrScheduler + ?Sized> LrScheduler for Box<S> {
    fn step(&mut self, opt: &mut dyn Optimizer) {
        (**self).step(opt)
    }
    fn step_with(&mut self, metric: f32, opt: &mut dyn Optimizer) {
        (**self).step_with(metric, opt)
    }
    fn uses_metric(&self) -> bool {
        (**self).uses_metric()
    }
    fn last_lr(&self) -> Vec<f32> {
        (**self).last_lr()
    }
    fn base_lrs(&self) -> Vec<f64> {
        (**self).base_lrs()
    }
    fn state_dict(&self) -> StateDict {
        (**self).state_dict()
    }
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        (**self).load_state_dict(state)
    }
}

/// The lrs a scheduler last wrote: exactly (`f64`) and as written (`f32`),
/// so a recursive schedule can tell its own value from one set outside.
#[derive(Clone, Debug)]
pub(crate) struct Lrs {
    pub(crate) exact: Vec<f64>,
    pub(crate) written: Vec<f32>,
}

impl Lrs {
    /// The optimizer's current group lrs.
    pub(crate) fn from_opt(opt: &dyn Optimizer) -> Self {
        let written: Vec<f32> = opt.groups().iter().map(|g| g.lr).collect();
        Lrs { exact: written.iter().map(|&l| l as f64).collect(), written }
    }

    fn check(&self, who: &str, opt: &dyn Optimizer) {
        let n = opt.groups().len();
        assert!(
            n == self.written.len(),
            "{who}: the optimizer has {n} parameter groups but the scheduler was built for {}",
            self.written.len()
        );
    }

    /// Each group's current lr: our exact value while the group still holds
    /// what we wrote, the group's own value once something else changed it.
    pub(crate) fn current(&self, who: &str, opt: &dyn Optimizer) -> Vec<f64> {
        self.check(who, opt);
        opt.groups()
            .iter()
            .zip(self.exact.iter().zip(&self.written))
            .map(|(g, (&exact, &written))| if g.lr == written { exact } else { g.lr as f64 })
            .collect()
    }

    /// Sets every group's lr.
    pub(crate) fn write(&mut self, who: &str, opt: &mut dyn Optimizer, lrs: Vec<f64>) {
        self.check(who, opt);
        self.written = lrs.iter().map(|&l| l as f32).collect();
        for (g, &l) in opt.groups_mut().iter_mut().zip(&self.written) {
            g.lr = l;
        }
        self.exact = lrs;
    }

    /// What was last written.
    pub(crate) fn last(&self) -> Vec<f32> {
        self.written.clone()
    }

    /// The number of groups.
    pub(crate) fn len(&self) -> usize {
        self.written.len()
    }
}

/// One value for every group (`[v]`) or one per group, as PyTorch's
/// "float or list" arguments.
pub(crate) fn per_group(who: &str, what: &str, values: &[f64], groups: usize) -> Vec<f64> {
    match values.len() {
        1 => vec![values[0]; groups],
        n if n == groups => values.to_vec(),
        n => panic!("{who}: expected 1 or {groups} values of {what} (one per parameter group), got {n}"),
    }
}

//! Multiplicative decays: [`StepLR`], [`MultiStepLR`], [`ExponentialLR`].

use wgrad_autograd::Result;

use super::reflect::{self, Field, Reflect};
use super::{LrScheduler, Lrs};
use crate::optim::Optimizer;
use crate::state::StateDict;

/// Multiplies the lr by `gamma` every `step_size` steps: PyTorch's
/// `torch.optim.lr_scheduler.StepLR`, value for value (recursive on the
/// group's current lr, so changes made from outside carry on).
#[derive(Clone, Debug)]
pub struct StepLR {
    step_size: usize,
    gamma: f64,
    last_epoch: usize,
    base_lrs: Vec<f64>,
    lrs: Lrs,
}

impl StepLR {
    /// Decays the optimizer's current lrs by `gamma` at steps `step_size`,
    /// `2 * step_size`, ...
    ///
    /// # Panics
    /// If `step_size` is 0.
    pub fn new(opt: &mut dyn Optimizer, step_size: usize, gamma: f64) -> Self {
        assert!(step_size > 0, "StepLR::new: step_size must be positive");
        let lrs = Lrs::from_opt(opt);
        StepLR { step_size, gamma, last_epoch: 0, base_lrs: lrs.current("StepLR::new", opt), lrs }
    }

    /// Steps taken since construction (PyTorch's `last_epoch`).
    pub fn last_epoch(&self) -> usize {
        self.last_epoch
    }
}

impl LrScheduler for StepLR {
    fn step(&mut self, opt: &mut dyn Optimizer) {
        self.last_epoch += 1;
        let mut lrs = self.lrs.current("StepLR::step", opt);
        if self.last_epoch.is_multiple_of(self.step_size) {
            lrs.iter_mut().for_each(|l| *l *= self.gamma);
        }
        self.lrs.write("StepLR::step", opt, lrs);
    }

    fn last_lr(&self) -> Vec<f32> {
        self.lrs.last()
    }

    fn base_lrs(&self) -> Vec<f64> {
        self.base_lrs.clone()
    }

    fn state_dict(&self) -> StateDict {
        reflect::save(self)
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        reflect::load(self, sd)
    }
}

/// Multiplies the lr by `gamma` at each milestone step: PyTorch's
/// `torch.optim.lr_scheduler.MultiStepLR`, value for value. A milestone
/// listed `n` times decays by `gamma^n` at once, as PyTorch's `Counter` does.
#[derive(Clone, Debug)]
pub struct MultiStepLR {
    milestones: Vec<usize>,
    gamma: f64,
    last_epoch: usize,
    base_lrs: Vec<f64>,
    lrs: Lrs,
}

impl MultiStepLR {
    /// Decays the optimizer's current lrs by `gamma` at each of `milestones`
    /// (any order; repeats compound).
    pub fn new(opt: &mut dyn Optimizer, milestones: &[usize], gamma: f64) -> Self {
        let mut milestones = milestones.to_vec();
        milestones.sort_unstable();
        let lrs = Lrs::from_opt(opt);
        let base_lrs = lrs.current("MultiStepLR::new", opt);
        let mut s = MultiStepLR { milestones, gamma, last_epoch: 0, base_lrs, lrs };
        // PyTorch's constructor runs the update for step 0 too: a milestone
        // at 0 decays the starting lr.
        s.apply_milestones("MultiStepLR::new", opt);
        s
    }

    fn apply_milestones(&mut self, who: &str, opt: &mut dyn Optimizer) {
        let mut lrs = self.lrs.current(who, opt);
        let hits = self.milestones.iter().filter(|&&m| m == self.last_epoch).count();
        if hits > 0 {
            let f = self.gamma.powi(hits as i32);
            lrs.iter_mut().for_each(|l| *l *= f);
        }
        self.lrs.write(who, opt, lrs);
    }

    /// Steps taken since construction (PyTorch's `last_epoch`).
    pub fn last_epoch(&self) -> usize {
        self.last_epoch
    }
}

impl LrScheduler for MultiStepLR {
    fn step(&mut self, opt: &mut dyn Optimizer) {
        self.last_epoch += 1;
        self.apply_milestones("MultiStepLR::step", opt);
    }

    fn last_lr(&self) -> Vec<f32> {
        self.lrs.last()
    }

    fn base_lrs(&self) -> Vec<f64> {
        self.base_lrs.clone()
    }

    fn state_dict(&self) -> StateDict {
        reflect::save(self)
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        reflect::load(self, sd)
    }
}

/// Multiplies the lr by `gamma` every step: PyTorch's
/// `torch.optim.lr_scheduler.ExponentialLR`, value for value.
#[derive(Clone, Debug)]
pub struct ExponentialLR {
    gamma: f64,
    last_epoch: usize,
    base_lrs: Vec<f64>,
    lrs: Lrs,
}

impl ExponentialLR {
    /// Decays the optimizer's current lrs by `gamma` per step.
    pub fn new(opt: &mut dyn Optimizer, gamma: f64) -> Self {
        let lrs = Lrs::from_opt(opt);
        ExponentialLR { gamma, last_epoch: 0, base_lrs: lrs.current("ExponentialLR::new", opt), lrs }
    }

    /// Steps taken since construction (PyTorch's `last_epoch`).
    pub fn last_epoch(&self) -> usize {
        self.last_epoch
    }
}

impl LrScheduler for ExponentialLR {
    fn step(&mut self, opt: &mut dyn Optimizer) {
        self.last_epoch += 1;
        let lrs = self.lrs.current("ExponentialLR::step", opt).iter().map(|l| l * self.gamma).collect();
        self.lrs.write("ExponentialLR::step", opt, lrs);
    }

    fn last_lr(&self) -> Vec<f32> {
        self.lrs.last()
    }

    fn base_lrs(&self) -> Vec<f64> {
        self.base_lrs.clone()
    }

    fn state_dict(&self) -> StateDict {
        reflect::save(self)
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        reflect::load(self, sd)
    }
}

impl Reflect for StepLR {
    const KIND: &'static str = "StepLR";
    const WHO: &'static str = "StepLR::load_state_dict";

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("step_size", Field::Count(&mut self.step_size)),
            ("gamma", Field::F64(&mut self.gamma)),
            ("last_epoch", Field::Count(&mut self.last_epoch)),
            ("base_lrs", Field::PerGroup(&mut self.base_lrs)),
            ("last_lr", Field::Lrs(&mut self.lrs)),
        ]
    }

    fn check(&mut self) -> std::result::Result<(), String> {
        if self.step_size == 0 {
            return Err("step_size must be positive".into());
        }
        Ok(())
    }
}

impl Reflect for MultiStepLR {
    const KIND: &'static str = "MultiStepLR";
    const WHO: &'static str = "MultiStepLR::load_state_dict";

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("milestones", Field::Counts(&mut self.milestones)),
            ("gamma", Field::F64(&mut self.gamma)),
            ("last_epoch", Field::Count(&mut self.last_epoch)),
            ("base_lrs", Field::PerGroup(&mut self.base_lrs)),
            ("last_lr", Field::Lrs(&mut self.lrs)),
        ]
    }

    /// Sorts the milestones (the decay counts hits, in any order).
    fn check(&mut self) -> std::result::Result<(), String> {
        self.milestones.sort_unstable();
        Ok(())
    }
}

impl Reflect for ExponentialLR {
    const KIND: &'static str = "ExponentialLR";
    const WHO: &'static str = "ExponentialLR::load_state_dict";

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("gamma", Field::F64(&mut self.gamma)),
            ("last_epoch", Field::Count(&mut self.last_epoch)),
            ("base_lrs", Field::PerGroup(&mut self.base_lrs)),
            ("last_lr", Field::Lrs(&mut self.lrs)),
        ]
    }

    fn check(&mut self) -> std::result::Result<(), String> {
        Ok(())
    }
}

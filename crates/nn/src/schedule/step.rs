//! Multiplicative decays: [`StepLR`], [`MultiStepLR`], [`ExponentialLR`].

use wgrad_autograd::{Error, Result};

use super::{check_kind, get, get_count, get_f64s, get_list, new_state, put, put_list, LrScheduler, Lrs};
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
        let mut sd = new_state("StepLR");
        put(&mut sd, "step_size", self.step_size);
        put(&mut sd, "gamma", self.gamma);
        put(&mut sd, "last_epoch", self.last_epoch);
        put_list(&mut sd, "base_lrs", &self.base_lrs);
        self.lrs.save(&mut sd);
        sd
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        const WHO: &str = "StepLR::load_state_dict";
        check_kind(sd, WHO, "StepLR")?;
        let step_size = get_count(sd, WHO, "step_size")?;
        if step_size == 0 {
            return Err(Error::invalid(WHO, "step_size must be positive"));
        }
        let n = self.lrs.len();
        *self = StepLR {
            step_size,
            gamma: get(sd, WHO, "gamma")?,
            last_epoch: get_count(sd, WHO, "last_epoch")?,
            base_lrs: get_f64s(sd, WHO, "base_lrs", n)?,
            lrs: Lrs::load(WHO, sd, n)?,
        };
        Ok(())
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
        let mut sd = new_state("MultiStepLR");
        put_list(&mut sd, "milestones", &self.milestones);
        put(&mut sd, "gamma", self.gamma);
        put(&mut sd, "last_epoch", self.last_epoch);
        put_list(&mut sd, "base_lrs", &self.base_lrs);
        self.lrs.save(&mut sd);
        sd
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        const WHO: &str = "MultiStepLR::load_state_dict";
        check_kind(sd, WHO, "MultiStepLR")?;
        let mut milestones: Vec<usize> = get_list(sd, WHO, "milestones")?;
        milestones.sort_unstable();
        let n = self.lrs.len();
        *self = MultiStepLR {
            milestones,
            gamma: get(sd, WHO, "gamma")?,
            last_epoch: get_count(sd, WHO, "last_epoch")?,
            base_lrs: get_f64s(sd, WHO, "base_lrs", n)?,
            lrs: Lrs::load(WHO, sd, n)?,
        };
        Ok(())
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
        let mut sd = new_state("ExponentialLR");
        put(&mut sd, "gamma", self.gamma);
        put(&mut sd, "last_epoch", self.last_epoch);
        put_list(&mut sd, "base_lrs", &self.base_lrs);
        self.lrs.save(&mut sd);
        sd
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        const WHO: &str = "ExponentialLR::load_state_dict";
        check_kind(sd, WHO, "ExponentialLR")?;
        let n = self.lrs.len();
        *self = ExponentialLR {
            gamma: get(sd, WHO, "gamma")?,
            last_epoch: get_count(sd, WHO, "last_epoch")?,
            base_lrs: get_f64s(sd, WHO, "base_lrs", n)?,
            lrs: Lrs::load(WHO, sd, n)?,
        };
        Ok(())
    }
}

//! [`CosineAnnealingLR`].

use std::f64::consts::PI;

use wgrad_autograd::Result;

use super::reflect::{self, Field, Reflect};
use super::{LrScheduler, Lrs};
use crate::optim::Optimizer;
use crate::state::StateDict;

/// Cosine annealing from each base lr down to `eta_min` over `t_max` steps:
/// PyTorch's `torch.optim.lr_scheduler.CosineAnnealingLR`, value for value.
///
/// The lr follows `eta_min + (base - eta_min) * (1 + cos(pi * t / t_max)) / 2`
/// (SGDR without restarts: past `t_max` it rises again, with period
/// `2 * t_max`, as PyTorch's does). Like PyTorch's `get_last_lr()`, the value
/// comes from its recursive update of the group's current lr,
/// `eta_min + (lr - eta_min) * (1 + cos(pi t / T)) / (1 + cos(pi (t-1) / T))`
/// (an additive step where that would divide by zero), so an lr changed from
/// outside is carried on. Left alone, it equals the closed form above to
/// about 1e-13 relative.
#[derive(Clone, Debug)]
pub struct CosineAnnealingLR {
    t_max: usize,
    eta_min: f64,
    last_epoch: usize,
    base_lrs: Vec<f64>,
    lrs: Lrs,
}

impl CosineAnnealingLR {
    /// Anneals the optimizer's current lrs to `eta_min` over `t_max` steps.
    ///
    /// # Panics
    /// If `t_max` is 0.
    pub fn new(opt: &mut dyn Optimizer, t_max: usize, eta_min: f64) -> Self {
        assert!(t_max > 0, "CosineAnnealingLR::new: t_max must be positive");
        let lrs = Lrs::from_opt(opt);
        CosineAnnealingLR { t_max, eta_min, last_epoch: 0, base_lrs: lrs.current("CosineAnnealingLR::new", opt), lrs }
    }

    /// Steps taken since construction (PyTorch's `last_epoch`).
    pub fn last_epoch(&self) -> usize {
        self.last_epoch
    }

    /// The closed-form lrs at step `t` (PyTorch's `_get_closed_form_lr`),
    /// which the recursive values match while nothing else touches the lrs.
    pub fn closed_form(&self, t: usize) -> Vec<f64> {
        let c = 1.0 + (PI * t as f64 / self.t_max as f64).cos();
        self.base_lrs.iter().map(|&b| self.eta_min + (b - self.eta_min) * c / 2.0).collect()
    }
}

impl LrScheduler for CosineAnnealingLR {
    fn step(&mut self, opt: &mut dyn Optimizer) {
        self.last_epoch += 1;
        let (t, tm, eta) = (self.last_epoch as i64, self.t_max as i64, self.eta_min);
        let cur = self.lrs.current("CosineAnnealingLR::step", opt);
        // Same expressions, in the same order, as PyTorch's get_lr, so the
        // f64 results agree to the last bit.
        let lrs = if (t - 1 - tm).rem_euclid(2 * tm) == 0 {
            let c = 1.0 - (PI / tm as f64).cos();
            cur.iter().zip(&self.base_lrs).map(|(&l, &b)| l + (b - eta) * c / 2.0).collect()
        } else {
            let r = (1.0 + (PI * t as f64 / tm as f64).cos()) / (1.0 + (PI * (t - 1) as f64 / tm as f64).cos());
            cur.iter().map(|&l| r * (l - eta) + eta).collect()
        };
        self.lrs.write("CosineAnnealingLR::step", opt, lrs);
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

impl Reflect for CosineAnnealingLR {
    const KIND: &'static str = "CosineAnnealingLR";
    const WHO: &'static str = "CosineAnnealingLR::load_state_dict";

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("t_max", Field::Count(&mut self.t_max)),
            ("eta_min", Field::F64(&mut self.eta_min)),
            ("last_epoch", Field::Count(&mut self.last_epoch)),
            ("base_lrs", Field::PerGroup(&mut self.base_lrs)),
            ("last_lr", Field::Lrs(&mut self.lrs)),
        ]
    }

    fn check(&mut self) -> std::result::Result<(), String> {
        if self.t_max == 0 {
            return Err("t_max must be positive".into());
        }
        Ok(())
    }
}

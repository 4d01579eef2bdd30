//! [`OneCycleLR`].

use std::f64::consts::PI;

use wgrad_autograd::Result;

use super::reflect::{self, choice, Field, Reflect};
use super::{per_group, LrScheduler, Lrs};
use crate::optim::Optimizer;
use crate::state::StateDict;

/// How [`OneCycleLR`] moves between two lrs within a phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Anneal {
    /// Half a cosine (PyTorch's `anneal_strategy="cos"`, the default).
    #[default]
    Cos,
    /// A straight line (`anneal_strategy="linear"`).
    Linear,
}

/// The options of [`OneCycleLR`], PyTorch's defaults by `Default`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycleOptions {
    /// Fraction of the steps spent raising the lr (0.3).
    pub pct_start: f64,
    /// Curve within each phase (cosine).
    pub anneal: Anneal,
    /// The starting lr is `max_lr / div_factor` (25).
    pub div_factor: f64,
    /// The final lr is `max_lr / div_factor / final_div_factor` (1e4).
    pub final_div_factor: f64,
    /// Three phases (up, back down to the starting lr, then down to the
    /// final lr) as in the original paper, instead of fastai's two (false).
    pub three_phase: bool,
}

impl Default for OneCycleOptions {
    fn default() -> Self {
        OneCycleOptions {
            pct_start: 0.3,
            anneal: Anneal::Cos,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    }
}

/// Which lr a phase starts or ends at.
#[derive(Clone, Copy, Debug)]
enum Level {
    Initial,
    Max,
    Min,
}

/// The 1cycle policy: from `max_lr / div_factor` up to `max_lr` over
/// `pct_start` of `total_steps`, then down to
/// `max_lr / div_factor / final_div_factor`, stepped once per batch:
/// PyTorch's `torch.optim.lr_scheduler.OneCycleLR`, value for value.
///
/// Differences: the lr alone is cycled — [`ParamGroup`](crate::optim::ParamGroup)
/// has no momentum to cycle, so this matches PyTorch's
/// `cycle_momentum=False`; stepping past `total_steps` holds the final lr
/// where PyTorch raises a `ValueError`; a zero-length phase (e.g.
/// `pct_start * total_steps == 1`), where PyTorch divides by zero, counts as
/// already complete. Like PyTorch it ignores the optimizer's current lrs.
#[derive(Clone, Debug)]
pub struct OneCycleLR {
    max_lrs: Vec<f64>,
    total_steps: usize,
    options: OneCycleOptions,
    last_epoch: usize,
    lrs: Lrs,
}

impl OneCycleLR {
    /// A cycle of `total_steps` steps peaking at `max_lr` (one value for all
    /// groups, or one per group); writes the starting lr
    /// `max_lr / div_factor` into the optimizer.
    ///
    /// # Panics
    /// If `total_steps` is 0, `pct_start` is outside `[0, 1]`, or `max_lr`
    /// has neither 1 nor one-per-group values.
    pub fn new(opt: &mut dyn Optimizer, max_lr: &[f64], total_steps: usize, options: OneCycleOptions) -> Self {
        const WHO: &str = "OneCycleLR::new";
        assert!(total_steps > 0, "{WHO}: total_steps must be positive");
        assert!(
            (0.0..=1.0).contains(&options.pct_start),
            "{WHO}: pct_start must lie in [0, 1], got {}",
            options.pct_start
        );
        let lrs = Lrs::from_opt(opt);
        let max_lrs = per_group(WHO, "max_lr", max_lr, lrs.len());
        let mut s = OneCycleLR { max_lrs, total_steps, options, last_epoch: 0, lrs };
        let first = s.lrs_at(0);
        s.lrs.write(WHO, opt, first);
        s
    }

    /// Steps taken since construction (PyTorch's `last_epoch`).
    pub fn last_epoch(&self) -> usize {
        self.last_epoch
    }

    /// The phases as (last step, start level, end level), PyTorch's
    /// `_schedule_phases`.
    fn phases(&self) -> Vec<(f64, Level, Level)> {
        let (p, n) = (self.options.pct_start, self.total_steps as f64);
        if self.options.three_phase {
            vec![
                (p * n - 1.0, Level::Initial, Level::Max),
                (2.0 * p * n - 2.0, Level::Max, Level::Initial),
                (n - 1.0, Level::Initial, Level::Min),
            ]
        } else {
            vec![(p * n - 1.0, Level::Initial, Level::Max), (n - 1.0, Level::Max, Level::Min)]
        }
    }

    fn level(&self, level: Level, max_lr: f64) -> f64 {
        let initial = max_lr / self.options.div_factor;
        match level {
            Level::Initial => initial,
            Level::Max => max_lr,
            Level::Min => initial / self.options.final_div_factor,
        }
    }

    fn anneal(&self, start: f64, end: f64, pct: f64) -> f64 {
        match self.options.anneal {
            Anneal::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }

    fn lrs_at(&self, step: usize) -> Vec<f64> {
        if step > self.total_steps {
            return self.max_lrs.iter().map(|&m| self.level(Level::Min, m)).collect();
        }
        let t = step as f64;
        let phases = self.phases();
        // The first phase not yet over, the last one at the latest.
        let (mut k, mut start) = (0, 0.0);
        while k + 1 < phases.len() && t > phases[k].0 {
            start = phases[k].0;
            k += 1;
        }
        let (end, from, to) = phases[k];
        let span = end - start;
        let pct = if span == 0.0 { 1.0 } else { (t - start) / span };
        self.max_lrs.iter().map(|&m| self.anneal(self.level(from, m), self.level(to, m), pct)).collect()
    }
}

impl LrScheduler for OneCycleLR {
    fn step(&mut self, opt: &mut dyn Optimizer) {
        self.last_epoch += 1;
        let lrs = self.lrs_at(self.last_epoch);
        self.lrs.write("OneCycleLR::step", opt, lrs);
    }

    fn last_lr(&self) -> Vec<f32> {
        self.lrs.last()
    }

    /// `max_lr / div_factor`, PyTorch's `initial_lr`.
    fn base_lrs(&self) -> Vec<f64> {
        self.max_lrs.iter().map(|&m| self.level(Level::Initial, m)).collect()
    }

    fn state_dict(&self) -> StateDict {
        reflect::save(self)
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        reflect::load(self, sd)
    }
}

choice!(Anneal { Cos => "cos", Linear => "linear" });

impl Reflect for OneCycleLR {
    const KIND: &'static str = "OneCycleLR";
    const WHO: &'static str = "OneCycleLR::load_state_dict";

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        let o = &mut self.options;
        vec![
            ("max_lrs", Field::PerGroup(&mut self.max_lrs)),
            ("total_steps", Field::Count(&mut self.total_steps)),
            ("pct_start", Field::F64(&mut o.pct_start)),
            ("anneal", Field::Choice(&mut o.anneal)),
            ("div_factor", Field::F64(&mut o.div_factor)),
            ("final_div_factor", Field::F64(&mut o.final_div_factor)),
            ("three_phase", Field::Bool(&mut o.three_phase)),
            ("last_epoch", Field::Count(&mut self.last_epoch)),
            ("last_lr", Field::Lrs(&mut self.lrs)),
        ]
    }

    fn check(&mut self) -> std::result::Result<(), String> {
        let (total, pct) = (self.total_steps, self.options.pct_start);
        if total == 0 || !(0.0..=1.0).contains(&pct) {
            return Err(format!("bad total_steps {total} or pct_start {pct}"));
        }
        Ok(())
    }
}

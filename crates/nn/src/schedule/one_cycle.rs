//! [`OneCycleLR`].

use std::f64::consts::PI;

use wgrad_autograd::{Error, Result};

use super::{check_kind, get, get_count, get_f64s, new_state, per_group, put, put_list, LrScheduler, Lrs};
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
        let o = &self.options;
        let mut sd = new_state("OneCycleLR");
        put_list(&mut sd, "max_lrs", &self.max_lrs);
        put(&mut sd, "total_steps", self.total_steps);
        put(&mut sd, "pct_start", o.pct_start);
        sd.meta.insert("anneal".into(), if o.anneal == Anneal::Cos { "cos" } else { "linear" }.into());
        put(&mut sd, "div_factor", o.div_factor);
        put(&mut sd, "final_div_factor", o.final_div_factor);
        put(&mut sd, "three_phase", o.three_phase);
        put(&mut sd, "last_epoch", self.last_epoch);
        self.lrs.save(&mut sd);
        sd
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        const WHO: &str = "OneCycleLR::load_state_dict";
        check_kind(sd, WHO, "OneCycleLR")?;
        let anneal = match get::<String>(sd, WHO, "anneal")?.as_str() {
            "cos" => Anneal::Cos,
            "linear" => Anneal::Linear,
            other => return Err(Error::invalid(WHO, format!("unknown anneal strategy {other:?}"))),
        };
        let total_steps = get_count(sd, WHO, "total_steps")?;
        let pct_start: f64 = get(sd, WHO, "pct_start")?;
        if total_steps == 0 || !(0.0..=1.0).contains(&pct_start) {
            return Err(Error::invalid(WHO, format!("bad total_steps {total_steps} or pct_start {pct_start}")));
        }
        let n = self.lrs.len();
        *self = OneCycleLR {
            max_lrs: get_f64s(sd, WHO, "max_lrs", n)?,
            total_steps,
            options: OneCycleOptions {
                pct_start,
                anneal,
                div_factor: get(sd, WHO, "div_factor")?,
                final_div_factor: get(sd, WHO, "final_div_factor")?,
                three_phase: get(sd, WHO, "three_phase")?,
            },
            last_epoch: get_count(sd, WHO, "last_epoch")?,
            lrs: Lrs::load(WHO, sd, n)?,
        };
        Ok(())
    }
}

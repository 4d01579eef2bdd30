//! [`ReduceLROnPlateau`].

use wgrad_autograd::Result;

use super::reflect::{self, choice, Field, Reflect};
use super::{per_group, LrScheduler, Lrs};
use crate::optim::Optimizer;
use crate::state::StateDict;

/// Whether a lower or a higher metric is an improvement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PlateauMode {
    /// Lower is better (losses); PyTorch's default.
    #[default]
    Min,
    /// Higher is better (accuracies).
    Max,
}

/// How far a metric must beat the best value so far to count as better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ThresholdMode {
    /// Better than `best * (1 ∓ threshold)`; PyTorch's default.
    #[default]
    Rel,
    /// Better than `best ∓ threshold`.
    Abs,
}

/// The options of [`ReduceLROnPlateau`], PyTorch's defaults by `Default`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlateauOptions {
    /// Whether lower or higher is better (`Min`).
    pub mode: PlateauMode,
    /// `new_lr = lr * factor` on a reduction; must be below 1 (0.1).
    pub factor: f64,
    /// Bad steps tolerated; the lr drops on the `patience + 1`-th (10).
    pub patience: usize,
    /// Margin an improvement must clear (1e-4).
    pub threshold: f64,
    /// Whether `threshold` is relative or absolute (`Rel`).
    pub threshold_mode: ThresholdMode,
    /// Steps after a reduction during which bad steps are not counted (0).
    pub cooldown: usize,
    /// Lower bound of the lr: one value for all groups or one per group (`[0]`).
    pub min_lr: Vec<f64>,
    /// A reduction smaller than this is skipped (1e-8).
    pub eps: f64,
}

impl Default for PlateauOptions {
    fn default() -> Self {
        PlateauOptions {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: vec![0.0],
            eps: 1e-8,
        }
    }
}

/// Multiplies the lr by `factor` once a metric has stopped improving for
/// more than `patience` steps: PyTorch's
/// `torch.optim.lr_scheduler.ReduceLROnPlateau`, decision for decision
/// (threshold modes, cooldown, per-group `min_lr`, `eps`).
///
/// Drive it with [`step_with`](LrScheduler::step_with) and the validation
/// metric. Its plain [`step`](LrScheduler::step) is a no-op: without a metric
/// there is nothing to judge (PyTorch's `step()` raises a `TypeError`), and a
/// no-op keeps it usable inside [`LinearWarmup`](super::LinearWarmup), whose
/// warm-up steps never reach it. Like PyTorch it reduces the group's current
/// lr, so an lr set from outside is reduced from there.
#[derive(Clone, Debug)]
pub struct ReduceLROnPlateau {
    options: PlateauOptions,
    last_epoch: usize,
    best: f64,
    num_bad_epochs: usize,
    cooldown_counter: usize,
    base_lrs: Vec<f64>,
    lrs: Lrs,
}

impl ReduceLROnPlateau {
    /// Watches a metric for the optimizer's groups; leaves their lrs as they are.
    ///
    /// # Panics
    /// If `factor >= 1` or `min_lr` has neither 1 nor one-per-group values.
    pub fn new(opt: &mut dyn Optimizer, mut options: PlateauOptions) -> Self {
        const WHO: &str = "ReduceLROnPlateau::new";
        assert!(options.factor < 1.0, "{WHO}: factor must be < 1, got {}", options.factor);
        let lrs = Lrs::from_opt(opt);
        options.min_lr = per_group(WHO, "min_lr", &options.min_lr, lrs.len());
        let (best, base_lrs) = (worst(options.mode), lrs.current(WHO, opt));
        ReduceLROnPlateau { options, last_epoch: 0, best, num_bad_epochs: 0, cooldown_counter: 0, base_lrs, lrs }
    }

    /// Metrics seen so far (PyTorch's `last_epoch`).
    pub fn last_epoch(&self) -> usize {
        self.last_epoch
    }

    /// The best metric so far (`+inf` in min mode, `-inf` in max mode before any).
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Bad steps since the last improvement or reduction.
    pub fn num_bad_epochs(&self) -> usize {
        self.num_bad_epochs
    }

    /// Steps of cooldown left.
    pub fn cooldown_counter(&self) -> usize {
        self.cooldown_counter
    }

    fn is_better(&self, a: f64) -> bool {
        let (best, th) = (self.best, self.options.threshold);
        match (self.options.mode, self.options.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < best * (1.0 - th),
            (PlateauMode::Min, ThresholdMode::Abs) => a < best - th,
            (PlateauMode::Max, ThresholdMode::Rel) => a > best * (th + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => a > best + th,
        }
    }
}

fn worst(mode: PlateauMode) -> f64 {
    match mode {
        PlateauMode::Min => f64::INFINITY,
        PlateauMode::Max => f64::NEG_INFINITY,
    }
}

impl LrScheduler for ReduceLROnPlateau {
    /// Does nothing: a plateau needs a metric, see [`step_with`](Self::step_with).
    fn step(&mut self, _opt: &mut dyn Optimizer) {}

    /// Judges `metric` (NaN is never an improvement) and reduces the lrs
    /// after more than `patience` bad steps outside cooldown.
    fn step_with(&mut self, metric: f32, opt: &mut dyn Optimizer) {
        const WHO: &str = "ReduceLROnPlateau::step_with";
        let current = metric as f64;
        self.last_epoch += 1;
        if self.is_better(current) {
            self.best = current;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        let mut lrs = self.lrs.current(WHO, opt);
        if self.num_bad_epochs > self.options.patience {
            for (lr, &min) in lrs.iter_mut().zip(&self.options.min_lr) {
                let reduced = *lr * self.options.factor;
                // Python's max(reduced, min): the first unless the second is larger.
                let new = if min > reduced { min } else { reduced };
                if *lr - new > self.options.eps {
                    *lr = new;
                }
            }
            self.cooldown_counter = self.options.cooldown;
            self.num_bad_epochs = 0;
        }
        self.lrs.write(WHO, opt, lrs);
    }

    fn uses_metric(&self) -> bool {
        true
    }

    fn last_lr(&self) -> Vec<f32> {
        self.lrs.last()
    }

    /// The groups' lrs at construction (PyTorch's class keeps none).
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

choice!(PlateauMode { Min => "min", Max => "max" });
choice!(ThresholdMode { Rel => "rel", Abs => "abs" });

impl Reflect for ReduceLROnPlateau {
    const KIND: &'static str = "ReduceLROnPlateau";
    const WHO: &'static str = "ReduceLROnPlateau::load_state_dict";

    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        let o = &mut self.options;
        vec![
            ("mode", Field::Choice(&mut o.mode)),
            ("factor", Field::F64(&mut o.factor)),
            ("patience", Field::Count(&mut o.patience)),
            ("threshold", Field::F64(&mut o.threshold)),
            ("threshold_mode", Field::Choice(&mut o.threshold_mode)),
            ("cooldown", Field::Count(&mut o.cooldown)),
            ("min_lrs", Field::PerGroup(&mut o.min_lr)),
            ("eps", Field::F64(&mut o.eps)),
            ("last_epoch", Field::Count(&mut self.last_epoch)),
            ("best", Field::F64(&mut self.best)),
            ("num_bad_epochs", Field::Count(&mut self.num_bad_epochs)),
            ("cooldown_counter", Field::Count(&mut self.cooldown_counter)),
            ("base_lrs", Field::PerGroup(&mut self.base_lrs)),
            ("last_lr", Field::Lrs(&mut self.lrs)),
        ]
    }

    fn check(&mut self) -> std::result::Result<(), String> {
        if self.options.factor >= 1.0 {
            return Err(format!("factor must be < 1, got {}", self.options.factor));
        }
        Ok(())
    }
}

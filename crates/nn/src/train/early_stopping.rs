//! [`EarlyStopping`]: stop when a monitored metric has not improved for
//! `patience` epochs, and restore the parameters of the *best* epoch rather
//! than keep those of the last (which are, by construction, `patience`
//! epochs past the best and usually worse).

use wgrad_autograd::{Error, Result, Tensor};

use crate::module::Module;
use crate::state::StateDict;

/// Whether smaller (a loss) or larger (an accuracy) values are better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

/// What [`EarlyStopping::step`] decided for an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepOutcome {
    /// The metric improved on the best so far by more than `min_delta` (the
    /// model's state was copied).
    pub improved: bool,
    /// Training should stop now.
    pub stop: bool,
}

/// Early stopping with best-checkpoint restore, like Keras'
/// `EarlyStopping(restore_best_weights=True)` and Lightning's callback.
///
/// An epoch improves when `metric < best - min_delta` ([`Mode::Min`]) or
/// `metric > best + min_delta` ([`Mode::Max`]); the first finite metric
/// always does. A NaN metric never improves. After `patience` epochs in a row
/// without improvement, [`step`](Self::step) says stop (`patience` 0 stops
/// at the first epoch that does not improve).
///
/// On each improvement the model's named parameters and buffers are copied
/// on their device (no read back) into a [`StateDict`];
/// [`restore_best`](Self::restore_best) writes that copy back.
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    /// Epochs without improvement tolerated before stopping.
    pub patience: usize,
    /// The smallest change that counts as an improvement.
    pub min_delta: f64,
    /// Which direction is better.
    pub mode: Mode,
    best: Option<f64>,
    best_epoch: Option<usize>,
    bad_epochs: usize,
    stopped_epoch: Option<usize>,
    best_state: Option<StateDict>,
}

/// The model's parameters and buffers under their PyTorch names.
fn named_state(model: &dyn Module) -> Vec<(String, Tensor)> {
    // Visited directly: `ModuleExt` is implemented for `dyn Module + 'static` only.
    let mut v = Vec::new();
    model.visit_parameters("", &mut |n, t| v.push((n.to_string(), t.clone())));
    model.visit_buffers("", &mut |n, t| v.push((n.to_string(), t.clone())));
    v
}

/// A device copy of every named parameter and buffer of `model`, detached
/// from it: later updates of the model do not change the copy.
pub fn snapshot(model: &dyn Module) -> StateDict {
    let mut s = StateDict::new();
    for (name, t) in named_state(model) {
        s.tensors.insert(name, Tensor::deep_copy(&t));
    }
    s
}

/// Writes `state`'s tensors into `model`'s parameters and buffers of the same
/// names (fresh device copies, so `state` stays independent of the model).
///
/// # Errors
/// When a model tensor is missing from `state` or has another shape or dtype;
/// nothing is written then.
pub fn restore(model: &dyn Module, state: &StateDict) -> Result<()> {
    let targets = named_state(model);
    for (name, t) in &targets {
        let saved = state
            .tensors
            .get(name)
            .ok_or_else(|| Error::invalid("restore", format!("no saved tensor for `{name}`")))?;
        if saved.shape() != t.shape() || saved.dtype() != t.dtype() {
            return Err(Error::invalid(
                "restore",
                format!(
                    "`{name}`: saved {:?} {:?} vs model {:?} {:?}",
                    saved.shape(),
                    saved.dtype(),
                    t.shape(),
                    t.dtype()
                ),
            ));
        }
    }
    for (name, t) in &targets {
        t.assign(&Tensor::deep_copy(&state.tensors[name]));
    }
    Ok(())
}

impl EarlyStopping {
    /// Monitors a metric with the given patience, minimum change and direction.
    ///
    /// # Panics
    /// When `min_delta` is negative or not finite.
    pub fn new(patience: usize, min_delta: f64, mode: Mode) -> Self {
        assert!(min_delta.is_finite() && min_delta >= 0.0, "EarlyStopping: min_delta must be >= 0, got {min_delta}");
        EarlyStopping {
            patience,
            min_delta,
            mode,
            best: None,
            best_epoch: None,
            bad_epochs: 0,
            stopped_epoch: None,
            best_state: None,
        }
    }

    fn improves(&self, metric: f64) -> bool {
        if metric.is_nan() {
            return false;
        }
        match (self.best, self.mode) {
            (None, _) => true,
            (Some(b), Mode::Min) => metric < b - self.min_delta,
            (Some(b), Mode::Max) => metric > b + self.min_delta,
        }
    }

    /// Records epoch `epoch`'s metric: on improvement copies `model`'s state;
    /// says whether to stop. Calling it again after a stop keeps saying stop.
    pub fn step(&mut self, epoch: usize, metric: f64, model: &dyn Module) -> StepOutcome {
        let improved = self.improves(metric);
        if improved {
            self.best = Some(metric);
            self.best_epoch = Some(epoch);
            self.bad_epochs = 0;
            self.best_state = Some(snapshot(model));
        } else {
            self.bad_epochs += 1;
        }
        if self.stopped_epoch.is_none() && !improved && self.bad_epochs >= self.patience {
            self.stopped_epoch = Some(epoch);
        }
        StepOutcome { improved, stop: self.stopped_epoch.is_some() }
    }

    /// True once the patience ran out.
    pub fn should_stop(&self) -> bool {
        self.stopped_epoch.is_some()
    }

    /// The epoch at which [`step`](Self::step) first said stop.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }

    /// The best metric so far.
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// The epoch of the best metric.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }

    /// Epochs since the last improvement.
    pub fn bad_epochs(&self) -> usize {
        self.bad_epochs
    }

    /// The saved state of the best epoch.
    pub fn best_state(&self) -> Option<&StateDict> {
        self.best_state.as_ref()
    }

    /// Writes the best epoch's parameters and buffers back into `model`;
    /// returns the best epoch, or `None` (model untouched) when no epoch has
    /// improved yet.
    ///
    /// # Errors
    /// When `model`'s tensors do not match the saved ones by name, shape and dtype.
    pub fn restore_best(&self, model: &dyn Module) -> Result<Option<usize>> {
        match &self.best_state {
            Some(s) => restore(model, s).map(|_| self.best_epoch),
            None => Ok(None),
        }
    }

    /// The tracker's state for a checkpoint: counters as metadata
    /// (`best`, `best_epoch`, `bad_epochs`, `stopped_epoch`, hyper-parameters)
    /// and the best tensors under `best.<name>`.
    pub fn state_dict(&self) -> StateDict {
        let mut s = StateDict::new();
        let opt = |v: Option<String>| v.unwrap_or_default();
        s.meta.insert("patience".into(), self.patience.to_string());
        s.meta.insert("min_delta".into(), self.min_delta.to_string());
        s.meta.insert("mode".into(), if self.mode == Mode::Min { "min" } else { "max" }.into());
        s.meta.insert("best".into(), opt(self.best.map(|b| b.to_string())));
        s.meta.insert("best_epoch".into(), opt(self.best_epoch.map(|e| e.to_string())));
        s.meta.insert("bad_epochs".into(), self.bad_epochs.to_string());
        s.meta.insert("stopped_epoch".into(), opt(self.stopped_epoch.map(|e| e.to_string())));
        if let Some(best) = &self.best_state {
            s.extend_prefixed("best", best.clone());
        }
        s
    }

    /// Restores a state saved by [`state_dict`](Self::state_dict), including
    /// the hyper-parameters.
    ///
    /// # Errors
    /// On a missing or malformed entry.
    pub fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        fn get<'a>(s: &'a StateDict, k: &str) -> Result<&'a str> {
            s.meta
                .get(k)
                .map(String::as_str)
                .ok_or_else(|| Error::invalid("EarlyStopping::load_state_dict", format!("missing `{k}`")))
        }
        fn parse<T: std::str::FromStr>(k: &str, v: &str) -> Result<T> {
            v.parse().map_err(|_| Error::invalid("EarlyStopping::load_state_dict", format!("bad `{k}` value `{v}`")))
        }
        fn optional<T: std::str::FromStr>(s: &StateDict, k: &str) -> Result<Option<T>> {
            let v = get(s, k)?;
            if v.is_empty() {
                Ok(None)
            } else {
                parse(k, v).map(Some)
            }
        }
        let mode = match get(state, "mode")? {
            "min" => Mode::Min,
            "max" => Mode::Max,
            m => return Err(Error::invalid("EarlyStopping::load_state_dict", format!("bad `mode` value `{m}`"))),
        };
        let best_state = state.sub("best");
        *self = EarlyStopping {
            patience: parse("patience", get(state, "patience")?)?,
            min_delta: parse("min_delta", get(state, "min_delta")?)?,
            mode,
            best: optional(state, "best")?,
            best_epoch: optional(state, "best_epoch")?,
            bad_epochs: parse("bad_epochs", get(state, "bad_epochs")?)?,
            stopped_epoch: optional(state, "stopped_epoch")?,
            best_state: (!best_state.tensors.is_empty()).then_some(best_state),
        };
        Ok(())
    }
}

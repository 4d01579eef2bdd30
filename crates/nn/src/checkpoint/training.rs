//! [`TrainingCheckpoint`]: everything needed to resume a run exactly, in one file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wgrad_autograd::{Device, Generator};

use super::format::{load_state_dict, save_state_dict};
use super::module_io::{load_module_state_from, module_state_dict};
use super::CheckpointError;
use crate::amp::GradScaler;
use crate::module::{module_generators, set_module_generators, Module};
use crate::optim::Optimizer;
use crate::state::StateDict;

/// Value of `wgrad.kind` that marks a training checkpoint.
const KIND: &str = "training_checkpoint";
/// Layout version this code writes and reads.
const VERSION: &str = "1";

/// A whole training run's state, saved as ONE safetensors file: model,
/// optimizer and scheduler states, the mixed-precision grad scaler's state
/// when there is one, named random generators, epoch, step and the metrics
/// history.
///
/// The file's keys are listed in the [module docs](super); the model part is
/// an ordinary PyTorch state dict under the prefix `model.`.
///
/// ```no_run
/// # use wgrad_nn::checkpoint::TrainingCheckpoint;
/// # fn demo(model: &dyn wgrad_nn::Module, opt: &mut dyn wgrad_nn::optim::Optimizer,
/// #         gen: &mut wgrad_autograd::Generator, dev: &wgrad_autograd::Device)
/// #         -> Result<(), wgrad_nn::checkpoint::CheckpointError> {
/// // Saving, at the end of a step:
/// let mut ck = TrainingCheckpoint::capture(model, opt);
/// ck.epoch = 3;
/// ck.step = 1200;
/// ck.rng.insert("data".into(), *gen);
/// ck.save("run/last.safetensors")?;
///
/// // Resuming, into a freshly built model and optimizer:
/// let ck = TrainingCheckpoint::load("run/last.safetensors", dev)?;
/// ck.restore(model, opt)?;
/// *gen = ck.rng["data"];
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct TrainingCheckpoint {
    /// The model's parameters and buffers (PyTorch names).
    pub model: StateDict,
    /// [`Optimizer::state_dict`].
    pub optimizer: StateDict,
    /// The LR scheduler's state (empty when there is none).
    pub scheduler: StateDict,
    /// [`GradScaler::state_dict`] (empty when the run has no enabled
    /// scaler); set by [`with_scaler`](Self::with_scaler).
    pub scaler: StateDict,
    /// Random generators by name (data shuffling, augmentation, …); a
    /// generator's whole state is its seed and offset.
    /// [`capture`](Self::capture) adds the model's own streams (dropout
    /// masks) as `model.<module path>`, and [`restore`](Self::restore) puts
    /// them back.
    pub rng: BTreeMap<String, Generator>,
    /// Other tensors a run carries from step to step (a truncated-BPTT
    /// hidden state), saved under the prefix `extra.`; empty when unused.
    pub extra: StateDict,
    /// Epochs completed.
    pub epoch: u64,
    /// Optimizer steps taken.
    pub step: u64,
    /// The metrics history as JSON (opaque here; empty when unused).
    pub metrics: String,
    /// The file this was loaded from, named in [`restore`](Self::restore)'s
    /// errors; `None` for a checkpoint built in memory.
    pub origin: Option<PathBuf>,
}

impl TrainingCheckpoint {
    /// The model's and optimizer's current states; set the other fields
    /// before saving.
    ///
    /// The tensors share the live device buffers: save before the next
    /// optimizer step (an optimizer updating its state in place would
    /// otherwise change what is saved).
    pub fn capture(model: &dyn Module, optimizer: &dyn Optimizer) -> Self {
        let mut optim = optimizer.state_dict();
        for t in optim.tensors.values_mut() {
            *t = t.detach();
        }
        let rng = module_generators(model).into_iter().map(|(path, g)| (model_stream_key(&path), g)).collect();
        TrainingCheckpoint { model: module_state_dict(model), optimizer: optim, rng, ..Default::default() }
    }

    /// Adds `scaler`'s state (scale, growth tracker and factors), for runs
    /// with mixed-precision loss scaling: `TrainingCheckpoint::capture(model,
    /// opt).with_scaler(&scaler)`. A disabled scaler adds nothing, as its
    /// PyTorch state dict is empty.
    pub fn with_scaler(mut self, scaler: &GradScaler) -> Self {
        self.scaler = scaler.state_dict();
        self
    }

    /// Everything as one state dict with the file's keys.
    pub fn to_state_dict(&self) -> StateDict {
        let mut s = StateDict::new();
        s.meta.insert("wgrad.kind".into(), KIND.into());
        s.meta.insert("wgrad.version".into(), VERSION.into());
        s.meta.insert("epoch".into(), self.epoch.to_string());
        s.meta.insert("step".into(), self.step.to_string());
        s.meta.insert("metrics".into(), self.metrics.clone());
        for (name, g) in &self.rng {
            s.meta.insert(format!("rng.{name}.seed"), g.seed.to_string());
            s.meta.insert(format!("rng.{name}.offset"), g.offset.to_string());
        }
        s.extend_prefixed("model", self.model.clone());
        s.extend_prefixed("optim", self.optimizer.clone());
        s.extend_prefixed("sched", self.scheduler.clone());
        s.extend_prefixed("scaler", self.scaler.clone());
        s.extend_prefixed("extra", self.extra.clone());
        s
    }

    /// Reads back [`to_state_dict`](Self::to_state_dict)'s layout; `source`
    /// names the file in errors.
    pub fn from_state_dict(state: &StateDict, source: &Path) -> Result<Self, CheckpointError> {
        let meta = |k: &str| state.meta.get(k).map(String::as_str);
        match meta("wgrad.kind") {
            Some(KIND) => {}
            other => {
                return Err(CheckpointError::invalid(
                    source,
                    format!("not a wgrad training checkpoint (metadata wgrad.kind is {other:?}, not {KIND:?})"),
                ))
            }
        }
        if meta("wgrad.version") != Some(VERSION) {
            return Err(CheckpointError::invalid(
                source,
                format!(
                    "training-checkpoint version {:?} is not the one this wgrad reads ({VERSION})",
                    meta("wgrad.version")
                ),
            ));
        }
        let number = |k: &str| -> Result<u64, CheckpointError> {
            let v = meta(k).ok_or_else(|| CheckpointError::invalid(source, format!("metadata {k:?} is missing")))?;
            v.parse().map_err(|_| CheckpointError::invalid(source, format!("metadata {k:?} = {v:?} is not a u64")))
        };
        let mut rng = BTreeMap::new();
        for key in state.meta.keys() {
            if let Some(name) = key.strip_prefix("rng.").and_then(|k| k.strip_suffix(".seed")) {
                let g = Generator { seed: number(key)?, offset: number(&format!("rng.{name}.offset"))? };
                rng.insert(name.to_string(), g);
            }
        }
        Ok(TrainingCheckpoint {
            model: state.sub("model"),
            optimizer: state.sub("optim"),
            scheduler: state.sub("sched"),
            scaler: state.sub("scaler"),
            extra: state.sub("extra"),
            rng,
            epoch: number("epoch")?,
            step: number("step")?,
            metrics: meta("metrics").unwrap_or_default().to_string(),
            origin: Some(source.to_path_buf()),
        })
    }

    /// Saves to `path` atomically (see the module docs).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), CheckpointError> {
        save_state_dict(path, &self.to_state_dict())
    }

    /// Loads a checkpoint written by [`save`](Self::save), its tensors on `device`.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self, CheckpointError> {
        let path = path.as_ref();
        Self::from_state_dict(&load_state_dict(path, device)?, path)
    }

    /// Writes the model state into `model` (strictly: every name and shape
    /// must match), the model's random streams (those `capture` saved) and
    /// the optimizer state into `optimizer`. The scheduler state, the other
    /// generators, epoch and step are fields for the caller to use.
    pub fn restore(&self, model: &dyn Module, optimizer: &mut dyn Optimizer) -> Result<(), CheckpointError> {
        let source = self.origin.clone().unwrap_or_else(|| PathBuf::from("<training checkpoint>"));
        load_module_state_from(&source, model, &self.model, true)?;
        let streams = module_generators(model)
            .into_keys()
            .filter_map(|path| self.rng.get(&model_stream_key(&path)).map(|g| (path, *g)))
            .collect();
        set_module_generators(model, &streams);
        optimizer.load_state_dict(&self.optimizer).map_err(|e| CheckpointError::State {
            context: format!("{}: restoring the optimizer", source.display()),
            source: e,
        })
    }

    /// Writes the saved grad-scaler state into `scaler` (see
    /// [`with_scaler`](Self::with_scaler)); call it next to
    /// [`restore`](Self::restore) when resuming a mixed-precision run.
    ///
    /// A disabled `scaler` and a checkpoint without scaler state go together
    /// (nothing to do); any other mismatch is an error: a checkpoint without
    /// scaler state for an enabled scaler (resuming would silently restart
    /// the scale), or scaler state for a disabled one.
    pub fn restore_scaler(&self, scaler: &mut GradScaler) -> Result<(), CheckpointError> {
        let saved = !(self.scaler.meta.is_empty() && self.scaler.tensors.is_empty());
        if !scaler.is_enabled() && !saved {
            return Ok(());
        }
        // A run resumed with mixed precision switched the other way: say so
        // in the examples' terms, not only in GradScaler's.
        let hint = match (saved, scaler.is_enabled()) {
            (true, false) => {
                " (the run was saved with loss scaling, as mixed-precision training uses: resume it with \
                 mixed precision on, e.g. `--amp` in the examples, `Trainer::amp(true)`)"
            }
            (false, true) => {
                " (the run was saved without loss scaling: resume it with mixed precision off, e.g. without \
                 `--amp`)"
            }
            _ => "",
        };
        let source = self.origin.clone().unwrap_or_else(|| PathBuf::from("<training checkpoint>"));
        scaler.load_state_dict(&self.scaler).map_err(|e| CheckpointError::State {
            context: format!("{}: restoring the grad scaler{hint}", source.display()),
            source: e,
        })
    }
}

/// The `rng` key of the model stream at module path `path`.
fn model_stream_key(path: &str) -> String {
    if path.is_empty() {
        "model".into()
    } else {
        format!("model.{path}")
    }
}

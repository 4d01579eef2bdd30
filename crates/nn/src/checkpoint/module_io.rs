//! A model's parameters and buffers to and from state dicts and files,
//! matched by PyTorch state-dict names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use wgrad_autograd::Tensor;

use super::format::{read_file, save_state_dict, HostData, HostTensor};
use super::CheckpointError;
use crate::module::Module;
use crate::state::StateDict;

/// What a [`load_module`] / [`load_module_state`] did, by tensor name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model tensors that received a value, in the model's order.
    pub loaded: Vec<String>,
    /// Model tensors the source lacks (left unchanged).
    pub missing: Vec<String>,
    /// Source tensors the model lacks (ignored).
    pub unexpected: Vec<String>,
    /// `(name, model shape, source shape)` of tensors whose shapes differ (left unchanged).
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl LoadReport {
    /// True when every model tensor was loaded and the source had nothing else.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
}

/// The model's parameters then buffers under their PyTorch state-dict names
/// (`model.state_dict()`), detached from the graph.
///
/// The tensors share the model's current device buffers, which updates
/// replace rather than overwrite, so the result is a snapshot of this moment.
pub fn module_state_dict(module: &dyn Module) -> StateDict {
    let mut state = StateDict::new();
    for (name, t) in named_tensors(module) {
        state.tensors.insert(name, t.detach());
    }
    state
}

/// Parameters then buffers, as `ModuleExt::named_parameters` /
/// `named_buffers` list them (written out because `ModuleExt` is only
/// implemented for `dyn Module + 'static`).
fn named_tensors(module: &dyn Module) -> Vec<(String, Tensor)> {
    let mut v = Vec::new();
    module.visit_parameters("", &mut |n, t| v.push((n.to_string(), t.clone())));
    module.visit_buffers("", &mut |n, t| v.push((n.to_string(), t.clone())));
    v
}

/// Saves the model's parameters and buffers to `path` (atomically), under
/// PyTorch's names, with `format = pt` metadata, so that
/// `model.load_state_dict(safetensors.torch.load_file(path))` loads it.
pub fn save_module(path: impl AsRef<Path>, module: &dyn Module) -> Result<(), CheckpointError> {
    let mut state = module_state_dict(module);
    state.meta.insert("format".into(), "pt".into());
    save_state_dict(path, &state)
}

/// Loads a file written by [`save_module`] or PyTorch
/// (`safetensors.torch.save_file(model.state_dict(), path)`) into the model's
/// existing tensors, converting dtypes to the model's (see the module docs).
///
/// With `strict`, any model tensor missing from the file, file tensor the
/// model lacks or shape difference is an error naming the file and listing
/// every offending tensor. Without it, what matches is loaded and the rest
/// reported. Names and shapes are checked and every value converted before
/// the first tensor changes, so an error leaves the model untouched.
pub fn load_module(path: impl AsRef<Path>, module: &dyn Module, strict: bool) -> Result<LoadReport, CheckpointError> {
    let path = path.as_ref();
    let file = read_file(path)?;
    apply(path, module, &file.tensors, strict)
}

/// [`load_module`] from a state already in memory (e.g. the `model.` part of
/// a [`TrainingCheckpoint`](super::TrainingCheckpoint)); values are copied,
/// so the model never shares buffers with `state`. Errors name the source
/// as `<state dict>`.
pub fn load_module_state(module: &dyn Module, state: &StateDict, strict: bool) -> Result<LoadReport, CheckpointError> {
    load_module_state_from(Path::new("<state dict>"), module, state, strict)
}

pub(crate) fn load_module_state_from(
    source: &Path,
    module: &dyn Module,
    state: &StateDict,
    strict: bool,
) -> Result<LoadReport, CheckpointError> {
    apply(source, module, &state.tensors, strict)
}

/// A value that can be loaded into a model tensor.
trait Source {
    fn shape(&self) -> Vec<usize>;
    /// A new tensor with `like`'s dtype and device holding this value.
    fn materialize(&self, like: &Tensor) -> Result<Tensor, String>;
}

impl Source for HostTensor {
    fn shape(&self) -> Vec<usize> {
        self.shape.clone()
    }
    fn materialize(&self, like: &Tensor) -> Result<Tensor, String> {
        self.data.upload(&self.shape, like.dtype(), &like.device())
    }
}

impl Source for Tensor {
    fn shape(&self) -> Vec<usize> {
        Tensor::shape(self).to_vec()
    }
    fn materialize(&self, like: &Tensor) -> Result<Tensor, String> {
        // A copy on the device when nothing needs converting.
        if self.dtype() == like.dtype() && self.device() == like.device() {
            return self.try_deep_copy().map_err(|e| e.to_string());
        }
        let host = HostData::read(self).map_err(|e| e.to_string())?;
        host.upload(&Tensor::shape(self), like.dtype(), &like.device())
    }
}

fn apply<S: Source>(
    source: &Path,
    module: &dyn Module,
    entries: &BTreeMap<String, S>,
    strict: bool,
) -> Result<LoadReport, CheckpointError> {
    let targets = named_tensors(module);
    let names: BTreeSet<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
    let mut report = LoadReport::default();
    let mut matched = Vec::new();
    for (name, t) in &targets {
        match entries.get(name) {
            None => report.missing.push(name.clone()),
            Some(e) if e.shape() != t.shape() => report.mismatched.push((name.clone(), t.shape().to_vec(), e.shape())),
            Some(e) => matched.push((name, t, e)),
        }
    }
    report.unexpected = entries.keys().filter(|k| !names.contains(k.as_str())).cloned().collect();
    if strict && !report.is_exact() {
        return Err(CheckpointError::Mismatch {
            path: source.to_path_buf(),
            missing: report.missing,
            unexpected: report.unexpected,
            mismatched: report.mismatched,
        });
    }
    let mut values = Vec::with_capacity(matched.len());
    for (name, t, e) in matched {
        let v = e.materialize(t).map_err(|msg| CheckpointError::invalid(source, format!("tensor {name:?}: {msg}")))?;
        values.push((name, t, v));
    }
    wgrad_autograd::no_grad(|| {
        for (name, t, v) in values {
            t.assign(&v);
            report.loaded.push(name.clone());
        }
    });
    Ok(report)
}

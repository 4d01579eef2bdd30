//! [`StateDict`]: named tensors plus string metadata, the unit that models,
//! optimizers, schedulers and training checkpoints save and load.

use std::collections::BTreeMap;

use wgrad_autograd::Tensor;

/// Named tensors (PyTorch state-dict names) and string metadata (step
/// counters, hyper-parameters, RNG state, JSON blobs). Maps are ordered so
/// files are written deterministically.
#[derive(Clone, Debug, Default)]
pub struct StateDict {
    /// Tensor entries by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// Metadata entries by name.
    pub meta: BTreeMap<String, String>,
}

impl StateDict {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every entry of `other` under `prefix.` (used to nest model,
    /// optimizer and scheduler states in one checkpoint).
    pub fn extend_prefixed(&mut self, prefix: &str, other: StateDict) {
        for (k, v) in other.tensors {
            self.tensors.insert(format!("{prefix}.{k}"), v);
        }
        for (k, v) in other.meta {
            self.meta.insert(format!("{prefix}.{k}"), v);
        }
    }

    /// The entries under `prefix.`, with the prefix removed.
    pub fn sub(&self, prefix: &str) -> StateDict {
        let p = format!("{prefix}.");
        StateDict {
            tensors: self
                .tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&p).map(|s| (s.to_string(), v.clone())))
                .collect(),
            meta: self
                .meta
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(&p).map(|s| (s.to_string(), v.clone())))
                .collect(),
        }
    }
}

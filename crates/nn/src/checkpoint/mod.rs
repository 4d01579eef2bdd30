//! Checkpoints in the [safetensors] format, readable and writable by PyTorch
//! (`safetensors.torch.load_file` / `save_file`) and by every other
//! safetensors implementation.
//!
//! | what | functions |
//! |---|---|
//! | any [`StateDict`](crate::state::StateDict) | [`save_state_dict`], [`load_state_dict`], [`write_temp`] + [`PendingSave::commit`] |
//! | a model's parameters and buffers | [`save_module`], [`load_module`], [`module_state_dict`], [`load_module_state`] |
//! | a whole training run | [`TrainingCheckpoint`] (model, optimizer, scheduler, optional grad scaler, RNGs, epoch, step, metrics) |
//!
//! # File layout
//!
//! A safetensors file is an 8-byte little-endian header length `n`, `n` bytes
//! of JSON header (tensor name → dtype, shape, byte range; plus an optional
//! `__metadata__` string map), then the raw little-endian tensor bytes.
//! wgrad writes the header with the `safetensors` crate's own serializer,
//! orders tensors as that crate does (descending element alignment, then
//! name) and pads the header with spaces to a multiple of 8 bytes, so every
//! tensor starts aligned to its element size.
//!
//! # Dtypes
//!
//! | wgrad [`DType`](wgrad_autograd::DType) | written as | loaded from |
//! |---|---|---|
//! | `F32` | `F32` | `F32`; also `F64`, `BF16` (converted to f32), `I64`, `I32` (converted to f32, exact up to 2²⁴) |
//! | `F16` | `F16` | `F16` |
//! | `U32` | `U32` | `U32` |
//!
//! PyTorch keeps some state as int64 (BatchNorm's `num_batches_tracked`)
//! where wgrad keeps an f32 scalar, hence the conversions. [`load_state_dict`]
//! turns every converted dtype into `F32`; [`load_module`] instead converts
//! each entry to the dtype of the model tensor it lands in (like PyTorch's
//! `copy_`), so an int64 entry loads exactly into a `U32` tensor when its
//! values fit. Other dtypes (bool, 8-bit, complex, …) are an
//! [`UnsupportedDtype`](CheckpointError::UnsupportedDtype) error naming the
//! tensor. wgrad writes `num_batches_tracked` as `F32`; PyTorch's
//! `load_state_dict` casts it back to int64.
//!
//! # Metadata keys
//!
//! [`StateDict::meta`](crate::state::StateDict::meta) is the file's `__metadata__` map, unchanged.
//! [`save_module`] adds `format = pt`, the marker Hugging Face loaders check.
//! A [`TrainingCheckpoint`] file holds `wgrad.kind = training_checkpoint`,
//! `wgrad.version = 1`, `epoch`, `step`, `metrics` (JSON),
//! `rng.<name>.seed` / `rng.<name>.offset` (decimal u64) and the model,
//! optimizer and scheduler states under the prefixes `model.`, `optim.` and
//! `sched.` (tensors and metadata alike); `model.`-stripped, the model part
//! is an ordinary PyTorch state dict. A run with mixed-precision loss
//! scaling adds the [`GradScaler`](crate::amp::GradScaler)'s state under
//! `scaler.` (PyTorch's keys: `scaler.scale`, `scaler.growth_factor`,
//! `scaler.backoff_factor`, `scaler.growth_interval`,
//! `scaler._growth_tracker`); files without it are still version 1.
//! [`Trainer`](crate::train::Trainer) runs add, under `extra.`, the
//! early-stopping tracker (`extra.early_stopping.`) and
//! `extra.trainer.batch`, the batches of the current epoch already trained
//! (nonzero in a checkpoint saved on a stop request mid-epoch), and each
//! state registered with [`Trainer::state`](crate::train::Trainer::state)
//! under `extra.<name>.` (the text examples: `extra.tbptt.h`/`.c`, the
//! LSTM's carried state; `extra.batches.state`, the GPT's batch stream).
//!
//! # Atomic writes
//!
//! Saving never truncates the target: the file is written to a uniquely
//! named temporary `.<name>.<pid>.<n>.tmp` in the same directory, flushed
//! to disk (`fsync`), then renamed over the target, and on Unix the
//! directory is synced so the rename itself survives a power cut. A crash at
//! any point leaves either the previous checkpoint or the new one, never a
//! mix; at worst a stale `.tmp` file remains, and the next save to the same
//! path deletes it (a temporary of a process that no longer runs). Tensors are read back from the
//! device one at a time while writing, so saving needs host memory for one
//! tensor, not the whole model.
//!
//! # Loading
//!
//! Files are read whole into memory (no `mmap`, no `unsafe`) and validated
//! before anything is uploaded: a file that is not safetensors (bad header
//! length, header not JSON, inconsistent offsets), a truncated file or an
//! unsupported dtype is an error naming the path and the problem.
//! [`load_module`] checks every name and shape before it changes any tensor,
//! so a failed strict load leaves the model as it was.
//!
//! # Errors
//!
//! Everything returns [`CheckpointError`] (a `thiserror` enum, so `?` turns it
//! into `anyhow::Error` or any `Box<dyn Error>`). It also converts into
//! [`std::io::Error`] (I/O failures keep their kind, format problems become
//! `InvalidData`) and into [`wgrad_autograd::Error`] (as `Error::Invalid` with
//! op `checkpoint`), and a [`wgrad_autograd::Error`] from a device or an
//! optimizer's `load_state_dict` converts into it.
//!
//! [safetensors]: https://github.com/huggingface/safetensors

mod format;
mod module_io;
mod training;

use std::path::{Path, PathBuf};

pub use format::{load_state_dict, save_state_dict, write_temp, PendingSave};
pub use module_io::{load_module, load_module_state, module_state_dict, save_module, LoadReport};
pub use training::TrainingCheckpoint;

/// What can go wrong reading or writing a checkpoint; every variant that
/// concerns a file names it.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The operating system refused a read, write, sync or rename.
    #[error("checkpoint {}: I/O error while {action}: {source}", path.display())]
    Io {
        /// The file (or its temporary / directory) involved.
        path: PathBuf,
        /// What was being done, e.g. `reading` or `renaming the temporary file`.
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes do not form a safetensors file (header length, header JSON,
    /// offsets, trailing bytes).
    #[error("{} is not a valid safetensors file: {reason}", path.display())]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The header is intact but the tensor data ends early.
    #[error(
        "{} is truncated: its header describes {expected} bytes of tensor data but only {actual} are present",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Data bytes the header describes.
        expected: usize,
        /// Data bytes present.
        actual: usize,
    },
    /// A tensor has a dtype wgrad cannot hold or convert.
    #[error(
        "{}: tensor {tensor:?} has dtype {dtype}, which wgrad cannot load (supported: F32, F16, U32; F64, BF16, I64, I32 are converted)",
        path.display()
    )]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The dtype as the header spells it.
        dtype: String,
    },
    /// A strict load found names or shapes that do not match the model.
    #[error("{}: state does not match the model: {}", path.display(), describe_mismatch(missing, unexpected, mismatched))]
    Mismatch {
        /// The file (or `<state dict>` for an in-memory state).
        path: PathBuf,
        /// Model tensors the file lacks.
        missing: Vec<String>,
        /// File tensors the model lacks.
        unexpected: Vec<String>,
        /// `(name, model shape, file shape)` of tensors whose shapes differ.
        mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    },
    /// The file is valid safetensors but its content is not what was asked
    /// for (a missing checkpoint key, a malformed number, an impossible
    /// dtype conversion).
    #[error("{}: {msg}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The device (upload, readback) or a component restoring its state
    /// (an optimizer's `load_state_dict`) failed.
    #[error("{context}: {source}")]
    State {
        /// The file or component involved.
        context: String,
        /// The underlying error.
        #[source]
        source: wgrad_autograd::Error,
    },
}

impl CheckpointError {
    /// The file this error concerns, when it concerns one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            CheckpointError::Io { path, .. }
            | CheckpointError::NotSafetensors { path, .. }
            | CheckpointError::Truncated { path, .. }
            | CheckpointError::UnsupportedDtype { path, .. }
            | CheckpointError::Mismatch { path, .. }
            | CheckpointError::Invalid { path, .. } => Some(path),
            CheckpointError::State { .. } => None,
        }
    }

    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        CheckpointError::Io { path: path.to_path_buf(), action, source }
    }

    pub(crate) fn invalid(path: &Path, msg: impl Into<String>) -> Self {
        CheckpointError::Invalid { path: path.to_path_buf(), msg: msg.into() }
    }
}

/// Lists every offending tensor, so one failed load shows all there is to fix.
fn describe_mismatch(
    missing: &[String],
    unexpected: &[String],
    mismatched: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("{} missing from the file ({})", missing.len(), missing.join(", ")));
    }
    if !unexpected.is_empty() {
        parts.push(format!("{} unexpected in the file ({})", unexpected.len(), unexpected.join(", ")));
    }
    if !mismatched.is_empty() {
        let list: Vec<String> =
            mismatched.iter().map(|(n, want, got)| format!("{n}: model {want:?} vs file {got:?}")).collect();
        parts.push(format!("{} with another shape ({})", mismatched.len(), list.join(", ")));
    }
    parts.join("; ")
}

impl From<wgrad_autograd::Error> for CheckpointError {
    fn from(source: wgrad_autograd::Error) -> Self {
        CheckpointError::State { context: "checkpoint state".into(), source }
    }
}

impl From<CheckpointError> for std::io::Error {
    fn from(e: CheckpointError) -> Self {
        let kind = match &e {
            CheckpointError::Io { source, .. } => source.kind(),
            CheckpointError::State { .. } => std::io::ErrorKind::Other,
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, e)
    }
}

impl From<CheckpointError> for wgrad_autograd::Error {
    fn from(e: CheckpointError) -> Self {
        wgrad_autograd::Error::invalid("checkpoint", e.to_string())
    }
}

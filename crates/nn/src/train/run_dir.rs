//! The files of one training run, and the end-of-epoch bookkeeping every
//! training loop repeats: evaluate, record, checkpoint, save the best model,
//! write the history and its curves — and read them back for `--resume`.

use std::io;
use std::path::{Path, PathBuf};

use wgrad_autograd::{no_grad, Device, Tensor};

use crate::checkpoint::{save_module, TrainingCheckpoint};
use crate::module::Module;
use crate::train::{Accuracy, EpochRecord, History, RunningMean};

/// A run folder: `last.safetensors` (the resumable training state),
/// `best.safetensors` (the model with the lowest validation loss, a PyTorch
/// state dict), `history.csv` and `curves.png`.
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    /// Creates the folder if needed.
    pub fn create(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
        Ok(RunDir { dir })
    }

    /// The folder (TensorBoard's event files go here too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `last.safetensors`.
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }
    /// `best.safetensors`.
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }
    /// `history.csv`.
    pub fn history_csv(&self) -> PathBuf {
        self.dir.join("history.csv")
    }
    /// `curves.png`.
    pub fn curves_png(&self) -> PathBuf {
        self.dir.join("curves.png")
    }

    /// Ends an epoch: appends `record` to `history`, saves the checkpoint as
    /// `last`, the model as `best` when its validation loss is the lowest so
    /// far, and rewrites the CSV and the curves. Returns whether it was the best.
    pub fn finish_epoch(
        &self,
        history: &mut History,
        record: EpochRecord,
        checkpoint: &TrainingCheckpoint,
        model: &dyn Module,
    ) -> io::Result<bool> {
        let is_best = history.best_epoch().is_none_or(|b| record.val_loss < b.val_loss);
        history.push(record);
        checkpoint.save(self.last())?;
        if is_best {
            save_module(self.best(), model)?;
        }
        history.save_csv(self.history_csv())?;
        history.save_png(self.curves_png(), 1200, 500)?;
        Ok(is_best)
    }

    /// For `--resume`: the last checkpoint and the history up to its epoch
    /// (empty for a run stopped in its first epoch, which wrote no history).
    pub fn resume(&self, device: &Device) -> io::Result<(TrainingCheckpoint, History)> {
        let ck = TrainingCheckpoint::load(self.last(), device)?;
        let csv = self.history_csv();
        if ck.epoch == 0 && !csv.exists() {
            return Ok((ck, History::new()));
        }
        let mut history =
            History::load_csv(&csv).map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", csv.display())))?;
        history.truncate_to_epoch(ck.epoch as usize);
        Ok((ck, history))
    }
}

/// Mean loss and accuracy of `model` over `(inputs, labels, len)` batches,
/// under `no_grad`; the metrics accumulate on the device and are read once.
/// The caller puts the model in evaluation mode.
pub fn evaluate<E>(
    model: &dyn Module,
    batches: impl Iterator<Item = Result<(Tensor, Tensor, usize), E>>,
    loss: impl Fn(&Tensor, &Tensor) -> Tensor,
) -> Result<(f64, f64), E> {
    let (mut l, mut acc) = (RunningMean::new(), Accuracy::new());
    no_grad(|| {
        for batch in batches {
            let (x, y, n) = batch?;
            let logits = model.forward(&x);
            l.update_tensor(&loss(&logits, &y), n);
            acc.update(&logits, &y);
        }
        Ok((l.mean(), acc.value()))
    })
}

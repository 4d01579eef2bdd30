//! Ctrl-C in the middle of an epoch, for the epoch-based examples (mnist,
//! cifar10_resnet, vae). A checkpoint counts optimizer steps, so one saved
//! mid-epoch holds more steps than its completed epochs do, and `--resume`
//! skips the batches of the next epoch that were already trained
//! (`DataLoader::epoch_from`). Included with `#[path]` next to `control.rs`.

use std::path::Path;

use anyhow::{Context, Result};
use wgrad::nn::checkpoint::TrainingCheckpoint;

/// Where a resumed run starts, printed: (the epoch, the batches of it
/// already trained), with `per_epoch` batches an epoch.
pub fn resume_point(ck: &TrainingCheckpoint, per_epoch: usize) -> (usize, usize) {
    let start = ck.epoch as usize;
    let skip = (ck.step as usize).saturating_sub(start * per_epoch).min(per_epoch);
    match skip {
        0 => println!("resumed after epoch {start}"),
        _ => println!("resumed in epoch {} after batch {skip} (its train metrics cover the rest)", start + 1),
    }
    (start, skip)
}

/// Saves `ck`, taken after `done` batches of epoch `epoch` (0-based; its
/// `epoch` and `step` already say so), at `path`, and prints how to resume.
pub fn save_on_stop(ck: &TrainingCheckpoint, path: &Path, epoch: usize, done: usize) -> Result<()> {
    ck.save(path).context("saving the checkpoint after Ctrl-C")?;
    println!("{}", crate::control::resume_hint(&format!("batch {done} of epoch {}", epoch + 1)));
    Ok(())
}

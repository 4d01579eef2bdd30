//! The command-line flags of a training run that the examples driving a
//! `Trainer` share (mnist, cifar10_resnet, char_lstm, tiny_gpt), and the
//! Trainer options they set. Included with `#[path]` by the classifiers,
//! through `common/mod.rs` by the text examples.

use wgrad::nn::train::{Progress, Trainer};
use wgrad::nn::ModuleExt;

/// `--resume`, `--quiet`, `--no-tensorboard`, `--profile`, `--amp`
/// (flattened into each example's flags).
#[derive(clap::Args, Debug)]
pub struct RunFlags {
    /// Continue from <out-dir>/last.safetensors (the run's latest
    /// checkpoint; Ctrl-C writes one too).
    #[arg(long)]
    pub resume: bool,
    /// No progress bar (summary lines only).
    #[arg(long)]
    pub quiet: bool,
    /// Do not write TensorBoard event files into the run folder (written by
    /// default: `tensorboard --logdir runs`; docs/interop.md).
    #[arg(long)]
    pub no_tensorboard: bool,
    /// Print the step profiler's table for one training step and write its trace.
    #[arg(long)]
    pub profile: bool,
    /// Mixed precision: autocast the forward pass (f16 matmul and
    /// convolution operands, f32 sums) and scale the loss with a GradScaler.
    #[arg(long)]
    pub amp: bool,
}

impl RunFlags {
    /// `trainer` with these flags' options: autocast and loss scaling,
    /// TensorBoard, resuming, and a progress display over `epochs` (no bar
    /// under `--quiet`). `--profile` is the caller's: its profiler module
    /// sits where each example includes it.
    pub fn apply<'a, M: ModuleExt + ?Sized, B>(&self, trainer: Trainer<'a, M, B>, epochs: usize) -> Trainer<'a, M, B> {
        let progress = Progress::new(epochs);
        let progress = if self.quiet { progress.without_bar() } else { progress };
        trainer.amp(self.amp).tensorboard(!self.no_tensorboard).resume(self.resume).progress(progress)
    }
}

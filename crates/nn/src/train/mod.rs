//! The training-loop toolkit used by the examples: metrics accumulated on the
//! device ([`metrics`]), a progress bar and per-epoch summary lines
//! ([`progress`]), the run's history as CSV and a PNG of its curves
//! ([`history`]), early stopping that restores the best parameters
//! ([`early_stopping`]), one-seed reproducibility ([`seed`]), truncated
//! back-propagation through time for recurrent models ([`tbptt`]), state a
//! loop carries between steps into checkpoints ([`stateful`]), and
//! [`Trainer`] ([`trainer`]), which puts them together into one `fit` call.
//! The loop below is what the Trainer runs; writing it by hand stays fully
//! supported (for anything the Trainer does not offer).
//!
//! A typical epoch:
//!
//! ```text
//! progress.start_epoch(epoch, train_len);
//! for (x, y) in batches {
//!     let logits = model.forward(&x);
//!     let loss = logits.cross_entropy(&y, &CrossEntropyOptions::default());
//!     loss.backward();
//!     opt.step();
//!     opt.zero_grad();
//!     train_loss.update_tensor(&loss, n);   // stays on the device
//!     train_acc.update(&logits, &y);        // stays on the device
//!     progress.advance(n as u64);
//! }
//! let record = EpochRecord { epoch, train_loss: train_loss.mean(), train_acc: Some(train_acc.value()), .. };
//! progress.finish_epoch(&record);
//! history.push(record);
//! if stopper.step(epoch, val_loss, &model).stop { stopper.restore_best(&model)?; break; }
//! ```

mod compiled_step;
pub mod data_parallel;
pub mod early_stopping;
pub mod history;
pub mod metrics;
mod png_image;
pub mod progress;
pub mod run_dir;
pub mod seed;
pub mod stateful;
pub mod tbptt;
pub mod tensorboard;
pub mod trainer;

pub use data_parallel::DataParallel;
pub use early_stopping::{EarlyStopping, Mode, StepOutcome};
pub use history::{EpochRecord, History};
pub use metrics::{
    Accuracy, ClassificationReport, ConfusionMatrix, Metric, MetricBatch, Perplexity, PrfScores, RunningMean, TopK,
    TopKAccuracy,
};
pub use progress::{EpochSummary, Progress};
pub use run_dir::{evaluate, RunDir};

pub use seed::{seed_everything, Seeds};
pub use stateful::Stateful;
pub use tbptt::TruncatedBptt;
pub use trainer::{BatchEnd, BoxError, Evaluation, Every, Fit, FitError, Outcome, StepOutput, Trainer};

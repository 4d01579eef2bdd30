//! [`Trainer`]: the training loop every example repeats, as one builder —
//! epochs, an LR schedule stepped per batch or per epoch, gradient
//! accumulation, gradient clipping, mixed precision (autocast and a
//! [`GradScaler`]), evaluation and early stopping, a checkpoint per epoch
//! and on a stop request with exact `resume`, and the progress bar and
//! history CSV/PNG of the rest of this toolkit.
//!
//! It is a convenience, not a framework: it calls the same public pieces a
//! hand-written loop calls (the module docs of [`train`](super) show one),
//! in the same order, so a Trainer run equals that loop bit for bit (the
//! tests check it) and anything it does not offer is a hand-written loop
//! away.
//!
//! One optimizer step, with `k` = [`accumulate`](Trainer::accumulate):
//!
//! ```text
//! for each of k micro-batches:            // the step closure, under autocast with amp
//!     loss = step(model, batch).loss
//!     scaler.scale(loss / k).backward()   // `/ k` only when k > 1
//! scaler.unscale_(opt); clip_grad_norm_   // with clip_grad_norm
//! scaler.step(opt); scaler.update(); opt.zero_grad()
//! schedule.step(opt)                      // with a per-step schedule
//! ```
//!
//! A disabled scaler (no `amp`) passes everything through, so without
//! `amp` this is `loss.backward(); opt.step()`. At the end of an epoch a
//! short last group (`k` not dividing the batches) still steps, its
//! gradients scaled by `1 / k` too, as the usual PyTorch loop does.
//!
//! # Checkpoints and resume
//!
//! With a [`run_dir`](Trainer::run_dir), every epoch ends with
//! [`RunDir::finish_epoch`] (`last.safetensors`, `best.safetensors`,
//! `history.csv`, `curves.png`). The checkpoint holds the model (and its
//! dropout streams), optimizer, scheduler (`sched.`), grad scaler
//! (`scaler.`), early-stopping tracker (`extra.early_stopping.`), completed
//! epochs, optimizer steps, and the batches of the current epoch already
//! trained (`extra.trainer.batch`, for a checkpoint written on a stop).
//! Data order comes from the data closure, which is given the epoch: a
//! deterministic loader (`DataLoader::epoch_from`) makes resuming exact.
//!
//! A stop request ([`stop_flag`](Trainer::stop_flag), set by a Ctrl-C
//! handler) is honoured at the end of the next optimizer step: the state is
//! saved as `last.safetensors` and [`fit`](Trainer::fit) returns
//! [`Outcome::Interrupted`]; [`resume`](Trainer::resume) continues at the
//! next batch. (At an epoch's last step the epoch first ends as usual.)
//! The training metrics of a resumed epoch cover its remaining batches.
//!
//! Whatever else the step or data closures carry from batch to batch (a
//! recurrent state, the stream that draws random batches) joins the
//! checkpoint through [`state`](Trainer::state), as `extra.<name>.`.
//!
//! # Runs counted in steps
//!
//! A language model's run is usually a budget of optimizer steps with an
//! evaluation every so many: make an "epoch" that many batches and set
//! [`max_steps`](Trainer::max_steps); the epoch that reaches the budget
//! ends there (evaluated, recorded and checkpointed like any other).

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use wgrad_autograd::{try_run, AutocastGuard, Generator, PendingVec, Tensor};

use super::compiled_step::Compiled;
use super::data_parallel::DataParallel;
use super::tensorboard::{HParam, SummaryWriter};
use super::{
    Accuracy, EarlyStopping, EpochRecord, History, Metric, MetricBatch, Progress, RunDir, RunningMean, Stateful,
};
use crate::amp::{GradScaler, GradScalerOptions};
use crate::checkpoint::{CheckpointError, TrainingCheckpoint};
use crate::module::ModuleExt;
use crate::optim::{clip_grad_norm_, Optimizer};
use crate::schedule::LrScheduler;

/// Any error a data source or an evaluation closure returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why [`Trainer::fit`] failed.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// A device error inside a step or an evaluation (out of memory, a
    /// device limit, an invalid argument), or a saved state that does not
    /// fit the scheduler or the early-stopping tracker.
    #[error("{context}: {source}")]
    Device {
        /// What was running: `the training step`, `the evaluation`, ...
        context: String,
        /// The device's error.
        #[source]
        source: wgrad_autograd::Error,
    },
    /// Saving or restoring a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Writing or reading the run folder failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The data source or the evaluation closure returned an error.
    #[error("{context}: {source}")]
    Other {
        /// What was running.
        context: String,
        /// Its error.
        #[source]
        source: BoxError,
    },
    /// The options contradict each other (`resume` without a run folder, an
    /// optimizer without parameters).
    #[error("Trainer: {0}")]
    Config(String),
}

impl FitError {
    /// Whether the device ran out of memory (or past one of its limits):
    /// the caller can then name the flag that sets the batch size.
    pub fn is_out_of_memory(&self) -> bool {
        matches!(
            self,
            FitError::Device {
                source: wgrad_autograd::Error::OutOfMemory { .. } | wgrad_autograd::Error::LimitExceeded { .. },
                ..
            }
        )
    }

    fn device(context: &str, source: wgrad_autograd::Error) -> Self {
        FitError::Device { context: context.into(), source }
    }
}

/// What the step closure returns for one (micro-)batch.
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// The batch's mean loss (a 0-d tensor that requires grad).
    pub loss: Tensor,
    /// Samples in the batch: the weight of its loss in the epoch's mean.
    pub samples: usize,
    /// Logits and labels, for the epoch's training accuracy.
    pub accuracy: Option<(Tensor, Tensor)>,
}

impl StepOutput {
    /// The loss of a batch of `samples` samples.
    pub fn new(loss: Tensor, samples: usize) -> Self {
        StepOutput { loss, samples, accuracy: None }
    }

    /// Also counts the batch towards the training accuracy (on the device).
    pub fn with_accuracy(mut self, logits: &Tensor, labels: &Tensor) -> Self {
        self.accuracy = Some((logits.detach(), labels.clone()));
        self
    }
}

/// What an [`on_batch_end`](Trainer::on_batch_end) callback sees after
/// every (micro-)batch.
#[non_exhaustive]
pub struct BatchEnd<'p> {
    /// The epoch (from 1).
    pub epoch: usize,
    /// Batches of this epoch trained, this one included (a resumed epoch
    /// counts the skipped ones too).
    pub batch: usize,
    /// Optimizer steps taken in all (a resumed run's included).
    pub steps: u64,
    /// Whether this batch ended an optimizer step (always, without
    /// accumulation).
    pub stepped: bool,
    /// The batch's loss, detached (reading it back costs a sync: do it
    /// every few batches, not every one).
    pub loss: &'p Tensor,
    /// Samples in the batch ([`StepOutput::samples`]).
    pub samples: usize,
    /// The progress display (none when quiet), for a message after the bar
    /// or a line above it.
    pub progress: Option<&'p Progress>,
}

/// What the evaluation closure returns once per epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// The validation loss (early stopping, plateau schedules and the best
    /// checkpoint follow it).
    pub loss: f64,
    /// The validation accuracy, if the task has one.
    pub accuracy: Option<f64>,
}

/// When a [`Trainer`]'s LR schedule steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Every {
    /// After every optimizer step (warm-up, 1cycle).
    Step,
    /// After every epoch, with the validation loss (or the training loss
    /// without evaluation) for metric-driven schedules.
    Epoch,
}

/// How a [`Trainer::fit`] run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// All epochs ran.
    Completed,
    /// Early stopping ended the run after `epoch` (from 1); the model holds
    /// the parameters of `best_epoch` again.
    EarlyStopped {
        /// The last epoch trained.
        epoch: usize,
        /// The epoch whose parameters were restored.
        best_epoch: Option<usize>,
    },
    /// The stop flag ended the run after `batches` batches of `epoch` (from
    /// 1); with a run folder its state is in `last.safetensors`.
    Interrupted {
        /// The epoch that was running.
        epoch: usize,
        /// Its batches trained.
        batches: usize,
    },
}

/// What [`Trainer::fit`] returns.
#[derive(Clone, Debug)]
pub struct Fit {
    /// One record per completed epoch (those of a resumed run's earlier
    /// part included).
    pub history: History,
    /// How the run ended.
    pub outcome: Outcome,
    /// Optimizer steps taken in all (a resumed run's included).
    pub steps: u64,
}

type StepFn<'a, M, B> = Box<dyn FnMut(&M, B) -> StepOutput + 'a>;

/// A Trainer's step: one closure run every time, or two recorded and
/// replayed ([`Trainer::compiled`]).
enum StepKind<'a, M: ?Sized, B> {
    Eager(StepFn<'a, M, B>),
    Compiled(Box<Compiled<'a, M, B>>),
}
type EvalFn<'a, M> = Box<dyn FnMut(&M) -> Result<Evaluation, BoxError> + 'a>;
type AroundFn<'a> = Box<dyn FnMut(&mut dyn FnMut()) + 'a>;
type EpochFn<'a> = Box<dyn FnMut(&EpochRecord) + 'a>;
type BatchFn<'a> = Box<dyn FnMut(&BatchEnd) + 'a>;
/// Names the Trainer's own entries in the checkpoint's `extra` use.
const RESERVED: [&str; 2] = ["trainer", "early_stopping"];

/// A training loop as a builder: the model, the optimizer and a step
/// closure (batch → loss), then options, then [`fit`](Self::fit).
///
/// ```
/// use wgrad_autograd::{Device, Tensor};
/// use wgrad_nn::loss::MSELoss;
/// use wgrad_nn::optim::Sgd;
/// use wgrad_nn::train::{StepOutput, Trainer};
/// use wgrad_nn::{Init, Linear, Module, ModuleExt};
///
/// let dev = Device::cpu();
/// let mut model = Linear::builder(3, 1).build(&mut Init::new(&dev, 0));
/// let mut opt = Sgd::new(model.parameters(), 0.1);
/// let x = Tensor::from_vec(&[1.0, 2.0, 3.0, 0.5, -1.0, 2.0], &[2, 3], &dev);
/// let y = Tensor::from_vec(&[1.0, -1.0], &[2, 1], &dev);
/// let fit = Trainer::new(&mut model, &mut opt, |m: &Linear, (x, y): (Tensor, Tensor)| {
///     StepOutput::new(MSELoss::default().forward(&m.forward(&x), &y), 2)
/// })
/// .epochs(3)
/// .quiet()
/// .fit(1, |_epoch, _skip| [Ok::<_, std::io::Error>((x.clone(), y.clone()))])
/// .unwrap();
/// assert_eq!(fit.history.len(), 3);
/// assert!(fit.history.records[2].train_loss < fit.history.records[0].train_loss);
/// ```
pub struct Trainer<'a, M: ModuleExt + ?Sized, B> {
    model: &'a mut M,
    opt: &'a mut dyn Optimizer,
    step: StepKind<'a, M, B>,
    epochs: usize,
    schedule: Option<(&'a mut dyn LrScheduler, Every)>,
    accumulate: usize,
    clip: Option<f32>,
    autocast: bool,
    scaler: GradScaler,
    eval: Option<EvalFn<'a, M>>,
    early: Option<&'a mut EarlyStopping>,
    run: Option<RunDir>,
    resume: bool,
    stop: Option<&'a AtomicBool>,
    progress: Option<Progress>,
    quiet: bool,
    around: Option<AroundFn<'a>>,
    on_epoch: Option<EpochFn<'a>>,
    on_batch: Option<BatchFn<'a>>,
    rngs: Vec<(String, &'a Cell<Generator>)>,
    states: Vec<(String, &'a RefCell<dyn Stateful + 'a>)>,
    max_steps: Option<u64>,
    samples: u64,
    metrics: Vec<Box<dyn Metric + 'a>>,
    parallel: Option<&'a mut dyn DataParallel>,
    tensorboard: bool,
    events: Option<SummaryWriter>,
    /// Optimizer steps between two `loss/train_step` points.
    loss_every: u64,
    /// The last logged step's loss, on its way to the host.
    pending_loss: Option<(u64, PendingVec)>,
    hparams: Vec<(String, HParam)>,
}

impl<'a, M: ModuleExt + ?Sized, B> Trainer<'a, M, B> {
    /// Trains `model` with `opt`; `step` runs the forward pass of one batch
    /// and returns its loss (the Trainer does backward and the update).
    /// Defaults: 1 epoch, no schedule, no accumulation, clipping, amp,
    /// evaluation, checkpoints or stop flag; a progress bar and summary lines.
    pub fn new(model: &'a mut M, opt: &'a mut dyn Optimizer, step: impl FnMut(&M, B) -> StepOutput + 'a) -> Self {
        Self::with_step(model, opt, StepKind::Eager(Box::new(step)))
    }

    /// A Trainer whose step is recorded once and then replayed without
    /// running its code ([`wgrad_autograd::CompiledStep`], CUDA-graph
    /// style): `inputs` turns a batch into the step's input tensors
    /// (outside the graph: data loading, uploads), `forward` computes the
    /// step's output from them (it must do the same device work every
    /// step: no readback, no host decision on values; dropout is fine when
    /// its generators are the model's, [`random_streams`](crate::random_streams):
    /// a replay draws the masks running the step would have). The
    /// backward and the optimizer's updates are recorded with it (after it
    /// instead with AMP or clipping; eagerly with accumulation). Results
    /// are bit-identical to [`new`](Self::new) with the same closures
    /// composed; on the CPU backend, or with `WGRAD_REPLAY=0`, the step
    /// runs eagerly.
    pub fn compiled(
        model: &'a mut M,
        opt: &'a mut dyn Optimizer,
        inputs: impl FnMut(B) -> Vec<Tensor> + 'a,
        forward: impl Fn(&M, &[Tensor]) -> StepOutput + 'a,
    ) -> Self {
        let c = Compiled::new(Box::new(inputs), Box::new(forward), model.parameters());
        Self::with_step(model, opt, StepKind::Compiled(Box::new(c)))
    }

    fn with_step(model: &'a mut M, opt: &'a mut dyn Optimizer, step: StepKind<'a, M, B>) -> Self {
        Trainer {
            model,
            opt,
            step,
            epochs: 1,
            schedule: None,
            accumulate: 1,
            clip: None,
            autocast: false,
            scaler: GradScaler::with_options(GradScalerOptions::default().enabled(false)),
            eval: None,
            early: None,
            run: None,
            resume: false,
            stop: None,
            progress: None,
            quiet: false,
            around: None,
            on_epoch: None,
            on_batch: None,
            rngs: Vec::new(),
            states: Vec::new(),
            max_steps: None,
            samples: 0,
            metrics: Vec::new(),
            parallel: None,
            tensorboard: true,
            events: None,
            loss_every: 10,
            pending_loss: None,
            hparams: Vec::new(),
        }
    }

    /// Trains as one replica of a data-parallel run
    /// (`wgrad_distributed::DistributedDataParallel`): backward averages
    /// the gradients over the ranks (only every
    /// [`accumulate`](Self::accumulate)-th batch: the others accumulate
    /// locally), each epoch's metrics are those of all ranks' batches,
    /// a stop request on any rank stops every rank at the same step, and
    /// only rank 0 shows progress (counting every rank's samples: give
    /// [`samples_per_epoch`](Self::samples_per_epoch) one rank's) and writes the run folder (every rank
    /// reads it to [`resume`](Self::resume): a shared file system). The
    /// data must give each rank its own shard with the same number of
    /// batches (`DataLoader::shard`). A [`compiled`](Self::compiled) step
    /// runs eagerly under it (the device still replays repeated batches).
    pub fn data_parallel(mut self, parallel: &'a mut dyn DataParallel) -> Self {
        self.parallel = Some(parallel);
        self
    }

    /// Whether to write TensorBoard event files into the run folder
    /// (default true, with a [`run_dir`](Self::run_dir)), all at the step
    /// = optimizer steps so far: each epoch's record
    /// ([`SummaryWriter::add_epoch_record`]: `loss/train`, `loss/val`,
    /// `accuracy/train`, `accuracy/val`, `lr`, `metrics/<name>`, `epoch`)
    /// and every [`tensorboard_loss_every`](Self::tensorboard_loss_every)
    /// steps the batch's loss (`loss/train_step`), so `tensorboard --logdir
    /// runs` shows every run folder below `runs`. A resumed run writes a
    /// new file in the same folder, starting with a restart mark after its
    /// checkpoint's step: TensorBoard drops what a killed run logged after
    /// its last checkpoint, and the curves continue with each step once.
    pub fn tensorboard(mut self, on: bool) -> Self {
        self.tensorboard = on;
        self
    }

    /// Optimizer steps between two `loss/train_step` points (default 10;
    /// 0: none). Each point reads the loss back a step late, without
    /// making the host wait for the device.
    pub fn tensorboard_loss_every(mut self, steps: u64) -> Self {
        self.loss_every = steps;
        self
    }

    /// The run's hyperparameters for TensorBoard's HParams tab: when the
    /// run ends (not when stopped), they are written with its results
    /// (`hparam/best_val_loss` and `hparam/best_val_acc` of the epoch with
    /// the lowest validation loss, `hparam/final_train_loss`), so runs of
    /// different settings can be compared side by side.
    pub fn hparams(mut self, hparams: &[(&str, HParam)]) -> Self {
        self.hparams = hparams.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
        self
    }

    /// The end of a run that was not stopped: the last loss point and the
    /// hyperparameters with the results.
    fn finish_run(&mut self, history: &History) -> Result<(), FitError> {
        self.write_pending_loss()?;
        let Some(tb) = &mut self.events else { return Ok(()) };
        if self.hparams.is_empty() {
            return Ok(());
        }
        let mut results: Vec<(&str, f64)> = Vec::new();
        if let Some(best) = history.best_epoch() {
            results.extend(best.val_loss.map(|v| ("hparam/best_val_loss", v)));
            results.extend(best.val_acc.map(|v| ("hparam/best_val_acc", v)));
        }
        results.extend(history.last().map(|r| ("hparam/final_train_loss", r.train_loss)));
        let hparams: Vec<(&str, HParam)> = self.hparams.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        tb.add_hparams(&hparams, &results)?;
        Ok(tb.flush()?)
    }

    /// Writes the pending `loss/train_step` point, if any (waiting for it).
    fn write_pending_loss(&mut self) -> Result<(), FitError> {
        if let (Some((step, loss)), Some(tb)) = (self.pending_loss.take(), &mut self.events) {
            let v = loss.try_wait().map_err(|e| FitError::device("reading the loss for TensorBoard", e))?;
            tb.add_scalar("loss/train_step", f64::from(v[0]), step)?;
        }
        Ok(())
    }

    /// Whether this process writes files and prints: not a data-parallel
    /// rank other than 0.
    fn is_main(&self) -> bool {
        self.parallel.as_ref().is_none_or(|p| p.rank() == 0)
    }

    /// Whether a stop was requested, on any rank when data-parallel (every
    /// rank asks at the same step, so they all stop there).
    fn stop_requested(&self) -> Result<bool, FitError> {
        let Some(flag) = self.stop else { return Ok(false) };
        let local = flag.load(Ordering::SeqCst);
        match &self.parallel {
            None => Ok(local),
            Some(p) => {
                let all = p.all_gather(&[f64::from(u8::from(local))]).map_err(|source| FitError::Other {
                    context: "agreeing on a stop request across ranks".into(),
                    source,
                })?;
                Ok(all.iter().any(|v| v[0] > 0.0))
            }
        }
    }

    /// Epochs to train in all (a resumed run continues up to it).
    pub fn epochs(mut self, epochs: usize) -> Self {
        self.epochs = epochs;
        self
    }

    /// Steps `schedule` after every optimizer step or every epoch.
    pub fn schedule(mut self, schedule: &'a mut dyn LrScheduler, every: Every) -> Self {
        self.schedule = Some((schedule, every));
        self
    }

    /// Sums the gradients of `k` micro-batches (each loss scaled by `1 / k`)
    /// per optimizer step: the step of one batch `k` times larger.
    ///
    /// # Panics
    /// If `k` is 0.
    pub fn accumulate(mut self, k: usize) -> Self {
        assert!(k > 0, "Trainer::accumulate: k must be at least 1");
        self.accumulate = k;
        self
    }

    /// Clips the global L2 norm of the (unscaled) gradients to `max_norm`
    /// before each optimizer step ([`clip_grad_norm_`]).
    pub fn clip_grad_norm(mut self, max_norm: f32) -> Self {
        self.clip = Some(max_norm);
        self
    }

    /// Mixed precision: the step closure runs under autocast and the loss is
    /// scaled by a default [`GradScaler`] (when `enabled`; else plain f32).
    /// It replaces the scaler: call [`grad_scaler`](Self::grad_scaler) after
    /// it for other scaler options.
    pub fn amp(mut self, enabled: bool) -> Self {
        self.autocast = enabled;
        self.scaler = GradScaler::with_options(GradScalerOptions::default().enabled(enabled));
        self
    }

    /// Uses `scaler` for loss scaling (its options, or a restored state).
    pub fn grad_scaler(mut self, scaler: GradScaler) -> Self {
        self.scaler = scaler;
        self
    }

    /// Runs `eval` (the model in evaluation mode) after every epoch.
    pub fn evaluate(mut self, eval: impl FnMut(&M) -> Result<Evaluation, BoxError> + 'a) -> Self {
        self.eval = Some(Box::new(eval));
        self
    }

    /// Stops when `stopper` says so (fed the validation loss, or the
    /// training loss without evaluation) and restores its best parameters.
    pub fn early_stopping(mut self, stopper: &'a mut EarlyStopping) -> Self {
        self.early = Some(stopper);
        self
    }

    /// Checkpoints, best model, history and curves go to `run`.
    pub fn run_dir(mut self, run: RunDir) -> Self {
        self.run = Some(run);
        self
    }

    /// Continues the run in the run folder (its `last.safetensors` and
    /// history) instead of starting afresh, when `resume` is set.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Ends the run (after saving) at the end of the first optimizer step
    /// that finds `flag` set.
    pub fn stop_flag(mut self, flag: &'a AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Reports through `progress` instead of a default [`Progress`].
    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// No bar and no summary lines.
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// The training samples of one epoch, for the bar's length and ETA.
    pub fn samples_per_epoch(mut self, samples: usize) -> Self {
        self.samples = samples as u64;
        self
    }

    /// Runs every training step (forward, backward and, when due, the
    /// optimizer step) inside `around`, which must call the function it is
    /// given exactly once: to profile or time a step.
    pub fn around_step(mut self, around: impl FnMut(&mut dyn FnMut()) + 'a) -> Self {
        self.around = Some(Box::new(around));
        self
    }

    /// Calls `f` with every epoch's record once it is saved (to print
    /// metrics the record has no column for).
    pub fn on_epoch_end(mut self, f: impl FnMut(&EpochRecord) + 'a) -> Self {
        self.on_epoch = Some(Box::new(f));
        self
    }

    /// Calls `f` after every batch (its optimizer step included, when the
    /// batch ends one): to show the running loss on the bar, count tokens,
    /// log every few steps.
    pub fn on_batch_end(mut self, f: impl FnMut(&BatchEnd) + 'a) -> Self {
        self.on_batch = Some(Box::new(f));
        self
    }

    /// Ends training after `steps` optimizer steps in all (a resumed run's
    /// included): the epoch that reaches them ends early, and is evaluated,
    /// recorded and checkpointed as a whole one (its checkpoint resumes
    /// with the next epoch). With [`epochs`](Self::epochs) too, whichever
    /// comes first ends the run.
    pub fn max_steps(mut self, steps: u64) -> Self {
        self.max_steps = Some(steps);
        self
    }

    /// Saves `state` (something the step or data closure carries from batch
    /// to batch: a recurrent state, the stream that draws the batches) in
    /// checkpoints under `extra.<name>.` and restores it on resume. The
    /// closures share it through the `RefCell`; the Trainer borrows it only
    /// between batches. `name` must be unique, and neither `trainer` nor
    /// `early_stopping` (the Trainer's own entries).
    pub fn state<S: Stateful + 'a>(mut self, name: &str, state: &'a RefCell<S>) -> Self {
        self.states.push((name.to_string(), state));
        self
    }

    /// Saves `generator` (one the step closure draws from, e.g. a VAE's
    /// noise) in checkpoints as `rng.<name>` and restores it on resume.
    pub fn rng(mut self, name: &str, generator: &'a Cell<Generator>) -> Self {
        self.rngs.push((name.to_string(), generator));
        self
    }

    /// Also tracks `metric` over each epoch's training batches: its value
    /// goes into [`EpochRecord::metrics`] under its name, the progress
    /// line and the history CSV (`.metric(TopK::new(5))`). The training
    /// loss and accuracy are the first two metrics, always tracked.
    pub fn metric(mut self, metric: impl Metric + 'a) -> Self {
        self.metrics.push(Box::new(metric));
        self
    }

    /// Trains. `data(epoch, skip)` gives the batches of `epoch` (from 0)
    /// without its first `skip` (nonzero only when resuming mid-epoch);
    /// there are `batches_per_epoch` of them in a whole epoch.
    ///
    /// The phases, each a method below: [resume](Self::resume_run) (or
    /// start), then per epoch [train](Self::train_epoch) (which may stop at
    /// a stop request), [evaluate](Self::evaluate_epoch), and
    /// [end the epoch](Self::end_epoch) (schedule, early stopping, record,
    /// checkpoint), until the epochs or the step budget run out.
    pub fn fit<I, E>(
        mut self,
        batches_per_epoch: usize,
        mut data: impl FnMut(usize, usize) -> I,
    ) -> Result<Fit, FitError>
    where
        I: IntoIterator<Item = Result<B, E>>,
        E: Into<BoxError>,
    {
        for (i, (name, _)) in self.states.iter().enumerate() {
            if RESERVED.contains(&name.as_str()) || self.states[..i].iter().any(|(n, _)| n == name) {
                return Err(FitError::Config(format!("state name {name:?} is reserved or used twice")));
            }
        }
        let params: Vec<Tensor> = self.opt.groups().iter().flat_map(|g| g.params.iter().cloned()).collect();
        let dev = params
            .first()
            .map(|p| p.device())
            .ok_or_else(|| FitError::Config("the optimizer has no parameters".into()))?;
        let (mut history, mut at) = self.resume_run(&dev, batches_per_epoch)?;
        if let (Some(run), true, true) = (&self.run, self.tensorboard, self.is_main()) {
            let mut tb = SummaryWriter::new(run.dir())?;
            if self.resume {
                // Points at steps up to the checkpoint's were written before it.
                tb.add_restart(at.steps + 1, &run.last())?;
            }
            self.events = Some(tb);
        }
        let quiet = self.quiet || !self.is_main();
        self.progress = match (quiet, self.progress.take()) {
            (true, _) => None,
            (false, Some(p)) => Some(p),
            (false, None) => Some(Progress::new(self.epochs)),
        };
        if let (true, Some(p)) = (self.resume, &self.progress) {
            p.println(&match at.batch {
                0 => format!("resumed after epoch {}", at.epoch),
                b => format!("resumed in epoch {} after batch {b} (its train metrics cover the rest)", at.epoch + 1),
            });
        }
        let mut metrics: Vec<Box<dyn Metric + 'a>> = vec![Box::new(RunningMean::new()), Box::new(Accuracy::new())];
        metrics.append(&mut self.metrics);
        self.opt.zero_grad();
        for epoch in at.epoch..self.epochs {
            if self.budget_spent(at.steps) {
                break;
            }
            at.epoch = epoch;
            let skip = std::mem::take(&mut at.batch);
            let batches = data(epoch, skip);
            if let Some(outcome) =
                self.train_epoch(batches, (batches_per_epoch, skip), &params, &mut metrics, &mut at)?
            {
                return Ok(Fit { history, outcome, steps: at.steps });
            }
            self.merge_metrics(&mut metrics)?;
            let val = self.evaluate_epoch()?;
            let values: Vec<(String, Option<f64>)> = metrics.iter().map(|m| (m.name(), m.value())).collect();
            let record = EpochRecord {
                epoch: epoch + 1,
                train_loss: values[0].1.unwrap_or(0.0),
                train_acc: values[1].1,
                val_loss: val.map(|v| v.loss),
                val_acc: val.and_then(|v| v.accuracy),
                lr: self.opt.groups()[0].lr as f64,
                metrics: values[2..].iter().filter_map(|(n, v)| Some((n.clone(), (*v)?))).collect(),
            };
            if let Some(outcome) = self.end_epoch(&mut history, record, &at)? {
                if let Outcome::EarlyStopped { .. } = outcome {
                    self.finish_run(&history)?;
                }
                return Ok(Fit { history, outcome, steps: at.steps });
            }
            at.batch = 0;
        }
        self.finish_run(&history)?;
        Ok(Fit { history, outcome: Outcome::Completed, steps: at.steps })
    }

    /// Makes every rank's metrics those of all ranks' batches: each is
    /// reset and fed every rank's sums in rank order, so all ranks compute
    /// the same values (and take the same early-stopping decisions).
    fn merge_metrics(&self, metrics: &mut [Box<dyn Metric + 'a>]) -> Result<(), FitError> {
        let Some(p) = &self.parallel else { return Ok(()) };
        for m in metrics.iter_mut() {
            let all = p.all_gather(&m.state()).map_err(|source| FitError::Other {
                context: format!("merging the metric {:?} across ranks", m.name()),
                source,
            })?;
            m.reset();
            all.iter().for_each(|state| m.merge(state));
        }
        Ok(())
    }

    /// Whether the step budget ([`max_steps`](Self::max_steps)) is spent after `steps` steps.
    fn budget_spent(&self, steps: u64) -> bool {
        self.max_steps.is_some_and(|m| steps >= m)
    }

    /// The resume phase: with [`resume`](Self::resume), restores the model,
    /// optimizer, generators, scaler, states, schedule and early stopping
    /// from the run folder's last checkpoint and returns its history and
    /// where it stopped; else an empty history at the start.
    fn resume_run(
        &mut self,
        dev: &wgrad_autograd::Device,
        batches_per_epoch: usize,
    ) -> Result<(History, At), FitError> {
        if !self.resume {
            return Ok((History::new(), At::default()));
        }
        let run = self.run.as_ref().ok_or_else(|| FitError::Config("resume needs a run_dir".into()))?;
        let (ck, history) = run.resume(dev)?;
        ck.restore(self.model.as_dyn(), self.opt)?;
        for (name, g) in &self.rngs {
            match ck.rng.get(name) {
                Some(saved) => g.set(*saved),
                None => return Err(FitError::Config(format!("the checkpoint has no generator {name:?}"))),
            }
        }
        ck.restore_scaler(&mut self.scaler)?;
        for (name, s) in &self.states {
            s.borrow_mut().load_state_dict(&ck.extra.sub(name)).map_err(|source| FitError::Other {
                context: format!("restoring the state {name:?} from the checkpoint"),
                source,
            })?;
        }
        if let Some((s, _)) = &mut self.schedule {
            s.load_state_dict(&ck.scheduler).map_err(|e| FitError::device("restoring the LR schedule", e))?;
        }
        if let Some(es) = &mut self.early {
            es.load_state_dict(&ck.extra.sub("early_stopping"))
                .map_err(|e| FitError::device("restoring early stopping", e))?;
        }
        let epoch = ck.epoch as usize;
        let batch = match ck.extra.meta.get("trainer.batch") {
            Some(b) => b.parse().map_err(|_| FitError::Config(format!("bad trainer.batch {b:?}")))?,
            // Written by a hand-written loop: one optimizer step a batch.
            None => (ck.step as usize).saturating_sub(epoch * batches_per_epoch),
        };
        Ok((history, At { epoch, batch: batch.min(batches_per_epoch), steps: ck.step }))
    }

    /// The training phase of epoch `at.epoch`: trains `batches` (the
    /// epoch's, without its first `skip`; `per_epoch` in a whole epoch),
    /// feeding `metrics` (reset first). Returns the outcome when a stop
    /// request ended the run inside the epoch (its state saved).
    fn train_epoch<I, E>(
        &mut self,
        batches: I,
        (per_epoch, skip): (usize, usize),
        params: &[Tensor],
        metrics: &mut [Box<dyn Metric + 'a>],
        at: &mut At,
    ) -> Result<Option<Outcome>, FitError>
    where
        I: IntoIterator<Item = Result<B, E>>,
        E: Into<BoxError>,
    {
        let (k, epoch) = (self.accumulate, at.epoch);
        // Data-parallel ranks train equal shards: the progress counts all of them.
        let replicas = self.parallel.as_ref().map_or(1, |p| p.world_size()) as u64;
        self.model.set_training(true);
        if let Some(p) = &mut self.progress {
            // The batches this epoch will train: all of them, unless the
            // step budget ends it first.
            let planned = match self.max_steps {
                Some(m) => per_epoch.min(skip.saturating_add(((m - at.steps) as usize).saturating_mul(k))),
                None => per_epoch,
            };
            // A resumed partial epoch's length is unknown in samples.
            let len = if skip == 0 { self.samples * planned as u64 / per_epoch.max(1) as u64 } else { 0 };
            p.start_epoch(epoch + 1, len * replicas);
        }
        metrics.iter_mut().for_each(|m| m.reset());
        let (mut done, mut micro) = (skip, 0);
        for batch in batches {
            let batch = batch.map_err(|e| FitError::Other {
                context: format!("reading batch {} of epoch {}", done + 1, epoch + 1),
                source: e.into(),
            })?;
            // A short last group at the end of the epoch steps too.
            let due = micro + 1 == k || done + 1 >= per_epoch;
            let o = self.train_step(batch, due, params)?;
            let loss = o.loss.detach();
            let outputs = o.accuracy.as_ref().map(|(logits, labels)| (logits, labels));
            let counted = MetricBatch { loss: &loss, samples: o.samples, outputs };
            metrics.iter_mut().for_each(|m| m.update(&counted));
            let step = at.steps + u64::from(due);
            if due && self.events.is_some() && self.loss_every > 0 && step.is_multiple_of(self.loss_every) {
                // The previous point has landed by now; this one is read
                // next time. Started before the flush: one submission.
                self.write_pending_loss()?;
                self.pending_loss = Some((step, loss.to_vec_async()));
            }
            // Submits this step so the device works while the next is recorded.
            params[0].device().flush().map_err(|e| FitError::device("the training step", e))?;
            if let Some(p) = &mut self.progress {
                p.advance(o.samples as u64 * replicas);
            }
            done += 1;
            micro = if due { 0 } else { micro + 1 };
            at.steps += u64::from(due);
            if let Some(f) = &mut self.on_batch {
                f(&BatchEnd {
                    epoch: epoch + 1,
                    batch: done,
                    steps: at.steps,
                    stepped: due,
                    loss: &loss,
                    samples: o.samples,
                    progress: self.progress.as_ref(),
                });
            }
            if due {
                let last = done >= per_epoch || self.budget_spent(at.steps);
                // A stop at the epoch's last batch lets the epoch finish
                // (evaluation, record, checkpoint) in `end_epoch`.
                if !last && self.stop_requested()? {
                    self.progress = None;
                    if let (Some(run), true) = (&self.run, self.is_main()) {
                        self.checkpoint((epoch, done, at.steps)).save(run.last())?;
                    }
                    return Ok(Some(Outcome::Interrupted { epoch: epoch + 1, batches: done }));
                }
                if self.budget_spent(at.steps) {
                    // Not one batch more: the data may draw it from a
                    // stream whose state the checkpoint saves.
                    break;
                }
            }
        }
        at.batch = done;
        if micro != 0 {
            // Gradients summed but never applied: the data gave fewer
            // batches than it said.
            return Err(FitError::Config(format!(
                "epoch {} gave {done} batches, not the {per_epoch} fit was told",
                epoch + 1
            )));
        }
        Ok(None)
    }

    /// One (micro-)batch: the step closure under autocast, backward of its
    /// scaled loss and, when `due`, unscale + clip + the optimizer step +
    /// the per-step schedule, all inside [`around_step`](Self::around_step).
    fn train_step(&mut self, batch: B, due: bool, params: &[Tensor]) -> Result<StepOutput, FitError> {
        let k = self.accumulate;
        let (mut batch, mut out) = (Some(batch), None);
        let mut parallel_error = None;
        let Trainer { model, opt, step, clip, autocast, scaler, schedule, around, parallel, .. } = self;
        let mut body = || {
            let Some(batch) = batch.take() else { return };
            // A compiled step runs forward and backward, and the optimizer's
            // updates too unless AMP or clipping needs them after it.
            let (o, updated) = match (&mut *step, k) {
                (StepKind::Compiled(c), 1) if parallel.is_none() => {
                    // With the scale on the device the scaler's part is device work too.
                    let update = (!scaler.is_enabled() || scaler.scale_on_device()) && clip.is_none();
                    c.step(&**model, batch, (&mut **opt, scaler), *autocast, update)
                }
                (step, _) => {
                    let o = {
                        let _autocast = AutocastGuard::new(*autocast);
                        match step {
                            StepKind::Eager(f) => f(&**model, batch),
                            StepKind::Compiled(c) => c.forward_eager(&**model, batch),
                        }
                    };
                    let loss = if k > 1 { o.loss.mul_scalar(1.0 / k as f32) } else { o.loss.clone() };
                    let scaled = scaler.scale(&loss);
                    match parallel {
                        Some(p) => {
                            if let Err(e) = p.backward(&scaled, due) {
                                parallel_error = Some(e);
                                return;
                            }
                        }
                        None => scaled.backward(),
                    }
                    (o, false)
                }
            };
            if due {
                if !updated {
                    if let Some(max_norm) = *clip {
                        scaler.unscale_(*opt);
                        clip_grad_norm_(params, max_norm);
                    }
                    // No readback: an overflow skips the update on the device.
                    scaler.step_async(*opt);
                    scaler.update();
                }
                opt.zero_grad();
                if let Some((s, Every::Step)) = schedule {
                    s.step(*opt);
                }
            }
            out = Some(o);
        };
        try_run(|| match around {
            Some(a) => a(&mut body),
            None => body(),
        })
        .map_err(|e| FitError::device("the training step", e))?;
        if let Some(source) = parallel_error {
            return Err(FitError::Other { context: "averaging gradients across ranks".into(), source });
        }
        out.ok_or_else(|| FitError::Config("around_step did not run the step".into()))
    }

    /// The evaluation phase: the evaluation closure, the model in evaluation mode.
    fn evaluate_epoch(&mut self) -> Result<Option<Evaluation>, FitError> {
        let Some(eval) = &mut self.eval else { return Ok(None) };
        self.model.set_training(false);
        let model = &*self.model;
        let r = try_run(|| eval(model)).map_err(|e| FitError::device("the evaluation", e))?;
        self.model.set_training(true);
        Ok(Some(r.map_err(|e| FitError::Other { context: "the evaluation".into(), source: e })?))
    }

    /// The end of an epoch: the per-epoch schedule and early stopping fed
    /// the validation loss (else the training loss), the progress line, the
    /// record and the checkpoint, the epoch callback; returns the outcome
    /// when a stop request or early stopping ends the run here.
    fn end_epoch(&mut self, history: &mut History, record: EpochRecord, at: &At) -> Result<Option<Outcome>, FitError> {
        let epoch = at.epoch;
        let metric = record.val_loss.unwrap_or(record.train_loss);
        if let Some((s, Every::Epoch)) = &mut self.schedule {
            s.step_with(metric as f32, self.opt);
        }
        let model = self.model.as_dyn();
        let stopped = self.early.as_mut().map(|es| es.step(epoch + 1, metric, model)).is_some_and(|o| o.stop);
        if let Some(p) = &mut self.progress {
            p.finish_epoch(&record);
        }
        match (&self.run, self.is_main()) {
            (Some(run), true) => {
                let ck = self.checkpoint((epoch + 1, 0, at.steps));
                run.finish_epoch(history, record.clone(), &ck, self.model.as_dyn())?;
                // After the checkpoint: a run stopped in between resumes
                // after this epoch, and its curves miss it rather than
                // showing it twice.
                self.write_pending_loss()?;
                if let Some(tb) = &mut self.events {
                    tb.add_epoch_record(&record, at.steps)?;
                }
            }
            _ => history.push(record.clone()),
        }
        if let Some(f) = &mut self.on_epoch {
            f(&record);
        }
        if self.stop_requested()? {
            return Ok(Some(Outcome::Interrupted { epoch: epoch + 1, batches: at.batch }));
        }
        if stopped {
            let es = self.early.as_ref().expect("stopped by early stopping");
            let best_epoch = es
                .restore_best(self.model.as_dyn())
                .map_err(|e| FitError::device("restoring the best parameters", e))?;
            return Ok(Some(Outcome::EarlyStopped { epoch: epoch + 1, best_epoch }));
        }
        Ok(None)
    }

    /// The state of a checkpoint taken `batch` batches into `epoch` (0-based;
    /// the completed epochs), after `steps` optimizer steps.
    fn checkpoint(&self, (epoch, batch, steps): (usize, usize, u64)) -> TrainingCheckpoint {
        let mut ck = TrainingCheckpoint::capture(self.model.as_dyn(), &*self.opt).with_scaler(&self.scaler);
        if let Some((s, _)) = &self.schedule {
            ck.scheduler = s.state_dict();
        }
        if let Some(es) = &self.early {
            ck.extra.extend_prefixed("early_stopping", es.state_dict());
        }
        for (name, g) in &self.rngs {
            ck.rng.insert(name.clone(), g.get());
        }
        for (name, s) in &self.states {
            ck.extra.extend_prefixed(name, s.borrow().state_dict());
        }
        ck.extra.meta.insert("trainer.batch".into(), batch.to_string());
        (ck.epoch, ck.step) = (epoch as u64, steps);
        ck
    }
}

/// Where a run stands: the epoch (0-based), the batches of it trained (on
/// resume: those to skip; after `train_epoch`: those trained), and the
/// optimizer steps taken in all.
#[derive(Clone, Copy, Debug, Default)]
struct At {
    epoch: usize,
    batch: usize,
    steps: u64,
}

//! The training step of the image classifiers (mnist, cifar10_resnet): a
//! batch's images (through `prepare`, e.g. augmentation) and labels become
//! the step's inputs, and the cross-entropy of the model's logits is its
//! loss. With `--compile` forward, backward and the optimizer's updates are
//! recorded once and replayed (`Trainer::compiled`); without, the two
//! halves run as one closure (`Trainer::new`). [`Flags`] are the
//! command-line flags both share. Included with `#[path]`.

use wgrad::data::Batch;
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::Optimizer;
use wgrad::nn::train::{Outcome, StepOutput, Trainer};
use wgrad::nn::Module;
use wgrad::Tensor;

/// The flags of a classifier's run (flattened into each one's `Args`,
/// beside its model, data and optimizer flags).
#[derive(clap::Args, Debug)]
pub struct Flags {
    /// `--resume`, `--quiet`, `--no-tensorboard`, `--profile`, `--amp`.
    #[command(flatten)]
    pub run: super::run_flags::RunFlags,
    /// After training, write the best model (lowest validation loss) as
    /// ONNX to PATH, for ONNX Runtime and other runtimes (docs/interop.md).
    #[arg(long, value_name = "PATH")]
    pub export_onnx: Option<std::path::PathBuf>,
    /// DataLoader threads (0: read on the training thread); results do not depend on it.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Record the training step (forward, backward, optimizer update) once
    /// and replay it without running its code (`Trainer::compiled`; on a GPU).
    #[arg(long)]
    pub compile: bool,
}

/// The Trainer of `model` with `opt` on image batches, compiled or not.
pub fn trainer<'a, M: Module>(
    model: &'a mut M,
    opt: &'a mut dyn Optimizer,
    compile: bool,
    loss_fn: &'a CrossEntropyLoss,
    prepare: impl Fn(&Tensor) -> Tensor + 'a,
) -> Trainer<'a, M, Batch> {
    let inputs = move |b: Batch| vec![prepare(&b.images), b.labels];
    let forward = move |m: &M, t: &[Tensor]| {
        let logits = m.forward(&t[0]);
        let loss = loss_fn.forward(&logits, &t[1]);
        StepOutput::new(loss, t[1].numel()).with_accuracy(&logits, &t[1])
    };
    if compile {
        Trainer::compiled(model, opt, inputs, forward)
    } else {
        Trainer::new(model, opt, move |m: &M, b: Batch| forward(m, &inputs(b)))
    }
}

/// What both classifiers give [`fit`] besides their own Trainer options.
pub struct FitWith<'a> {
    pub train: &'a wgrad::data::DataLoader,
    pub test: &'a wgrad::data::DataLoader,
    pub loss_fn: &'a CrossEntropyLoss,
    pub run: wgrad::nn::train::RunDir,
    /// `--resume`, `--quiet`, `--no-tensorboard` and `--profile` (its
    /// table and trace, `profile.json` in the run folder, for one step).
    pub flags: &'a super::run_flags::RunFlags,
    pub stop: &'a std::sync::atomic::AtomicBool,
    pub epochs: usize,
    pub batch_size: usize,
    pub dev: &'a wgrad::Device,
    /// When the run started (for the time to the first step).
    pub started: std::time::Instant,
}

/// A finished (not interrupted) fit and the time from the start of the
/// run to the end of its first step.
pub struct Fitted {
    pub fit: wgrad::nn::train::Fit,
    pub first_step: std::time::Duration,
}

/// Evaluation on the test loader, the run folder (resumable), Ctrl-C, the
/// progress display, the step profiler around each step, then `fit` over
/// the training loader (an out-of-memory error names `--batch-size`).
/// `None` when Ctrl-C stopped the run, after printing how to resume.
pub fn fit<'a, M: Module>(trainer: Trainer<'a, M, Batch>, w: FitWith<'a>) -> anyhow::Result<Option<Fitted>> {
    let (test, loss_fn, train, dev, started) = (w.test, w.loss_fn, w.train, w.dev, w.started);
    let mut profiler = super::profiling::StepProfiler::new(w.flags.profile, w.run.dir().join("profile.json"));
    // Read after the Trainer (which owns the closure) is done.
    let first_step = std::rc::Rc::new(std::cell::Cell::new(None));
    let first = first_step.clone();
    let fit = w
        .flags
        .apply(trainer, w.epochs)
        .evaluate(move |m| {
            let batches = test.epoch(0).map(|b| b.map(|b| (b.images, b.labels, b.len)));
            let (loss, acc) = wgrad::nn::train::evaluate(m, batches, |logits, y| loss_fn.forward(logits, y))?;
            Ok(wgrad::nn::train::Evaluation { loss, accuracy: Some(acc) })
        })
        .run_dir(w.run)
        .stop_flag(w.stop)
        .samples_per_epoch(train.items_per_epoch())
        .around_step(move |step| {
            profiler.step(dev, &mut *step);
            if first.get().is_none() {
                first.set(Some(started.elapsed()));
            }
        })
        .fit(train.num_batches(), |epoch, skip| train.epoch_from(epoch, skip))
        .map_err(|e| super::control::fit_error(e, &[("--batch-size", w.batch_size)]))?;
    if let Outcome::Interrupted { epoch, batches } = fit.outcome {
        println!("{}", super::control::resume_hint(&format!("batch {batches} of epoch {epoch}")));
        return Ok(None);
    }
    Ok(Some(Fitted { fit, first_step: first_step.get().unwrap_or_default() }))
}

/// The lines after a classifier's results: the compiled step's replays
/// (with `--compile`), the files written and, when it logged, the
/// TensorBoard command that shows the run beside its siblings.
pub fn report_run(run: &wgrad::nn::train::RunDir, dev: &wgrad::Device, compile: bool) {
    if compile {
        println!("compiled step: {} steps replayed from a recorded graph", dev.stats().graphs_replayed);
    }
    println!("wrote {}, {}, {}", run.last().display(), run.history_csv().display(), run.curves_png().display());
    let logged = std::fs::read_dir(run.dir())
        .map(|files| files.flatten().any(|f| f.file_name().to_string_lossy().starts_with("events.out.tfevents.")))
        .unwrap_or(false);
    if logged {
        let logdir = run.dir().parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(run.dir());
        println!("curves in TensorBoard: tensorboard --logdir {}", logdir.display());
    }
}

/// `--export-onnx PATH`: the run's best model (lowest validation loss,
/// `best.safetensors`) in eval mode, written as ONNX with a symbolic batch
/// dimension for `item`-shaped images (docs/interop.md).
pub fn export_onnx<M: Module>(
    model: &mut M,
    run: &wgrad::nn::train::RunDir,
    path: &std::path::Path,
    item: &[usize],
    dev: &wgrad::Device,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use wgrad::nn::ModuleExt;
    if run.best().exists() {
        wgrad::nn::checkpoint::load_module(run.best(), &*model, true)?;
    }
    model.eval();
    let shape: Vec<usize> = std::iter::once(2).chain(item.iter().copied()).collect();
    let example = Tensor::zeros(&shape, dev);
    let report =
        wgrad::onnx::export(&*model, &example, path).with_context(|| format!("--export-onnx {}", path.display()))?;
    let batch = match &report.fixed_batch {
        None => "batch dim symbolic".to_string(),
        Some(why) => format!("batch fixed at 2: {why}"),
    };
    println!(
        "wrote {} (best model as ONNX opset {}: {} nodes, {} parameters, {batch})",
        path.display(),
        wgrad::onnx::OPSET,
        report.nodes,
        report.parameters.len()
    );
    Ok(())
}

//! Trains the textbooks' 34,826-parameter CNN on the bundled MNIST-10k
//! (7,996 train / 2,004 test digits) with Adam, on the GPU when there is one.
//!
//! `cargo run --release --example mnist -- --help`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use wgrad::data::mnist::{self, Split};
use wgrad::data::DataLoader;
use wgrad::models::{lenet5, mlp, mnist_cnn};
use wgrad::nn::checkpoint::TrainingCheckpoint;
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Adam, Optimizer};
use wgrad::nn::train::{evaluate, seed_everything, Accuracy, EpochRecord, History, Progress, RunDir, RunningMean};
use wgrad::nn::Sequential;
use wgrad::prelude::*;

#[path = "common/amp.rs"]
mod amp;
#[path = "common/control.rs"]
mod control;
#[path = "common/epochs.rs"]
mod epochs;
#[path = "common/profiling.rs"]
mod profiling;

/// Train a CNN on the MNIST digits that ship with wgrad.
#[derive(Parser, Debug)]
#[command(
    after_help = "WGRAD_DEVICE=gpu|cpu|<adapter name> picks the device (default: best GPU, else the CPU backend)."
)]
struct Args {
    /// Epochs to train.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// One seed for initialisation and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Model: cnn (34,826 parameters), lenet (LeNet-5) or mlp (784-128-10).
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Folder with MNIST IDX files (gzipped or not); default: the bundled MNIST-10k.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where checkpoints, history.csv and curves.png go.
    #[arg(long, default_value = "runs/mnist")]
    out_dir: PathBuf,
    /// Continue from <out-dir>/last.safetensors.
    #[arg(long)]
    resume: bool,
    /// Use only the first N training digits (quick smoke runs).
    #[arg(long)]
    limit: Option<usize>,
    /// No progress bar (summary lines only).
    #[arg(long)]
    quiet: bool,
    /// Print the step profiler's table for one training step and write its trace.
    #[arg(long)]
    profile: bool,
    /// Mixed precision: autocast the forward pass (f16 matmul/convolution
    /// operands, f32 sums) and scale the loss with a GradScaler.
    #[arg(long)]
    amp: bool,
}

fn build(name: &str, gen: &mut Generator, dev: &Device) -> Result<Sequential> {
    Ok(match name {
        "cnn" => mnist_cnn(gen, dev),
        "lenet" => lenet5(gen, dev),
        "mlp" => mlp(&[784, 128, 10], gen, dev),
        other => anyhow::bail!("unknown --model {other:?} (cnn, lenet, mlp)"),
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let dev = Device::from_env()?;
    println!("device: {} ({})", dev.name(), dev.reason());
    let dir = args.data_dir.clone().unwrap_or_else(mnist::bundled_dir);
    let mut train = mnist::load(&dir, Split::Train)?;
    if let Some(n) = args.limit {
        train.labels.truncate(n);
        train.images.truncate(n * train.item_bytes());
    }
    let test = mnist::load(&dir, Split::Test)?;
    println!("data: {} train / {} test digits from {}", train.len(), test.len(), dir.display());
    let (mean, std) = ([0.1307], [0.3081]);
    let train_loader = DataLoader::new(Arc::new(train), args.batch_size, &dev).seed(args.seed).normalize(&mean, &std);
    let test_loader = DataLoader::new(Arc::new(test), 500, &dev).shuffle(false).normalize(&mean, &std);

    let mut seeds = seed_everything(args.seed);
    let mut model = build(&args.model, &mut seeds.model, &dev)?;
    println!("model: {} ({} parameters)", args.model, model.num_parameters());
    let mut opt = Adam::new(model.parameters(), args.lr);
    let loss_fn = CrossEntropyLoss::default();

    let run = RunDir::create(&args.out_dir)?;
    let mut history = History::new();
    // `skip`: batches of epoch `start` already trained (a run stopped by Ctrl-C mid-epoch).
    let (mut start, mut skip) = (0, 0);
    let mut amp = amp::Amp::new(args.amp);
    if args.resume {
        let (ck, h) = run.resume(&dev).with_context(|| format!("resuming from {}", run.last().display()))?;
        ck.restore(&model, &mut opt)?;
        ck.restore_scaler(&mut amp.scaler)?;
        history = h;
        (start, skip) = epochs::resume_point(&ck, train_loader.num_batches());
    }
    let stop = control::Stop::install();
    let sizes = [("--batch-size", args.batch_size)];

    let mut progress = Progress::new(args.epochs);
    if args.quiet {
        progress = progress.without_bar();
    }

    let mut profiler = profiling::StepProfiler::new(args.profile, args.out_dir.join("profile.json"));
    let mut first_step = None;
    for epoch in start..args.epochs {
        model.train();
        let first = std::mem::take(&mut skip);
        let seen = (first * args.batch_size).min(train_loader.dataset().len());
        progress.start_epoch(epoch + 1, (train_loader.dataset().len() - seen) as u64);
        let (mut loss_avg, mut acc) = (RunningMean::new(), Accuracy::new());
        for (k, batch) in train_loader.epoch_from(epoch, first).enumerate() {
            let b = batch?;
            let (logits, loss) = control::guard("the training step", &sizes, || {
                profiler.step(&dev, || {
                    let (logits, loss) = amp.forward(|| {
                        let logits = model.forward(&b.images);
                        let loss = loss_fn.forward(&logits, &b.labels);
                        (logits, loss)
                    });
                    opt.zero_grad();
                    amp.backward_step(&loss, &mut opt, None);
                    (logits, loss)
                })
            })?;
            // Metrics accumulate on the device: nothing is read back per step.
            loss_avg.update_tensor(&loss.detach(), b.len);
            acc.update(&logits.detach(), &b.labels);
            dev.flush()?; // submit this step so the device works while the next is recorded
            first_step.get_or_insert_with(|| started.elapsed());
            progress.advance(b.len as u64);
            if stop.requested() {
                drop(progress);
                // Completed epochs plus the batches done in this one: --resume continues at the next batch.
                let mut ck = TrainingCheckpoint::capture(&model, &opt).with_scaler(&amp.scaler);
                let done = first + k + 1;
                (ck.epoch, ck.step) = (epoch as u64, (epoch * train_loader.num_batches() + done) as u64);
                return epochs::save_on_stop(&ck, &run.last(), epoch, done);
            }
        }
        model.eval();
        let batches = test_loader.epoch(0).map(|b| b.map(|b| (b.images, b.labels, b.len)));
        let (val_loss, val_acc) = evaluate(&model, batches, |logits, y| loss_fn.forward(logits, y))?;
        let record = EpochRecord {
            epoch: epoch + 1,
            train_loss: loss_avg.mean(),
            train_acc: Some(acc.value()),
            val_loss: Some(val_loss),
            val_acc: Some(val_acc),
            lr: opt.groups()[0].lr as f64,
        };
        progress.finish_epoch(&record);
        let mut ck = TrainingCheckpoint::capture(&model, &opt).with_scaler(&amp.scaler);
        (ck.epoch, ck.step) = ((epoch + 1) as u64, ((epoch + 1) * train_loader.num_batches()) as u64);
        run.finish_epoch(&mut history, record, &ck, &model)?;
    }
    drop(progress);
    if let Some(r) = history.last() {
        println!(
            "final test accuracy {:.2}% (best val loss at epoch {}); first step after {:.1?}; peak device memory {:.1} MB",
            100.0 * r.val_acc.unwrap_or(0.0),
            history.best_epoch().map_or(0, |b| b.epoch),
            first_step.unwrap_or_default(),
            dev.stats().bytes_peak as f64 / 1e6
        );
        println!("wrote {}, {}, {}", run.last().display(), run.history_csv().display(), run.curves_png().display());
    }
    Ok(())
}

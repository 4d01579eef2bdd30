//! Trains the textbooks' 34,826-parameter CNN on the bundled MNIST-10k
//! (7,996 train / 2,004 test digits) with Adam, on the GPU when there is one.
//!
//! `cargo run --release --example mnist -- --help`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use wgrad::data::mnist::{self, Split};
use wgrad::data::DataLoader;
use wgrad::models::{lenet5, mlp, mnist_cnn};
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::Adam;
use wgrad::nn::train::{seed_everything, RunDir};
use wgrad::nn::Sequential;
use wgrad::prelude::*;

#[path = "common/classify.rs"]
mod classify;
#[path = "common/control.rs"]
mod control;
#[path = "common/profiling.rs"]
mod profiling;
#[path = "common/run_flags.rs"]
mod run_flags;

/// Train a CNN on the MNIST digits that ship with wgrad.
#[derive(Parser, Debug)]
#[command(after_help = DeviceSpec::HELP)]
pub(crate) struct Args {
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
    #[command(flatten)]
    flags: classify::Flags,
    /// Use only the first N training digits (quick smoke runs).
    #[arg(long)]
    limit: Option<usize>,
}

fn build(name: &str, init: &mut Init) -> Result<Sequential> {
    Ok(match name {
        "cnn" => mnist_cnn(init),
        "lenet" => lenet5(init),
        "mlp" => mlp(&[784, 128, 10], init),
        other => anyhow::bail!("unknown --model {other:?} (cnn, lenet, mlp)"),
    })
}

fn main() -> Result<()> {
    run(Args::parse())
}

/// The whole run (also driven end to end by `tests/examples.rs`).
pub(crate) fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let dev = Device::from_env()?;
    println!("device: {} ({})", dev.name(), dev.reason());
    let dir = args.data_dir.clone().unwrap_or_else(mnist::bundled_dir);
    let mut train = mnist::load(&dir, Split::Train)?;
    if let Some(n) = args.limit {
        train.truncate(n);
    }
    let test = mnist::load(&dir, Split::Test)?;
    println!("data: {} train / {} test digits from {}", train.len(), test.len(), dir.display());
    let (mean, std) = ([0.1307], [0.3081]);
    let train_loader = DataLoader::new(Arc::new(train), args.batch_size, &dev)
        .workers(args.flags.workers)
        .seed(args.seed)
        .normalize(&mean, &std);
    let test_loader =
        DataLoader::new(Arc::new(test), 500, &dev).workers(args.flags.workers).shuffle(false).normalize(&mean, &std);

    let seeds = seed_everything(args.seed);
    let mut model = build(&args.model, &mut Init::from_generator(&dev, seeds.model))?;
    println!("model: {} ({} parameters)", args.model, model.num_parameters());
    let mut opt = Adam::new(model.parameters(), args.lr);
    let loss_fn = CrossEntropyLoss::default();

    let run = RunDir::create(&args.out_dir)?;
    let stop = control::Stop::install();
    let trainer = classify::trainer(&mut model, &mut opt, args.flags.compile, &loss_fn, Tensor::clone)
        .epochs(args.epochs)
        .hparams(&[
            ("model", args.model.as_str().into()),
            ("lr", f64::from(args.lr).into()),
            ("batch_size", (args.batch_size as f64).into()),
            ("amp", args.flags.run.amp.into()),
        ]);
    let with = classify::FitWith {
        train: &train_loader,
        test: &test_loader,
        loss_fn: &loss_fn,
        run: run.clone(),
        flags: &args.flags.run,
        stop: stop.flag(),
        epochs: args.epochs,
        batch_size: args.batch_size,
        dev: &dev,
        started,
    };
    let Some(classify::Fitted { fit, first_step }) = classify::fit(trainer, with)? else { return Ok(()) };

    if let Some(r) = fit.history.last() {
        println!(
            "final test accuracy {:.2}% (best val loss at epoch {}); first step after {:.1?}; peak device memory {:.1} MB",
            100.0 * r.val_acc.unwrap_or(0.0),
            fit.history.best_epoch().map_or(0, |b| b.epoch),
            first_step,
            dev.stats().bytes_peak as f64 / 1e6
        );
        classify::report_run(&run, &dev, args.flags.compile);
    }
    if let Some(path) = &args.flags.export_onnx {
        classify::export_onnx(&mut model, &run, path, &[1, 28, 28], &dev)?;
    }
    Ok(())
}

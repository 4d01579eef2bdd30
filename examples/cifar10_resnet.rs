//! Trains a CIFAR ResNet (He et al. 2016) on CIFAR-10 with SGD + momentum,
//! crop + flip augmentation on the device, step or cosine LR schedule.
//!
//! `cargo run --release --example cifar10_resnet -- --help`
//! Offline smoke run: `... -- --synthetic --epochs 1`.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use wgrad::data::cifar::{load_cifar10, synthetic, Split};
use wgrad::data::download::{default_cache_dir, ensure_cifar10};
use wgrad::data::{Augment, DataLoader, ImageDataset};
use wgrad::models::{ResNet, Shortcut};
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{ParamGroup, Sgd, SgdOptions};
use wgrad::nn::schedule::{CosineAnnealingLR, LinearWarmup, LrScheduler, MultiStepLR};
use wgrad::nn::train::{seed_everything, Every, RunDir};
use wgrad::prelude::*;

#[path = "common/classify.rs"]
mod classify;
#[path = "common/control.rs"]
mod control;
#[path = "common/distributed.rs"]
mod distributed;
#[path = "common/profiling.rs"]
mod profiling;
#[path = "common/run_flags.rs"]
mod run_flags;

/// CIFAR-10 channel statistics (train split).
const MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

/// Train a ResNet on CIFAR-10 (He et al. 2016 recipe).
#[derive(Parser, Debug)]
#[command(after_help = format!("Expected: ResNet-20 reaches 91.25% test accuracy (8.75% error) with the paper's \
schedule (SGD 0.9, wd 1e-4, lr 0.1 divided by 10 at 50% and 75% of ~182 epochs, batch 128).\n{}", DeviceSpec::HELP))]
pub(crate) struct Args {
    /// resnet20, resnet32, resnet44, resnet56, resnet110 (CIFAR, option A) or resnet18 (ImageNet shape).
    #[arg(long, default_value = "resnet20")]
    model: String,
    /// Epochs (the paper's 64k iterations at batch 128 are about 182).
    #[arg(long, default_value_t = 182)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// L2 weight decay.
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f32,
    /// No weight decay on batch-norm parameters and biases.
    #[arg(long)]
    no_decay_bn_bias: bool,
    /// step (/10 at 50% and 75% of the epochs) or cosine.
    #[arg(long, default_value = "step")]
    schedule: String,
    /// Linear warm-up epochs from lr/10.
    #[arg(long, default_value_t = 0)]
    warmup: usize,
    /// Cache folder for the dataset (default: $WGRAD_DATA_DIR, ~/.cache/wgrad or ./data); downloaded when missing.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Generated CIFAR-shaped data instead of CIFAR-10 (offline smoke runs).
    #[arg(long)]
    synthetic: bool,
    /// Training images in --synthetic mode (test: a fifth of it).
    #[arg(long, default_value_t = 2048)]
    synthetic_size: usize,
    /// Use only the first N training images.
    #[arg(long)]
    limit: Option<usize>,
    /// One seed for initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where checkpoints, history.csv and curves.png go.
    #[arg(long, default_value = "runs/cifar10")]
    out_dir: PathBuf,
    #[command(flatten)]
    flags: classify::Flags,
    /// Data-parallel training, one rank per process under `mpirun -np N`
    /// (built with `--features mpi`): `--batch-size` is each rank's, every
    /// rank reads its own shard of each epoch, gradients are averaged
    /// (docs/distributed.md). Alone, a group of one.
    #[arg(long)]
    distributed: bool,
    /// With `--distributed`: batch norm normalises with the statistics of
    /// all ranks' batches together (PyTorch's SyncBatchNorm), not each
    /// rank's own.
    #[arg(long)]
    sync_bn: bool,
}

fn datasets(args: &Args) -> Result<(ImageDataset, ImageDataset)> {
    if args.synthetic {
        return Ok((
            synthetic(args.synthetic_size, 10, args.seed),
            synthetic(args.synthetic_size / 5, 10, args.seed + 1),
        ));
    }
    let cache = args.data_dir.clone().unwrap_or_else(default_cache_dir);
    let dir = ensure_cifar10(&cache).with_context(|| {
        format!(
            "getting CIFAR-10 into {} (offline? use --synthetic, or put cifar-10-batches-bin there)",
            cache.display()
        )
    })?;
    Ok((load_cifar10(&dir, Split::Train)?, load_cifar10(&dir, Split::Test)?))
}

fn build(name: &str, init: &mut Init) -> Result<ResNet> {
    Ok(match name {
        "resnet18" => ResNet::imagenet(18, 10, init),
        n => {
            let depth: usize =
                n.strip_prefix("resnet").and_then(|d| d.parse().ok()).context("--model resnet20|32|44|56|110|18")?;
            anyhow::ensure!(depth >= 8 && (depth - 2).is_multiple_of(6), "CIFAR ResNets have depth 6n+2, got {depth}");
            ResNet::cifar(depth, 10, Shortcut::ZeroPad, init)
        }
    })
}

fn main() -> Result<()> {
    run(Args::parse())
}

/// The whole run (also driven end to end by `tests/examples.rs`).
pub(crate) fn run(args: Args) -> Result<()> {
    let group = distributed::group(args.distributed)?;
    let result = run_rank(args, &group);
    distributed::finish(group, result)
}

/// This rank's part of the run (the whole run without `--distributed`).
fn run_rank(args: Args, group: &wgrad::distributed::ProcessGroup) -> Result<()> {
    let started = Instant::now();
    let dev = Device::from_env()?;
    println!("device: {} ({})", dev.name(), dev.reason());
    let (mut train, test) = datasets(&args)?;
    if let Some(n) = args.limit {
        train.truncate(n);
    }
    println!(
        "data: {} train / {} test images{}",
        train.len(),
        test.len(),
        if args.synthetic { " (synthetic)" } else { "" }
    );
    let train_loader = DataLoader::new(Arc::new(train), args.batch_size, &dev)
        .workers(args.flags.workers)
        .seed(args.seed)
        .shard(group.rank(), group.world_size());
    let test_loader =
        DataLoader::new(Arc::new(test), 500, &dev).workers(args.flags.workers).shuffle(false).normalize(&MEAN, &STD);
    let augment = Augment::new().crop_flip(4, 0.5).normalize(&MEAN, &STD);

    let seeds = seed_everything(args.seed);
    let mut model = build(&args.model, &mut Init::from_generator(&dev, seeds.model))?;
    println!("model: {} ({} parameters)", args.model, model.num_parameters());
    // Optionally exempt batch-norm parameters and biases from weight decay.
    let (mut decay, mut no_decay) = (Vec::new(), Vec::new());
    for (name, p) in model.named_parameters() {
        let exempt = args.no_decay_bn_bias && (name.ends_with("bias") || p.dims() == 1);
        if exempt {
            no_decay.push(p)
        } else {
            decay.push(p)
        }
    }
    let mut groups = vec![ParamGroup::new(decay, args.lr, args.weight_decay)];
    if !no_decay.is_empty() {
        groups.push(ParamGroup::new(no_decay, args.lr, 0.0));
    }
    let mut opt = Sgd::with_groups(groups, SgdOptions { momentum: args.momentum, ..Default::default() });
    let inner: Box<dyn LrScheduler> = match args.schedule.as_str() {
        // Milestones at 50% and 75% of training (never at epoch 0, which would
        // decay the starting lr for very short runs).
        "step" => Box::new(MultiStepLR::new(&mut opt, &[(args.epochs / 2).max(1), (args.epochs * 3 / 4).max(1)], 0.1)),

        "cosine" => Box::new(CosineAnnealingLR::new(&mut opt, args.epochs, 0.0)),
        other => anyhow::bail!("unknown --schedule {other:?} (step, cosine)"),
    };
    let mut sched: Box<dyn LrScheduler> =
        if args.warmup > 0 { Box::new(LinearWarmup::new(&mut opt, inner, args.warmup, 0.1)) } else { inner };
    let loss_fn = CrossEntropyLoss::default();

    let run = RunDir::create(&args.out_dir)?;
    let stop = control::Stop::install();
    // The augmentation's random stream (checkpointed for an exact resume).
    let augment_rng = Cell::new(seeds.augment);
    // Each batch is augmented on the device (its random stream checkpointed).
    let augmented = |images: &Tensor| {
        let mut g = augment_rng.get();
        let x = augment.apply(images, &mut g);
        augment_rng.set(g);
        x
    };
    let mut replica = distributed::replica(args.distributed, &model, group)?;
    let _sync_bn = args.sync_bn.then(|| group.sync_batch_norm());
    let trainer = classify::trainer(&mut model, &mut opt, args.flags.compile, &loss_fn, augmented);
    let trainer = match &mut replica {
        Some(r) => trainer.data_parallel(r),
        None => trainer,
    };
    let trainer =
        trainer.epochs(args.epochs).schedule(&mut sched, Every::Epoch).rng("augment", &augment_rng).hparams(&[
            ("model", args.model.as_str().into()),
            ("lr", f64::from(args.lr).into()),
            ("batch_size", (args.batch_size as f64).into()),
            ("ranks", (group.world_size() as f64).into()),
            ("schedule", args.schedule.as_str().into()),
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
            "final test accuracy {:.2}%; first step after {:.1?}; peak device memory {:.1} MB",
            100.0 * r.val_acc.unwrap_or(0.0),
            first_step,
            dev.stats().bytes_peak as f64 / 1e6
        );
        classify::report_run(&run, &dev, args.flags.compile);
    }
    if let (Some(path), 0) = (&args.flags.export_onnx, group.rank()) {
        classify::export_onnx(&mut model, &run, path, &[3, 32, 32], &dev)?;
    }
    Ok(())
}

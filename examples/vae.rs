//! Trains a variational autoencoder (PyTorch's `examples/vae`: 784-400-20) or
//! a plain autoencoder on the bundled MNIST-10k, then writes a grid of test
//! digits above their reconstructions and, for the VAE, a grid of digits
//! decoded from z ~ N(0, I).
//!
//! `cargo run --release --example vae -- --help`

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use wgrad::data::mnist::{self, Split};
use wgrad::data::{Batch, DataLoader};
use wgrad::models::{Autoencoder, Vae};
use wgrad::nn::optim::Adam;
use wgrad::nn::train::{
    seed_everything, BoxError, Evaluation, Outcome, Progress, RunDir, RunningMean, StepOutput, Trainer,
};
use wgrad::nn::ModuleFields;
use wgrad::prelude::*;

#[path = "common/control.rs"]
mod control;
#[path = "common/profiling.rs"]
mod profiling;

/// Train a VAE (or an autoencoder) on the MNIST digits that ship with wgrad.
#[derive(Parser, Debug)]
#[command(after_help = DeviceSpec::HELP)]
pub(crate) struct Args {
    /// Epochs to train (10 take about a minute on lavapipe).
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// One seed for initialisation, shuffling and the VAE's noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Model: vae (784-400-20, as PyTorch's example), ae (MLP autoencoder
    /// 784-400-20) or conv-ae (convolutional autoencoder).
    #[arg(long, default_value = "vae")]
    model: String,
    /// Latent dimensions.
    #[arg(long, default_value_t = 20)]
    latent: usize,
    /// Folder with MNIST IDX files (gzipped or not); default: the bundled MNIST-10k.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where checkpoints, reconstructions.png, samples.png, history.csv and curves.png go.
    #[arg(long, default_value = "runs/vae")]
    out_dir: PathBuf,
    /// Continue from <out-dir>/last.safetensors (also mid-epoch, after Ctrl-C).
    #[arg(long)]
    resume: bool,
    /// Use only the first N training digits (quick smoke runs).
    #[arg(long)]
    limit: Option<usize>,
    /// No progress bar (summary lines only).
    #[arg(long)]
    quiet: bool,
    /// Do not write TensorBoard event files into the run folder (written by
    /// default: `tensorboard --logdir runs`; docs/interop.md).
    #[arg(long)]
    no_tensorboard: bool,
    /// Print the step profiler's table for one training step and write its trace.
    #[arg(long)]
    profile: bool,
    /// DataLoader threads (0: read on the training thread); results do not depend on it.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

/// The model being trained; the autoencoder has no KL term and no prior.
enum Model {
    Vae(Vae),
    Ae(Autoencoder),
}

impl Model {
    fn build(args: &Args, init: &mut Init) -> Result<Model> {
        Ok(match args.model.as_str() {
            "vae" => Model::Vae(Vae::new(400, args.latent, init)),
            "ae" => Model::Ae(Autoencoder::mlp(400, args.latent, init)),
            "conv-ae" => Model::Ae(Autoencoder::conv(args.latent, init)),
            other => anyhow::bail!("unknown --model {other:?} (vae, ae, conv-ae)"),
        })
    }

    fn module(&self) -> &(dyn Module + 'static) {
        match self {
            Model::Vae(m) => m,
            Model::Ae(m) => m,
        }
    }

    /// `(total, reconstruction, kl)`; the autoencoder's KL is `None`.
    fn loss(&self, x: &Tensor, gen: &mut Generator) -> (Tensor, Tensor, Option<Tensor>) {
        match self {
            Model::Vae(m) => {
                let (t, r, k) = m.loss(x, gen);
                (t, r, Some(k))
            }
            Model::Ae(m) => {
                let l = m.loss(x);
                (l.clone(), l, None)
            }
        }
    }
}

/// The model is the active variant (its parameter names, random streams and
/// training mode), so the Trainer and checkpoints see the bare network.
impl ModuleFields for Model {
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.module().visit_parameters(prefix, f)
    }
    fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.module().visit_buffers(prefix, f)
    }
    fn set_training(&mut self, training: bool) {
        match self {
            Model::Vae(m) => m.set_training(training),
            Model::Ae(m) => m.set_training(training),
        }
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.module().children()
    }
}

impl Module for Model {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.module().forward(x)
    }
    fn describe(&self) -> String {
        self.module().describe()
    }
    fn random_stream(&self) -> Option<&std::sync::Mutex<Generator>> {
        self.module().random_stream()
    }
}

/// Writes `[n, 1, 28, 28]` images in [0, 1] (row-major in `pixels`) as a
/// grayscale PNG of `cols` columns, each digit scaled up 2x with a 2-pixel gap.
fn write_grid(path: &Path, pixels: &[f32], n: usize, cols: usize) -> Result<()> {
    const SIDE: usize = 28;
    const SCALE: usize = 2;
    const GAP: usize = 2;
    let rows = n.div_ceil(cols);
    let cell = SIDE * SCALE + GAP;
    let (w, h) = (cols * cell + GAP, rows * cell + GAP);
    let mut img = vec![40u8; w * h];
    for k in 0..n {
        let (r, c) = (k / cols, k % cols);
        for y in 0..SIDE * SCALE {
            for x in 0..SIDE * SCALE {
                let v = pixels[k * SIDE * SIDE + (y / SCALE) * SIDE + x / SCALE];
                img[(GAP + r * cell + y) * w + GAP + c * cell + x] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    let grid = image::GrayImage::from_raw(w as u32, h as u32, img).context("grid buffer size")?;
    grid.save(path).with_context(|| format!("writing {}", path.display()))
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
    // No normalisation: the BCE targets are the pixel intensities in [0, 1].
    let train_loader = DataLoader::new(Arc::new(train), args.batch_size, &dev).workers(args.workers).seed(args.seed);
    let test_loader = DataLoader::new(Arc::new(test), 500, &dev).workers(args.workers).shuffle(false);

    let seeds = seed_everything(args.seed);
    let mut model = Model::build(&args, &mut Init::from_generator(&dev, seeds.model))?;
    println!("model: {} ({} parameters)", model.describe(), model.num_parameters());
    let mut opt = Adam::new(model.parameters(), args.lr);
    // The sampling noise of training (checkpointed); evaluation restarts one
    // fixed stream so every epoch's validation loss sees the same noise.
    let noise = Cell::new(seeds.augment);
    let eval_noise = seeds.extra;

    let run = RunDir::create(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let stop = control::Stop::install();
    let mut progress = Progress::new(args.epochs);
    if args.quiet {
        progress = progress.without_bar();
    }
    let mut profiler = profiling::StepProfiler::new(args.profile, args.out_dir.join("profile.json"));
    // The VAE's two terms, printed under each epoch's summary.
    let terms = RefCell::new((RunningMean::new(), RunningMean::new()));
    let fit = Trainer::new(&mut model, &mut opt, |m: &Model, b: Batch| {
        let mut g = noise.get();
        let (total, recon, kl) = m.loss(&b.images, &mut g);
        noise.set(g);
        if let Some(k) = &kl {
            let (r, kls) = &mut *terms.borrow_mut();
            r.update_tensor(&recon.detach(), b.len);
            kls.update_tensor(&k.detach(), b.len);
        }
        StepOutput::new(total, b.len)
    })
    .epochs(args.epochs)
    .rng("noise", &noise)
    .evaluate(|m| {
        let mut val = RunningMean::new();
        no_grad(|| -> Result<(), BoxError> {
            let mut g = eval_noise;
            for batch in test_loader.epoch(0) {
                let b = batch?;
                val.update_tensor(&m.loss(&b.images, &mut g).0, b.len);
            }
            Ok(())
        })?;
        Ok(Evaluation { loss: val.mean(), accuracy: None })
    })
    .on_batch_end(|b| {
        // The batch loss on the bar every 20 batches (each read is a sync).
        if let (0, Some(p)) = (b.batch % 20, b.progress) {
            p.set_message(format!("loss {:.2}", b.loss.item()));
        }
    })
    .on_epoch_end(|_| {
        let (r, kl) = &mut *terms.borrow_mut();
        if kl.count() > 0 {
            println!("          reconstruction (BCE per image) {:.2}  KL {:.2}", r.mean(), kl.mean());
        }
        r.reset();
        kl.reset();
    })
    .run_dir(run.clone())
    .tensorboard(!args.no_tensorboard)
    .resume(args.resume)
    .stop_flag(stop.flag())
    .progress(progress)
    .samples_per_epoch(train_loader.dataset().len())
    .around_step(|step| profiler.step(&dev, &mut *step))
    .fit(train_loader.num_batches(), |epoch, skip| train_loader.epoch_from(epoch, skip))
    .map_err(|e| control::fit_error(e, &[("--batch-size", args.batch_size)]))?;
    if let Outcome::Interrupted { epoch, batches } = fit.outcome {
        println!("{}", control::resume_hint(&format!("batch {batches} of epoch {epoch}")));
        return Ok(());
    }
    let net = model.module();

    // 16 test digits: two pairs of rows, originals above their reconstructions.
    let (originals, recon) = no_grad(|| -> Result<(Vec<f32>, Vec<f32>)> {
        let b = test_loader.epoch(0).next().context("empty test set")??;
        let x = b.images.narrow(0, 0, 16.min(b.len));
        Ok((x.to_vec(), net.forward(&x).to_vec()))
    })?;
    let (n, cols, px) = (originals.len() / 784, 8, 784);
    let mut grid = Vec::with_capacity(2 * n * px);
    for start in (0..n).step_by(cols) {
        let end = (start + cols).min(n);
        grid.extend_from_slice(&originals[start * px..end * px]);
        grid.resize(grid.len() + (start + cols - end) * px, 0.0);
        grid.extend_from_slice(&recon[start * px..end * px]);
        grid.resize(grid.len() + (start + cols - end) * px, 0.0);
    }
    let recon_png = args.out_dir.join("reconstructions.png");
    write_grid(&recon_png, &grid, grid.len() / px, cols)?;
    println!("wrote {}", recon_png.display());
    if let Model::Vae(vae) = &model {
        let samples = no_grad(|| vae.sample(64, &mut Generator::new(args.seed ^ 0x5eed)).to_vec());
        let samples_png = args.out_dir.join("samples.png");
        write_grid(&samples_png, &samples, 64, 8)?;
        println!("wrote {}", samples_png.display());
    }
    if let Some(r) = fit.history.last() {
        println!(
            "final train loss {:.2}, test loss {:.2} (per image); total time {:.1?}; peak device memory {:.1} MB",
            r.train_loss,
            r.val_loss.unwrap_or(f64::NAN),
            started.elapsed(),
            dev.stats().bytes_peak as f64 / 1e6
        );
    }
    Ok(())
}

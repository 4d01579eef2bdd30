//! The soak runs' training loops (issue 15): each example's training step at
//! a small size, run step after step while the device counters are sampled,
//! and the verdict on whether memory stayed flat. Shared by `benches/soak.rs`
//! (5,000 steps) and `tests/main/soak_short.rs` (the CI-sized check); both include
//! `examples/common/amp.rs` as `crate::amp`, the autocast/GradScaler recipe
//! the examples run through `Trainer::amp` (off here: the f32 step, as the
//! examples default).
//!
//! Each loop does what its example does per step: the batch from the same
//! kind of source (the DataLoader over bundled MNIST or synthetic CIFAR, the
//! text streams or random windows of the bundled corpus), forward, loss,
//! zero_grad, backward, (clipping,) optimizer step, scheduler step where the
//! example steps one per batch, the on-device metric updates, `flush`, and
//! the example's read-backs (every 10 steps for the text models, every 20
//! for the VAE, at each epoch's end for the image classifiers).

use std::sync::Arc;
use std::time::Instant;

use wgrad::autograd::{CrossEntropyOptions, HostRng};
use wgrad::data::cifar::synthetic;
use wgrad::data::text::{bundled_corpus, read_text, split_tail, windows, CharVocab, Streams};
use wgrad::data::{mnist, Augment, Batch, Batches, DataLoader, ImageCollate, ImageDataset};
use wgrad::models::{mnist_cnn, Gpt, ResNet, RnnLm, Shortcut, Vae};
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Adam, AdamW, AdamWOptions, Optimizer, Sgd, SgdOptions};
use wgrad::nn::schedule::{CosineAnnealingLR, LinearWarmup, LrScheduler, MultiStepLR};
use wgrad::nn::train::{Accuracy, RunningMean, TruncatedBptt};
use wgrad::nn::Sequential;
use wgrad::prelude::*;
use wgrad::StatsSnapshot;

use crate::amp::Amp;

/// The examples, by the name of their file in `examples/`.
pub const MODELS: [&str; 5] = ["mnist", "cifar10_resnet", "char_lstm", "tiny_gpt", "vae"];

/// One example's training loop, advanced one optimizer step at a time.
pub trait Loop {
    /// Runs one training step with the example's per-step bookkeeping.
    fn step(&mut self);
    /// The configuration, for the report.
    fn describe(&self) -> String;
}

/// The training loop of example `name` on `dev`, sized for soaking;
/// `total_steps` sizes the schedules the example sizes by its run length.
///
/// # Panics
/// On an unknown name.
pub fn build(name: &str, total_steps: usize, dev: &Device) -> Box<dyn Loop> {
    match name {
        "mnist" => Box::new(Mnist::new(dev)),
        "cifar10_resnet" => Box::new(Cifar::new(dev)),
        "char_lstm" => Box::new(CharLstm::new(dev)),
        "tiny_gpt" => Box::new(TinyGpt::new(total_steps, dev)),
        "vae" => Box::new(VaeLoop::new(dev)),
        other => panic!("unknown model {other:?} (one of {MODELS:?})"),
    }
}

/// Batches from a DataLoader, epoch after epoch, as a training loop takes them.
struct Epochs {
    loader: DataLoader,
    epoch: usize,
    batches: Batches<ImageDataset, ImageCollate>,
}

impl Epochs {
    fn new(loader: DataLoader) -> Self {
        let batches = loader.epoch(0);
        Epochs { loader, epoch: 0, batches }
    }

    /// The next batch, and whether it is the last of its epoch (when the
    /// examples evaluate, read their metrics back and step epoch schedules).
    fn next(&mut self) -> (Batch, bool) {
        let b = self.batches.next().expect("a non-empty epoch").expect("reading a batch");
        let last = self.batches.len() == 0;
        if last {
            self.epoch += 1;
            self.batches = self.loader.epoch(self.epoch);
        }
        (b, last)
    }
}

/// The first `n` bundled MNIST training digits (the examples' `--limit`):
/// short epochs, so the soak crosses many epoch boundaries.
fn mnist_subset(n: usize) -> ImageDataset {
    let mut train = mnist::load(&mnist::bundled_dir(), mnist::Split::Train).expect("bundled MNIST");
    train.truncate(n);
    train
}

/// MNIST sizes: batch 8 of the first 512 digits (64 steps an epoch).
const MNIST_BATCH: usize = 8;
const MNIST_DIGITS: usize = 512;

/// `examples/mnist.rs`: the 34,826-parameter CNN, Adam 1e-3, cross-entropy,
/// on-device loss mean and accuracy read back at each epoch's end.
struct Mnist {
    model: Sequential,
    opt: Adam,
    amp: Amp,
    data: Epochs,
    loss_avg: RunningMean,
    acc: Accuracy,
    dev: Device,
}

impl Mnist {
    fn new(dev: &Device) -> Self {
        let model = mnist_cnn(&mut Init::new(dev, 0));
        let opt = Adam::new(model.parameters(), 1e-3);
        let loader = DataLoader::new(Arc::new(mnist_subset(MNIST_DIGITS)), MNIST_BATCH, dev)
            .seed(0)
            .normalize(&[0.1307], &[0.3081]);
        Mnist {
            model,
            opt,
            amp: Amp::new(false),
            data: Epochs::new(loader),
            loss_avg: RunningMean::new(),
            acc: Accuracy::new(),
            dev: dev.clone(),
        }
    }
}

impl Loop for Mnist {
    fn step(&mut self) {
        let (b, last) = self.data.next();
        let (logits, loss) = self.amp.forward(|| {
            let logits = self.model.forward(&b.images);
            let loss = CrossEntropyLoss::default().forward(&logits, &b.labels);
            (logits, loss)
        });
        self.opt.zero_grad();
        self.amp.backward_step(&loss, &mut self.opt, None);
        self.loss_avg.update_tensor(&loss.detach(), b.len);
        self.acc.update(&logits.detach(), &b.labels);
        self.dev.flush().expect("flush");
        if last {
            read_back(&[self.loss_avg.mean(), self.acc.value()]);
            (self.loss_avg, self.acc) = (RunningMean::new(), Accuracy::new());
        }
    }

    fn describe(&self) -> String {
        format!("mnist_cnn, Adam 1e-3, batch {MNIST_BATCH}, first {MNIST_DIGITS} bundled digits")
    }
}

/// CIFAR sizes: ResNet-8 (the example's `--model resnet8`), batch 4 of 64
/// synthetic 3x32x32 images (16 steps an epoch).
const CIFAR_DEPTH: usize = 8;
const CIFAR_BATCH: usize = 4;
const CIFAR_IMAGES: usize = 64;

/// `examples/cifar10_resnet.rs`: a CIFAR ResNet, SGD 0.1 momentum 0.9 wd
/// 1e-4, crop+flip+normalise on the device, cross-entropy, the step
/// schedule stepped at each epoch's end with the metrics read back.
struct Cifar {
    model: ResNet,
    opt: Sgd,
    sched: MultiStepLR,
    amp: Amp,
    data: Epochs,
    augment: Augment,
    noise: Generator,
    loss_avg: RunningMean,
    acc: Accuracy,
    dev: Device,
}

impl Cifar {
    fn new(dev: &Device) -> Self {
        let model = ResNet::cifar(CIFAR_DEPTH, 10, Shortcut::ZeroPad, &mut Init::new(dev, 0));
        let opts = SgdOptions { momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
        let mut opt = Sgd::with_options(model.parameters(), 0.1, opts);
        // Milestones far apart so the lr changes a few times in a soak.
        let sched = MultiStepLR::new(&mut opt, &[100, 200], 0.1);
        let (mean, std) = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]);
        let loader = DataLoader::new(Arc::new(synthetic(CIFAR_IMAGES, 10, 0)), CIFAR_BATCH, dev).seed(0);
        Cifar {
            model,
            opt,
            sched,
            amp: Amp::new(false),
            data: Epochs::new(loader),
            augment: Augment::new().crop_flip(4, 0.5).normalize(&mean, &std),
            noise: Generator::new(1),
            loss_avg: RunningMean::new(),
            acc: Accuracy::new(),
            dev: dev.clone(),
        }
    }
}

impl Loop for Cifar {
    fn step(&mut self) {
        let (b, last) = self.data.next();
        let x = self.augment.apply(&b.images, &mut self.noise);
        let (logits, loss) = self.amp.forward(|| {
            let logits = self.model.forward(&x);
            let loss = CrossEntropyLoss::default().forward(&logits, &b.labels);
            (logits, loss)
        });
        self.opt.zero_grad();
        self.amp.backward_step(&loss, &mut self.opt, None);
        self.loss_avg.update_tensor(&loss.detach(), b.len);
        self.acc.update(&logits.detach(), &b.labels);
        self.dev.flush().expect("flush");
        if last {
            read_back(&[self.loss_avg.mean(), self.acc.value()]);
            (self.loss_avg, self.acc) = (RunningMean::new(), Accuracy::new());
            self.sched.step(&mut self.opt);
        }
    }

    fn describe(&self) -> String {
        format!(
            "ResNet-{CIFAR_DEPTH} (cifar, zero-pad shortcuts), SGD 0.1 m0.9 wd1e-4, MultiStepLR per epoch, \
             batch {CIFAR_BATCH} of {CIFAR_IMAGES} synthetic 3x32x32 with crop+flip"
        )
    }
}

/// The bundled corpus as the text examples split it: training ids and the vocabulary size.
fn corpus() -> (Vec<u32>, usize) {
    let raw = read_text(bundled_corpus()).expect("bundled corpus");
    let vocab = CharVocab::from_text(&raw);
    let ids = vocab.encode(&raw).expect("encoding the corpus");
    (split_tail(&ids, 0.1).train, vocab.len())
}

/// What both text examples do after each step: the round's loss mean on
/// the device, and the latest loss read back every 10 steps (their progress
/// bar message).
#[derive(Default)]
struct Tally {
    step: usize,
    round_loss: RunningMean,
}

impl Tally {
    fn record(&mut self, loss: &Tensor, n: usize) {
        self.round_loss.update_tensor(loss, n);
        self.step += 1;
        if self.step.is_multiple_of(10) {
            read_back(&[loss.item() as f64]);
        }
        // The examples take the round's mean at each evaluation (default every 100 steps).
        if self.step.is_multiple_of(100) {
            read_back(&[std::mem::take(&mut self.round_loss).mean()]);
        }
    }
}

/// Text sizes: batch 4 sequences of 16 characters, gradient clipping at 1.
const TEXT_BATCH: usize = 4;
const TEXT_LEN: usize = 16;
const CLIP: f32 = 1.0;

/// `examples/char_lstm.rs`: embedding 16, 2-layer LSTM of 32, Adam 2e-3,
/// truncated BPTT over parallel streams (state carried, detached), clipping.
struct CharLstm {
    model: RnnLm,
    opt: Adam,
    amp: Amp,
    streams: Streams,
    chunks: usize,
    tbptt: TruncatedBptt,
    tally: Tally,
    vocab: usize,
    dev: Device,
}

impl CharLstm {
    fn new(dev: &Device) -> Self {
        let (train, vocab) = corpus();
        let model = RnnLm::builder(vocab).embed(16).hidden(32).layers(2).build(&mut Init::new(dev, 0));
        let opt = Adam::new(model.parameters(), 2e-3);
        let streams = Streams::new(&train, TEXT_BATCH);
        let chunks = streams.chunks(TEXT_LEN);
        CharLstm {
            model,
            opt,
            amp: Amp::new(false),
            streams,
            chunks,
            tbptt: TruncatedBptt::new(),
            tally: Tally::default(),
            vocab,
            dev: dev.clone(),
        }
    }
}

impl Loop for CharLstm {
    fn step(&mut self) {
        let k = self.tally.step % self.chunks;
        if k == 0 {
            self.tbptt.reset();
        }
        let (x, y) = self.streams.chunk(k, TEXT_LEN, &self.dev);
        let n = y.numel();
        let loss = self.amp.forward(|| {
            let (logits, state) = self.model.forward_with_state(&x, self.tbptt.state());
            self.tbptt.carry(&state);
            logits.reshape(&[n, self.vocab]).cross_entropy(&y.reshape(&[n]), &CrossEntropyOptions::default())
        });
        let params = self.model.parameters();
        self.amp.backward_step(&loss, &mut self.opt, Some((&params[..], CLIP)));
        self.opt.zero_grad();
        self.tally.record(&loss, n);
    }

    fn describe(&self) -> String {
        format!("RnnLm LSTM embed 16 hidden 32 x2, Adam 2e-3, clip {CLIP}, TBPTT batch {TEXT_BATCH} x {TEXT_LEN} chars")
    }
}

/// `examples/tiny_gpt.rs`: a 2-layer, 2-head, width-32 GPT with a context of
/// 16, AdamW 1e-3 wd 0.01, linear warm-up then cosine per step, clipping,
/// random windows of the text.
struct TinyGpt {
    model: Gpt,
    opt: AdamW,
    sched: Box<dyn LrScheduler>,
    amp: Amp,
    train: Vec<u32>,
    rng: HostRng,
    tally: Tally,
    dev: Device,
}

impl TinyGpt {
    fn new(total_steps: usize, dev: &Device) -> Self {
        let (train, vocab) = corpus();
        let model = Gpt::builder(vocab, TEXT_LEN).layers(2).heads(2).width(32).build(&mut Init::new(dev, 0));
        let opts = AdamWOptions { weight_decay: 0.01, ..Default::default() };
        let mut opt = AdamW::with_options(model.parameters(), 1e-3, opts);
        let warmup = 50.min(total_steps / 2);
        let cosine = CosineAnnealingLR::new(&mut opt, total_steps.saturating_sub(warmup).max(1), 1e-4);
        let sched = Box::new(LinearWarmup::new(&mut opt, cosine, warmup, 0.01));
        TinyGpt {
            model,
            opt,
            sched,
            amp: Amp::new(false),
            train,
            rng: HostRng::new(0x5EED),
            tally: Tally::default(),
            dev: dev.clone(),
        }
    }
}

impl Loop for TinyGpt {
    fn step(&mut self) {
        let max_start = (self.train.len() - TEXT_LEN - 1) as u64;
        let starts: Vec<usize> = (0..TEXT_BATCH).map(|_| (self.rng.next_u64() % (max_start + 1)) as usize).collect();
        let (x, y) = windows(&self.train, &starts, TEXT_LEN, &self.dev);
        let loss = self.amp.forward(|| self.model.loss(&x, &y));
        let params = self.model.parameters();
        self.amp.backward_step(&loss, &mut self.opt, Some((&params[..], CLIP)));
        self.opt.zero_grad();
        self.sched.step(&mut self.opt);
        self.tally.record(&loss, y.numel());
    }

    fn describe(&self) -> String {
        format!(
            "Gpt 2 layers, 2 heads, width 32, context {TEXT_LEN}, AdamW 1e-3 wd 0.01, warm-up+cosine, clip {CLIP}, \
             batch {TEXT_BATCH} random windows"
        )
    }
}

/// `examples/vae.rs`: the VAE (400 hidden, 20 latent) on MNIST pixels in
/// [0, 1], Adam 1e-3, negative ELBO with one reparameterised sample, three
/// on-device means, the total read back every 20 steps and all at epoch end.
struct VaeLoop {
    model: Vae,
    opt: Adam,
    data: Epochs,
    noise: Generator,
    means: [RunningMean; 3],
    step: usize,
    dev: Device,
}

impl VaeLoop {
    fn new(dev: &Device) -> Self {
        let model = Vae::new(400, 20, &mut Init::new(dev, 0));
        let opt = Adam::new(model.parameters(), 1e-3);
        let loader = DataLoader::new(Arc::new(mnist_subset(MNIST_DIGITS)), MNIST_BATCH, dev).seed(0);
        VaeLoop {
            model,
            opt,
            data: Epochs::new(loader),
            noise: Generator::new(1),
            means: Default::default(),
            step: 0,
            dev: dev.clone(),
        }
    }
}

impl Loop for VaeLoop {
    fn step(&mut self) {
        let (b, last) = self.data.next();
        let (total, recon, kl) = self.model.loss(&b.images, &mut self.noise);
        self.opt.zero_grad();
        total.backward();
        self.opt.step();
        for (mean, t) in self.means.iter_mut().zip([&total, &recon, &kl]) {
            mean.update_tensor(&t.detach(), b.len);
        }
        self.dev.flush().expect("flush");
        self.step += 1;
        if self.step.is_multiple_of(20) {
            read_back(&[self.means[0].mean()]);
        }
        if last {
            read_back(&self.means.iter().map(RunningMean::mean).collect::<Vec<_>>());
            self.means = Default::default();
        }
    }

    fn describe(&self) -> String {
        format!("Vae 400 hidden 20 latent, Adam 1e-3, batch {MNIST_BATCH}, first {MNIST_DIGITS} bundled digits")
    }
}

/// A metric read back, checked so a diverged run does not soak silently.
fn read_back(values: &[f64]) {
    for v in values {
        assert!(v.is_finite(), "a training metric read back as {v}");
    }
}

/// How far `bytes_live` may sit above its warm-up value at a sample: the
/// one-element metric accumulators (a loss mean, a correct count) are
/// alive or not depending on where in its epoch or evaluation round a
/// sample falls, a few hundred bytes at the GPU pool's 256-byte
/// granularity. A leak of even one byte a step passes this within the
/// 4,500 steps after a 5,000-step soak's warm-up, and moves the peak.
pub const LIVE_SLACK: u64 = 4096;

/// How far the process's resident memory may rise after warm-up in a
/// whole-process soak (`benches/soak.rs`; the test binary runs other tests
/// beside its soaks, so it does not judge it): allocator slack, far below
/// a driver that keeps something per launch (Mesa 22's lavapipe kept a
/// compiled shader per LSTM launch, gigabytes over a soak).
pub const RESIDENT_SLACK: u64 = 64 << 20;

/// The device counters at one step.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Steps run when sampled.
    pub step: usize,
    /// The counters then.
    pub stats: StatsSnapshot,
    /// The process's resident memory then, in bytes (0 where the OS does
    /// not say): on a CPU adapter the driver's memory, which the counters
    /// do not see.
    pub resident: u64,
}

impl Sample {
    fn now(step: usize, dev: &Device) -> Sample {
        Sample { step, stats: dev.stats(), resident: wgrad::gpu_core::testing::resident_bytes().unwrap_or(0) }
    }
}

/// What a soak measured: the sample at the end of warm-up, the samples
/// after it, and the steps per second after warm-up.
#[derive(Clone, Debug)]
pub struct Soak {
    /// The counters at the end of warm-up.
    pub warm: Sample,
    /// The counters every `every` steps after warm-up (the last at the final step).
    pub after: Vec<Sample>,
    /// Steps per second after warm-up (sampling included, negligible).
    pub steps_per_s: f64,
    /// Steps run (fewer than asked when a deadline stopped the run).
    pub steps_run: usize,
}

/// Runs `steps` steps of `lp` on `dev`: `warmup` steps, then samples every
/// `every` steps (and at the last), each sample also passed to `seen` as it
/// is taken (progress of a long run). With a `deadline` the run stops at the
/// first step that ends past it, sampled there: a shorter soak whose
/// [`Soak::steps_run`] says how far it got.
pub fn soak(
    lp: &mut dyn Loop,
    dev: &Device,
    (steps, warmup, every): (usize, usize, usize),
    deadline: Option<Instant>,
    seen: &mut dyn FnMut(&Sample),
) -> Soak {
    assert!(warmup < steps && every > 0, "soak: warm-up {warmup} must be below the {steps} steps");
    let late = || deadline.is_some_and(|d| Instant::now() >= d);
    // On a GPU the warm-up also lasts until the device has submitted a few
    // batches (at most half the steps): the pool settles its order of
    // buffers, which replay relies on, over the first batches, and a loop
    // that reads back every tenth step submits rarely.
    let settled = |s: usize| s >= warmup && (!dev.is_gpu() || dev.stats().submissions >= 3 || s >= steps / 2);
    let mut warmup = 0;
    while !settled(warmup) {
        warmup += 1;
        lp.step();
        if late() {
            let warm = Sample::now(warmup, dev);
            seen(&warm);
            return Soak { warm, after: Vec::new(), steps_per_s: 0.0, steps_run: warmup };
        }
    }
    let warm = Sample::now(warmup, dev);
    seen(&warm);
    let mut after = Vec::new();
    let t = Instant::now();
    let mut steps_run = warmup;
    for s in warmup + 1..=steps {
        lp.step();
        steps_run = s;
        let stop = late();
        if (s - warmup).is_multiple_of(every) || s == steps || stop {
            let sample = Sample::now(s, dev);
            seen(&sample);
            after.push(sample);
        }
        if stop {
            break;
        }
    }
    let steps_per_s = (steps_run - warmup) as f64 / t.elapsed().as_secs_f64();
    Soak { warm, after, steps_per_s, steps_run }
}

impl Soak {
    /// The last sample.
    pub fn last(&self) -> StatsSnapshot {
        self.after.last().map_or(self.warm.stats, |s| s.stats)
    }

    /// Buffers the driver allocated after warm-up (pool misses).
    pub fn buffers_growth(&self) -> u64 {
        self.last().buffers_created - self.warm.stats.buffers_created
    }

    /// The most `bytes_live` rose above its warm-up value at any sample (0 when it never did).
    pub fn live_growth(&self) -> u64 {
        let max = self.after.iter().map(|s| s.stats.bytes_live).max().unwrap_or(0);
        max.saturating_sub(self.warm.stats.bytes_live)
    }

    /// How far the peak of `bytes_live` rose after warm-up.
    pub fn peak_growth(&self) -> u64 {
        self.last().bytes_peak - self.warm.stats.bytes_peak
    }

    /// The most the process's resident memory rose above its warm-up
    /// value at any sample (0 when it never did or the OS does not say).
    pub fn resident_growth(&self) -> u64 {
        let max = self.after.iter().map(|s| s.resident).max().unwrap_or(0);
        max.saturating_sub(self.warm.resident)
    }

    /// Smallest and largest `bytes_live` over the samples after warm-up.
    pub fn live_range(&self) -> (u64, u64) {
        let live = self.after.iter().map(|s| s.stats.bytes_live);
        (live.clone().min().unwrap_or(0), live.max().unwrap_or(0))
    }

    /// Smallest and largest `buffers_created` over the samples after warm-up.
    pub fn buffers_range(&self) -> (u64, u64) {
        let b = self.after.iter().map(|s| s.stats.buffers_created);
        (b.clone().min().unwrap_or(0), b.max().unwrap_or(0))
    }

    /// Why memory did not stay flat after warm-up, if it did not: any
    /// buffer the driver had to allocate, any new peak of `bytes_live`, or
    /// `bytes_live` more than [`LIVE_SLACK`] above its warm-up value. The
    /// loops' steady state reuses the same pooled buffers every step, so a
    /// tensor leaked per step shows as growth at every sample.
    pub fn verdict(&self) -> Result<(), String> {
        let mut why = Vec::new();
        if self.buffers_growth() > 0 {
            why.push(format!("buffers_created grew by {} after warm-up", self.buffers_growth()));
        }
        if self.live_growth() > LIVE_SLACK {
            why.push(format!("bytes_live rose {} B above its warm-up value", self.live_growth()));
        }
        if self.peak_growth() > 0 {
            why.push(format!("bytes_peak rose {} B after warm-up", self.peak_growth()));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("; "))
        }
    }

    /// [`verdict`](Self::verdict), and the process's resident memory
    /// within [`RESIDENT_SLACK`] of its warm-up value: for a process that
    /// runs nothing but its soaks, one after another.
    pub fn whole_process_verdict(&self) -> Result<(), String> {
        let grown = self.resident_growth();
        if grown <= RESIDENT_SLACK {
            return self.verdict();
        }
        let resident = format!("the process's resident memory rose {:.1} MB after warm-up", grown as f64 / 1e6);
        Err(match self.verdict() {
            Ok(()) => resident,
            Err(why) => format!("{why}; {resident}"),
        })
    }
}

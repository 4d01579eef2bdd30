//! A small GPT (decoder-only Transformer, pre-LN, causal attention, GELU,
//! learned positions) trained as a character-level language model on the
//! bundled Shakespeare tragedies (or `--text FILE`), with AdamW, linear
//! warm-up then cosine decay, and gradient clipping by global norm. Batches
//! are random windows of the training text. Every `--eval-every` steps it
//! reports validation loss and perplexity on the held-out last 10%, saves
//! checkpoints and curves in `--out-dir`; at the end it prints a sample
//! drawn with temperature and top-k.
//!
//! `cargo run --release --example tiny_gpt -- --help`

#[path = "common/amp.rs"]
mod amp;
mod common;
#[path = "common/control.rs"]
mod control;
#[path = "common/profiling.rs"]
mod profiling;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use common::lm::{finish_round, report, resume, save_on_stop, Corpus, Tally, TextArgs};
use wgrad::autograd::HostRng;
use wgrad::data::text::windows;
use wgrad::models::{Gpt, GptConfig, Sampler, Sampling};
use wgrad::nn::checkpoint::TrainingCheckpoint;
use wgrad::nn::optim::{AdamW, AdamWOptions, Optimizer};
use wgrad::nn::schedule::{CosineAnnealingLR, LinearWarmup, LrScheduler};
use wgrad::nn::train::{seed_everything, History, Progress, RunDir, RunningMean};
use wgrad::prelude::*;

/// Train a small GPT on characters.
#[derive(Parser, Debug)]
#[command(
    after_help = "WGRAD_DEVICE=gpu|cpu|<adapter name> picks the device (default: best GPU, else the CPU backend)."
)]
struct Args {
    #[command(flatten)]
    run: TextArgs,
    /// Transformer blocks.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    heads: usize,
    /// Model width (embedding size).
    #[arg(long, default_value_t = 128)]
    width: usize,
    /// Peak AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f32,
    /// Linear warm-up steps before the cosine decay.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Dropout.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Use the token embedding as the output head.
    #[arg(long)]
    tie_weights: bool,
    /// Where last/best checkpoints, history.csv, curves.png and vocab.txt go.
    #[arg(long, default_value = "runs/tiny_gpt")]
    out_dir: PathBuf,
}

/// Mean next-character loss over consecutive full windows of `ids`, each
/// predicted from its own start (so early positions see little context).
fn window_loss(model: &Gpt, ids: &[u32], batch: usize, len: usize, dev: &Device) -> f64 {
    let len = len.min(ids.len() - 1);
    let starts: Vec<usize> = (0..(ids.len() - 1) / len).map(|w| w * len).collect();
    let mut mean = RunningMean::new();
    no_grad(|| {
        for chunk in starts.chunks(batch) {
            let (x, y) = windows(ids, chunk, len, dev);
            mean.update_tensor(&model.loss(&x, &y), y.numel());
        }
    });
    mean.mean()
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.run.steps > 0 && args.run.eval_every > 0 && args.run.seq_len > 0 && args.run.batch > 0,
        "sizes must be positive"
    );
    let started = Instant::now();
    let dev = Device::from_env()?;
    println!("device: {} ({})", dev.name(), dev.reason());
    let corpus = Corpus::load(args.run.text.as_deref(), args.run.eval_text.as_deref())?;
    let run = RunDir::create(&args.out_dir)?;
    std::fs::write(args.out_dir.join("vocab.txt"), corpus.vocab.as_string())?;

    let mut seeds = seed_everything(args.run.seed);
    let mut config = GptConfig::new(corpus.vocab.len(), args.run.seq_len, args.layers, args.heads, args.width);
    config.dropout = args.dropout;
    config.tie_weights = args.tie_weights;
    let mut model =
        control::guard("building the model", &[("--width", args.width), ("--layers", args.layers)], || {
            Gpt::new(config, &mut seeds.model, &dev)
        })?;
    println!("model: {} ({} parameters)", model.describe(), model.num_parameters());
    let opts = AdamWOptions { weight_decay: args.weight_decay, ..Default::default() };
    let mut opt = AdamW::with_options(model.parameters(), args.lr, opts);
    let cosine =
        CosineAnnealingLR::new(&mut opt, args.run.steps.saturating_sub(args.warmup).max(1), args.lr as f64 * 0.1);
    let mut sched = LinearWarmup::new(&mut opt, cosine, args.warmup, 0.01);

    let rounds = args.run.steps.div_ceil(args.run.eval_every);
    let mut progress = Progress::new(rounds);
    if args.run.quiet {
        progress = progress.without_bar();
    }
    let mut history = History::new();
    let mut rng = HostRng::new(args.run.seed ^ 0x5EED);
    let max_start = corpus.train.len() - args.run.seq_len - 1;
    let mut tally = Tally::default();
    let mut profiler = profiling::StepProfiler::new(args.run.profile, args.out_dir.join("profile.json"));
    let mut amp = amp::Amp::new(args.run.amp);
    if args.run.resume {
        let (ck, h) = resume(&run, &dev)?;
        ck.restore(&model, &mut opt)?; // the dropout streams too
        sched.load_state_dict(&ck.scheduler)?;
        ck.restore_scaler(&mut amp.scaler)?;
        let batches = ck.rng.get("batches").context("the checkpoint has no batch sampler state")?;
        (rng, history, tally.step) = (HostRng(batches.seed), h, ck.step as usize);
    }
    // Everything the loop carries from step to step, for an exact resume.
    let checkpoint = |model: &Gpt, opt: &AdamW, sched: &dyn LrScheduler, amp: &amp::Amp, rng: HostRng, step, round| {
        let mut ck = TrainingCheckpoint::capture(model, opt).with_scaler(&amp.scaler);
        ck.scheduler = sched.state_dict();
        // A HostRng's whole state is one u64, kept as a generator's seed.
        ck.rng.insert("batches".into(), Generator { seed: rng.0, offset: 0 });
        (ck.step, ck.epoch) = (step as u64, round as u64);
        ck
    };
    let stop = control::Stop::install();
    let sizes = [("--batch", args.run.batch), ("--seq-len", args.run.seq_len), ("--width", args.width)];
    let train_time = Instant::now();
    for round in tally.step / args.run.eval_every + 1..=rounds {
        let round_steps = (round * args.run.eval_every).min(args.run.steps) - tally.step;
        progress.start_epoch(round, (round_steps * args.run.batch * args.run.seq_len) as u64);
        model.train();
        for _ in 0..round_steps {
            let starts: Vec<usize> =
                (0..args.run.batch).map(|_| (rng.next_u64() % (max_start as u64 + 1)) as usize).collect();
            let (x, y) = windows(&corpus.train, &starts, args.run.seq_len, &dev);
            let loss = control::guard("the training step", &sizes, || {
                profiler.step(&dev, || {
                    let loss = amp.forward(|| model.loss(&x, &y));
                    let params = model.parameters();
                    amp.backward_step(&loss, &mut opt, (args.run.clip > 0.0).then_some((&params[..], args.run.clip)));
                    opt.zero_grad();
                    loss
                })
            })?;
            sched.step(&mut opt);
            tally.record(&loss, y.numel(), &mut progress);
            if stop.requested() {
                drop(progress);
                return save_on_stop(&run, &checkpoint(&model, &opt, &sched, &amp, rng, tally.step, round - 1));
            }
        }
        model.eval();
        let val = control::guard("evaluation", &sizes, || {
            window_loss(&model, &corpus.val, args.run.batch, args.run.seq_len, &dev)
        })?;
        let ck = checkpoint(&model, &opt, &sched, &amp, rng, tally.step, round);
        finish_round(&run, &mut history, &mut progress, (tally.take_round_loss(), val), &ck, &model, &opt)?;
    }
    let secs = train_time.elapsed().as_secs_f64();
    let mut sampler =
        Sampler::new(Sampling { temperature: args.run.temperature, top_k: args.run.top_k }, args.run.seed);
    report(
        &corpus,
        &history,
        (tally.step, tally.tokens, secs),
        |ids| window_loss(&model, ids, args.run.batch, args.run.seq_len, &dev),
        &args.run.prompt,
        |prompt| model.generate(prompt, args.run.sample_len, &mut sampler, &dev),
    );
    println!("run folder: {} ({:.1} s in all)", args.out_dir.display(), started.elapsed().as_secs_f64());
    Ok(())
}

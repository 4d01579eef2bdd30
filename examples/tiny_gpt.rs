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

mod common;
#[path = "common/control.rs"]
mod control;
#[path = "common/distributed.rs"]
mod distributed;
#[path = "common/profiling.rs"]
mod profiling;

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use common::lm::{report, setup, train, TextArgs};
use wgrad::autograd::HostRng;
use wgrad::data::text::windows;
use wgrad::models::{Gpt, Sampler, Sampling};
use wgrad::nn::optim::{AdamW, AdamWOptions};
use wgrad::nn::schedule::{CosineAnnealingLR, LinearWarmup};
use wgrad::nn::train::{seed_everything, Evaluation, Every, RunningMean, StepOutput, Trainer};
use wgrad::prelude::*;

/// Train a small GPT on characters.
#[derive(Parser, Debug)]
#[command(after_help = DeviceSpec::HELP)]
pub(crate) struct Args {
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
    /// Record the training step once (forward, backward, dropout masks,
    /// AdamW's updates, the AMP scaler) and replay it without running its
    /// code (`Trainer::compiled`; on a GPU).
    #[arg(long)]
    compile: bool,
    /// Data-parallel training, one rank per process under `mpirun -np N`
    /// (built with `--features mpi`): `--batch` is each rank's share of a
    /// global batch drawn alike on every rank, gradients are averaged
    /// (docs/distributed.md). Alone, a group of one.
    #[arg(long)]
    distributed: bool,
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
    let (dev, corpus, run) = setup(&args.run, &args.out_dir)?;

    let seeds = seed_everything(args.run.seed);
    let config = Gpt::builder(corpus.vocab.len(), args.run.seq_len)
        .layers(args.layers)
        .heads(args.heads)
        .width(args.width)
        .dropout(args.dropout)
        .tie_weights(args.tie_weights);
    let mut model =
        control::guard("building the model", &[("--width", args.width), ("--layers", args.layers)], || {
            config.build(&mut Init::from_generator(&dev, seeds.model))
        })?;
    println!("model: {} ({} parameters)", model.describe(), model.num_parameters());
    let opts = AdamWOptions { weight_decay: args.weight_decay, ..Default::default() };
    let mut opt = AdamW::with_options(model.parameters(), args.lr, opts);
    let cosine =
        CosineAnnealingLR::new(&mut opt, args.run.steps.saturating_sub(args.warmup).max(1), args.lr as f64 * 0.1);
    let mut sched = LinearWarmup::new(&mut opt, cosine, args.warmup, 0.01);

    // Batches are random windows drawn from one host stream (checkpointed).
    // Data-parallel ranks all draw the global batch from the same stream
    // and each keeps its own `--batch` of it.
    let (seq_len, max_start) = (args.run.seq_len, corpus.train.len() - args.run.seq_len - 1);
    let rng = RefCell::new(HostRng::new(args.run.seed ^ 0x5EED));
    let (rank, world) = (group.rank(), group.world_size());
    let batch = |_step: usize| {
        let starts: Vec<usize> = (0..args.run.batch * world)
            .map(|_| (rng.borrow_mut().next_u64() % (max_start as u64 + 1)) as usize)
            .collect();
        windows(&corpus.train, &starts[rank * args.run.batch..(rank + 1) * args.run.batch], seq_len, &dev)
    };
    let mut replica = distributed::replica(args.distributed, &model, group)?;
    let loss = |m: &Gpt, x: &Tensor, y: &Tensor| StepOutput::new(m.loss(x, y), y.numel());
    let trainer = if args.compile {
        // The batch becomes two input tensors outside the recorded step.
        let inputs = |(x, y): (Tensor, Tensor)| vec![x, y];
        Trainer::compiled(&mut model, &mut opt, inputs, move |m: &Gpt, t: &[Tensor]| loss(m, &t[0], &t[1]))
    } else {
        Trainer::new(&mut model, &mut opt, move |m: &Gpt, (x, y): (Tensor, Tensor)| loss(m, &x, &y))
    }
    .schedule(&mut sched, Every::Step)
    .state("batches", &rng)
    .evaluate(|m| Ok(Evaluation { loss: window_loss(m, &corpus.val, args.run.batch, seq_len, &dev), accuracy: None }));
    let trainer = match replica.as_mut() {
        Some(r) => trainer.data_parallel(r),
        None => trainer,
    };
    let sizes = [("--batch", args.run.batch), ("--seq-len", seq_len), ("--width", args.width)];
    let Some(trained) = train(trainer, &args.run, (&run, &dev), &sizes, &batch)? else { return Ok(()) };

    if args.compile {
        println!("compiled step: {} steps replayed from a recorded graph", dev.stats().graphs_replayed);
    }
    model.eval(); // the Trainer leaves it training
    let mut sampler =
        Sampler::new(Sampling { temperature: args.run.temperature, top_k: args.run.top_k }, args.run.seed);
    report(
        &corpus,
        &trained,
        |ids| window_loss(&model, ids, args.run.batch, seq_len, &dev),
        &args.run.prompt,
        |prompt| model.generate(prompt, args.run.sample_len, &mut sampler, &dev),
    );
    println!("run folder: {} ({:.1} s in all)", args.out_dir.display(), started.elapsed().as_secs_f64());
    Ok(())
}

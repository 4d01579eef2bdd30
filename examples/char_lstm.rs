//! A character-level LSTM language model (char-rnn) on the bundled
//! Shakespeare tragedies (or `--text FILE`): embedding, a 2-layer LSTM and a
//! linear head, trained with truncated BPTT over `--batch` parallel streams
//! of the text (the state carries across chunks, detached), Adam and
//! gradient clipping by global norm. Every `--eval-every` steps it reports
//! validation loss and perplexity on the held-out last 10%, saves
//! checkpoints and curves in `--out-dir`; at the end it prints a sample.
//!
//! `cargo run --release --example char_lstm -- --help`

mod common;
#[path = "common/control.rs"]
mod control;
#[path = "common/profiling.rs"]
mod profiling;

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use common::lm::{report, setup, train, TextArgs};
use wgrad::autograd::CrossEntropyOptions;
use wgrad::data::text::Streams;
use wgrad::models::{RnnLm, Sampler, Sampling};
use wgrad::nn::optim::Adam;
use wgrad::nn::train::{seed_everything, Evaluation, RunningMean, StepOutput, Trainer, TruncatedBptt};
use wgrad::prelude::*;

/// Train a character-level LSTM language model.
#[derive(Parser, Debug)]
#[command(after_help = DeviceSpec::HELP)]
pub(crate) struct Args {
    #[command(flatten)]
    run: TextArgs,
    /// Recurrent layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Hidden units per layer.
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Character embedding size.
    #[arg(long, default_value_t = 64)]
    embed: usize,
    /// Dropout between layers and before the head.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Adam learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Where last/best checkpoints, history.csv, curves.png and vocab.txt go.
    #[arg(long, default_value = "runs/char_lstm")]
    out_dir: PathBuf,
}

/// Mean next-character loss over `ids`, read as `batch` streams in chunks with the state carried.
fn stream_loss(model: &RnnLm, ids: &[u32], batch: usize, seq_len: usize, dev: &Device) -> f64 {
    let streams = Streams::new(ids, batch.min(ids.len() / 2).max(1));
    let mut mean = RunningMean::new();
    let mut tbptt = TruncatedBptt::new();
    no_grad(|| {
        for k in 0..streams.chunks(seq_len) {
            let (x, y) = streams.chunk(k, seq_len, dev);
            let (logits, state) = model.forward_with_state(&x, tbptt.state());
            tbptt.carry(&state);
            let v = logits.shape()[2];
            let loss = logits
                .reshape(&[y.numel(), v])
                .cross_entropy(&y.reshape(&[y.numel()]), &CrossEntropyOptions::default());
            mean.update_tensor(&loss, y.numel());
        }
    });
    mean.mean()
}

fn main() -> Result<()> {
    run(Args::parse())
}

/// The whole run (also driven end to end by `tests/examples.rs`).
pub(crate) fn run(args: Args) -> Result<()> {
    let started = Instant::now();
    let (dev, corpus, run) = setup(&args.run, &args.out_dir)?;

    let seeds = seed_everything(args.run.seed);
    let config = RnnLm::builder(corpus.vocab.len()).embed(args.embed).hidden(args.hidden).layers(args.layers);
    let mut model =
        control::guard("building the model", &[("--hidden", args.hidden), ("--layers", args.layers)], || {
            config.dropout(args.dropout).build(&mut Init::from_generator(&dev, seeds.model))
        })?;
    println!("model: {} ({} parameters)", model.describe(), model.num_parameters());
    let mut opt = Adam::new(model.parameters(), args.lr);

    let (seq_len, vocab) = (args.run.seq_len, corpus.vocab.len());
    let streams = Streams::new(&corpus.train, args.run.batch);
    let chunks = streams.chunks(seq_len);
    // Step i trains chunk i mod chunks; the state carries from chunk to chunk.
    let batch = |i: usize| (i % chunks, streams.chunk(i % chunks, seq_len, &dev));
    let tbptt = RefCell::new(TruncatedBptt::new());
    let trainer = Trainer::new(&mut model, &mut opt, |m: &RnnLm, (k, (x, y)): (usize, (Tensor, Tensor))| {
        if k == 0 {
            tbptt.borrow_mut().reset(); // a new pass over the streams starts from the zero state
        }
        let (logits, state) = m.forward_with_state(&x, tbptt.borrow().state());
        tbptt.borrow_mut().carry(&state);
        let n = y.numel();
        StepOutput::new(logits.reshape(&[n, vocab]).cross_entropy(&y.reshape(&[n]), &CrossEntropyOptions::default()), n)
    })
    .state("tbptt", &tbptt)
    .evaluate(|m| Ok(Evaluation { loss: stream_loss(m, &corpus.val, args.run.batch, seq_len, &dev), accuracy: None }));
    let sizes = [("--batch", args.run.batch), ("--seq-len", seq_len), ("--hidden", args.hidden)];
    let Some(trained) = train(trainer, &args.run, (&run, &dev), &sizes, &batch)? else { return Ok(()) };

    model.eval(); // the Trainer leaves it training
    let mut sampler =
        Sampler::new(Sampling { temperature: args.run.temperature, top_k: args.run.top_k }, args.run.seed);
    report(
        &corpus,
        &trained,
        |ids| stream_loss(&model, ids, args.run.batch, seq_len, &dev),
        &args.run.prompt,
        |prompt| model.generate(prompt, args.run.sample_len, &mut sampler, &dev),
    );
    println!("run folder: {} ({:.1} s in all)", args.out_dir.display(), started.elapsed().as_secs_f64());
    Ok(())
}

//! A character-level LSTM language model (char-rnn) on the bundled
//! Shakespeare tragedies (or `--text FILE`): embedding, a 2-layer LSTM and a
//! linear head, trained with truncated BPTT over `--batch` parallel streams
//! of the text (the state carries across chunks, detached), Adam and
//! gradient clipping by global norm. Every `--eval-every` steps it reports
//! validation loss and perplexity on the held-out last 10%, saves
//! checkpoints and curves in `--out-dir`; at the end it prints a sample.
//!
//! `cargo run --release --example char_lstm -- --help`

#[path = "common/amp.rs"]
mod amp;
mod common;
#[path = "common/control.rs"]
mod control;
#[path = "common/profiling.rs"]
mod profiling;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use common::lm::{finish_round, report, resume, save_on_stop, Corpus, Tally, TextArgs};
use wgrad::autograd::CrossEntropyOptions;
use wgrad::data::text::Streams;
use wgrad::models::{RnnLm, RnnLmConfig, Sampler, Sampling};
use wgrad::nn::checkpoint::TrainingCheckpoint;
use wgrad::nn::optim::{Adam, Optimizer};
use wgrad::nn::train::{seed_everything, History, Progress, RunDir, RunningMean, TruncatedBptt};
use wgrad::prelude::*;

/// Train a character-level LSTM language model.
#[derive(Parser, Debug)]
#[command(
    after_help = "WGRAD_DEVICE=gpu|cpu|<adapter name> picks the device (default: best GPU, else the CPU backend)."
)]
struct Args {
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
    let mut config = RnnLmConfig::lstm(corpus.vocab.len(), args.embed, args.hidden, args.layers);
    config.dropout = args.dropout;
    let mut model =
        control::guard("building the model", &[("--hidden", args.hidden), ("--layers", args.layers)], || {
            RnnLm::new(config, &mut seeds.model, &dev)
        })?;
    println!("model: {} ({} parameters)", model.describe(), model.num_parameters());
    let mut opt = Adam::new(model.parameters(), args.lr);

    let streams = Streams::new(&corpus.train, args.run.batch);
    let chunks = streams.chunks(args.run.seq_len);
    let rounds = args.run.steps.div_ceil(args.run.eval_every);
    let mut progress = Progress::new(rounds);
    if args.run.quiet {
        progress = progress.without_bar();
    }
    let mut history = History::new();
    let mut tbptt = TruncatedBptt::new();
    let mut tally = Tally::default();
    let mut profiler = profiling::StepProfiler::new(args.run.profile, args.out_dir.join("profile.json"));
    let mut amp = amp::Amp::new(args.run.amp);
    if args.run.resume {
        let (ck, h) = resume(&run, &dev)?;
        ck.restore(&model, &mut opt)?; // the dropout streams too
        ck.restore_scaler(&mut amp.scaler)?;
        // The data position is the step count; the carried state goes with it.
        tbptt.load_state_dict(&ck.extra);
        (history, tally.step) = (h, ck.step as usize);
    }
    // Everything the loop carries from step to step, for an exact resume.
    let checkpoint = |model: &RnnLm, opt: &Adam, amp: &amp::Amp, tbptt: &TruncatedBptt, step, round| {
        let mut ck = TrainingCheckpoint::capture(model, opt).with_scaler(&amp.scaler);
        ck.extra = tbptt.state_dict();
        (ck.step, ck.epoch) = (step as u64, round as u64);
        ck
    };
    let stop = control::Stop::install();
    let sizes = [("--batch", args.run.batch), ("--seq-len", args.run.seq_len), ("--hidden", args.hidden)];
    let train_time = Instant::now();
    for round in tally.step / args.run.eval_every + 1..=rounds {
        let round_steps = (round * args.run.eval_every).min(args.run.steps) - tally.step;
        progress.start_epoch(round, (round_steps * args.run.batch * args.run.seq_len) as u64);
        model.train();
        for _ in 0..round_steps {
            let k = tally.step % chunks;
            if k == 0 {
                tbptt.reset(); // a new pass over the streams starts from the zero state
            }
            let (x, y) = streams.chunk(k, args.run.seq_len, &dev);
            let n = y.numel();
            let loss = control::guard("the training step", &sizes, || {
                profiler.step(&dev, || {
                    let loss = amp.forward(|| {
                        let (logits, state) = model.forward_with_state(&x, tbptt.state());
                        tbptt.carry(&state);
                        logits
                            .reshape(&[n, corpus.vocab.len()])
                            .cross_entropy(&y.reshape(&[n]), &CrossEntropyOptions::default())
                    });
                    let params = model.parameters();
                    amp.backward_step(&loss, &mut opt, (args.run.clip > 0.0).then_some((&params[..], args.run.clip)));
                    opt.zero_grad();
                    loss
                })
            })?;
            tally.record(&loss, n, &mut progress);
            if stop.requested() {
                drop(progress);
                return save_on_stop(&run, &checkpoint(&model, &opt, &amp, &tbptt, tally.step, round - 1));
            }
        }
        model.eval();
        let val = control::guard("evaluation", &sizes, || {
            stream_loss(&model, &corpus.val, args.run.batch, args.run.seq_len, &dev)
        })?;
        let ck = checkpoint(&model, &opt, &amp, &tbptt, tally.step, round);
        finish_round(&run, &mut history, &mut progress, (tally.take_round_loss(), val), &ck, &model, &opt)?;
    }
    let secs = train_time.elapsed().as_secs_f64();
    let mut sampler =
        Sampler::new(Sampling { temperature: args.run.temperature, top_k: args.run.top_k }, args.run.seed);
    report(
        &corpus,
        &history,
        (tally.step, tally.tokens, secs),
        |ids| stream_loss(&model, ids, args.run.batch, args.run.seq_len, &dev),
        &args.run.prompt,
        |prompt| model.generate(prompt, args.run.sample_len, &mut sampler, &dev),
    );
    println!("run folder: {} ({:.1} s in all)", args.out_dir.display(), started.elapsed().as_secs_f64());
    Ok(())
}

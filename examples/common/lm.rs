//! What the `char_lstm` and `tiny_gpt` examples share: the corpus (the
//! bundled Shakespeare or `--text`, its last 10% held out, an optional
//! `--eval-text`), the Trainer options of a run counted in steps
//! ([`train`]) and the perplexity report.

use std::cell::Cell;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use anyhow::Result;
use wgrad::data::text::{bundled_corpus, read_text, split_tail, CharVocab};
use wgrad::nn::train::{History, Outcome, RunDir, Trainer};
use wgrad::nn::ModuleExt;
use wgrad::prelude::Device;

/// The training text as ids, split, plus an optional extra evaluation text.
pub struct Corpus {
    /// Characters of the training text.
    pub vocab: CharVocab,
    /// First 90%.
    pub train: Vec<u32>,
    /// Last 10%.
    pub val: Vec<u32>,
    /// `--eval-text`, encoded with the training vocabulary (unknown characters skipped).
    pub eval: Option<(PathBuf, Vec<u32>)>,
}

impl Corpus {
    /// Loads `text` (default: the bundled corpus) and `eval_text`.
    pub fn load(text: Option<&Path>, eval_text: Option<&Path>) -> Result<Corpus> {
        let path = text.map_or_else(bundled_corpus, Path::to_path_buf);
        let raw = read_text(&path)?;
        anyhow::ensure!(raw.chars().count() > 1000, "{}: too short to train on (< 1000 characters)", path.display());
        let vocab = CharVocab::from_text(&raw);
        let ids = vocab.encode(&raw).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let split = split_tail(&ids, 0.1);
        println!(
            "corpus: {} ({} characters, vocabulary {}); train {} / validation {} (last 10%)",
            path.display(),
            ids.len(),
            vocab.len(),
            split.train.len(),
            split.val.len()
        );
        let eval = match eval_text {
            Some(p) => {
                let (ids, skipped) = vocab.encode_lossy(&read_text(p)?);
                anyhow::ensure!(ids.len() > 1, "{}: no characters of the training vocabulary", p.display());
                if skipped > 0 {
                    println!("eval text {}: skipped {skipped} characters not in the vocabulary", p.display());
                }
                Some((p.to_path_buf(), ids))
            }
            None => None,
        };
        Ok(Corpus { vocab, train: split.train, val: split.val, eval })
    }
}

/// Mean cross-entropy (nats per character) as a report line.
pub fn perplexity_line(what: &str, nats: f64) -> String {
    format!("{what}: loss {nats:.4} nats/char, perplexity {:.3}, {:.3} bits/char", nats.exp(), nats / 2f64.ln())
}

/// Opens the device, loads the corpus, creates the run folder with the
/// vocabulary in it, after checking the sizes.
pub fn setup(args: &TextArgs, out_dir: &Path) -> Result<(Device, Corpus, RunDir)> {
    anyhow::ensure!(
        args.steps > 0 && args.eval_every > 0 && args.seq_len > 0 && args.batch > 0,
        "sizes must be positive"
    );
    let dev = Device::from_env()?;
    println!("device: {} ({})", dev.name(), dev.reason());
    let corpus = Corpus::load(args.text.as_deref(), args.eval_text.as_deref())?;
    let run = RunDir::create(out_dir)?;
    std::fs::write(out_dir.join("vocab.txt"), corpus.vocab.as_string())?;
    Ok((dev, corpus, run))
}

/// What [`train`] returns after a run that was not stopped by Ctrl-C.
pub struct Trained {
    /// The rounds' records (a resumed run's earlier ones included).
    pub history: History,
    /// Optimizer steps in all.
    pub steps: u64,
    /// Target characters trained on by this process.
    pub tokens: u64,
    /// Seconds this process trained (evaluations included).
    pub secs: f64,
}

/// Runs `trainer` for `--steps` optimizer steps in rounds ("epochs") of
/// `--eval-every`, each ending with validation, a checkpoint and the curves;
/// with clipping, `--amp`, `--resume`, Ctrl-C, `--profile` and the bar
/// showing the loss every 10 steps. `batch(i)` makes the training batch of
/// global step `i`. `None` when Ctrl-C stopped the run (the checkpoint is
/// saved); `sizes` are the flags an out-of-memory error names.
pub fn train<'a, M: ModuleExt + ?Sized, B>(
    trainer: Trainer<'a, M, B>,
    args: &'a TextArgs,
    (run, dev): (&RunDir, &'a Device),
    sizes: &[(&str, usize)],
    batch: &'a dyn Fn(usize) -> B,
) -> Result<Option<Trained>> {
    let every = args.eval_every;
    let trainer = if args.clip > 0.0 { trainer.clip_grad_norm(args.clip) } else { trainer };
    // `super::super`: the example's own `control` and `profiling` modules,
    // wherever the example sits (its binary's root, or a module of tests/examples.rs).
    let mut profiler =
        super::super::profiling::StepProfiler::new(args.flags.profile, run.last().with_file_name("profile.json"));
    // Shared with the callback, which must own what it uses.
    let tokens = Rc::new(Cell::new(0));
    let counted = tokens.clone();
    let stop = super::super::control::Stop::install();
    let started = Instant::now();
    let epochs = args.steps.div_ceil(every);
    let fit = args
        .flags
        .apply(trainer, epochs)
        .epochs(epochs)
        .max_steps(args.steps as u64)
        .run_dir(run.clone())
        .stop_flag(stop.flag())
        .samples_per_epoch(every * args.batch * args.seq_len)
        .around_step(move |step| profiler.step(dev, &mut *step))
        .on_batch_end(move |b| {
            counted.set(counted.get() + b.samples as u64);
            if let (Some(p), true) = (b.progress, b.steps.is_multiple_of(10)) {
                p.set_message(format!("step {} loss {:.4}", b.steps, b.loss.item()));
            }
        })
        .on_epoch_end(move |r| {
            let step = (r.epoch * every).min(args.steps);
            println!("{}", perplexity_line(&format!("  step {step} validation"), r.val_loss.unwrap_or(f64::NAN)));
        })
        .fit(every, |epoch, skip| (epoch * every + skip..(epoch + 1) * every).map(|i| Ok::<_, Infallible>(batch(i))))
        .map_err(|e| super::super::control::fit_error(e, sizes))?;
    if let Outcome::Interrupted { .. } = fit.outcome {
        println!("{}", super::super::control::resume_hint(&format!("step {}", fit.steps)));
        return Ok(None);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Some(Trained { history: fit.history, steps: fit.steps, tokens: tokens.get(), secs }))
}

/// Ends a run: throughput, best validation loss, the loss on `--eval-text`
/// (by `eval`), and a sample continuing `prompt` (by `generate`).
pub fn report(
    corpus: &Corpus,
    Trained { history, steps, tokens, secs }: &Trained,
    eval: impl Fn(&[u32]) -> f64,
    prompt: &str,
    generate: impl FnOnce(&[u32]) -> Vec<u32>,
) {
    println!("trained {steps} steps, {tokens} characters in {secs:.1} s: {:.0} characters/s", *tokens as f64 / secs);
    let best = history.best_epoch().and_then(|r| r.val_loss).unwrap_or(f64::NAN);
    println!("{}", perplexity_line("best validation", best));
    if let Some((path, ids)) = &corpus.eval {
        println!("{}", perplexity_line(&format!("eval text {}", path.display()), eval(ids)));
    }
    let (ids, skipped) = corpus.vocab.encode_lossy(prompt);
    if skipped > 0 {
        println!("(skipped {skipped} prompt characters not in the vocabulary)");
    }
    let ids = if ids.is_empty() { vec![0] } else { ids };
    println!("--- sample ---\n{}\n---", corpus.vocab.decode(&generate(&ids)));
}

/// The flags both text examples take: data, budget, evaluation and sampling.
#[derive(clap::Args, Debug)]
pub struct TextArgs {
    /// Training text (UTF-8); default: the bundled Shakespeare tragedies.
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Also report loss and perplexity on this text at the end.
    #[arg(long)]
    pub eval_text: Option<PathBuf>,
    /// Characters per training sequence (BPTT chunk, or GPT context).
    #[arg(long, default_value_t = 64)]
    pub seq_len: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f32,
    /// Optimizer steps.
    #[arg(long, default_value_t = 600)]
    pub steps: usize,
    /// Evaluate, checkpoint and plot every this many steps.
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Seed of initialisation, batches and sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Characters to generate at the end.
    #[arg(long, default_value_t = 400)]
    pub sample_len: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Sample only from the k most likely characters.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Text the sample starts from.
    #[arg(long, default_value = "HAMLET.\n")]
    pub prompt: String,
    /// `--resume`, `--quiet`, `--no-tensorboard`, `--profile`, `--amp`.
    #[command(flatten)]
    pub flags: super::run_flags::RunFlags,
}

//! What the `char_lstm` and `tiny_gpt` examples share: the corpus (the
//! bundled Shakespeare or `--text`, its last 10% held out, an optional
//! `--eval-text`), the end-of-round bookkeeping (history, curves,
//! checkpoints) and the perplexity report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wgrad::data::text::{bundled_corpus, read_text, split_tail, CharVocab};
use wgrad::nn::optim::Optimizer;
use wgrad::nn::train::{EpochRecord, History, Progress, RunDir, RunningMean};
use wgrad::nn::{checkpoint::TrainingCheckpoint, Module};
use wgrad::Tensor;

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

/// Ends evaluation round `ck.epoch`: prints, records, saves the checkpoint
/// `ck` (taken after step `ck.step`), redraws the curves.
pub fn finish_round(
    run: &RunDir,
    history: &mut History,
    progress: &mut Progress,
    (train_loss, val_loss): (f64, f64),
    ck: &TrainingCheckpoint,
    model: &dyn Module,
    opt: &dyn Optimizer,
) -> Result<()> {
    let lr = opt.groups()[0].lr as f64;
    let record = EpochRecord {
        epoch: ck.epoch as usize,
        train_loss,
        train_acc: None,
        val_loss: Some(val_loss),
        val_acc: None,
        lr,
    };
    progress.finish_epoch(&record);
    progress.println(&perplexity_line(&format!("  step {} validation", ck.step), val_loss));
    run.finish_epoch(history, record, ck, model).context("saving the run")?;
    Ok(())
}

/// Loads `<out-dir>/last.safetensors` and the history for `--resume`;
/// the caller restores what its loop keeps (model, optimizer, schedule,
/// scaler, data position).
pub fn resume(run: &RunDir, device: &wgrad::Device) -> Result<(TrainingCheckpoint, History)> {
    let (ck, history) = run.resume(device).with_context(|| format!("resuming from {}", run.last().display()))?;
    println!("resuming after step {} (round {})", ck.step, ck.epoch);
    Ok((ck, history))
}

/// Ctrl-C: saves `ck` (taken after step `ck.step`, in the middle of round
/// `ck.epoch + 1`) as the resumable checkpoint and says how to go on.
pub fn save_on_stop(run: &RunDir, ck: &TrainingCheckpoint) -> Result<()> {
    ck.save(run.last()).context("saving the checkpoint after Ctrl-C")?;
    println!("{}", crate::control::resume_hint(&format!("step {}", ck.step)));
    Ok(())
}

/// Ends a run: throughput, best validation loss, the loss on `--eval-text`
/// (by `eval`), and a sample continuing `prompt` (by `generate`).
pub fn report(
    corpus: &Corpus,
    history: &History,
    (steps, tokens, secs): (usize, u64, f64),
    eval: impl Fn(&[u32]) -> f64,
    prompt: &str,
    generate: impl FnOnce(&[u32]) -> Vec<u32>,
) {
    println!("trained {steps} steps, {tokens} characters in {secs:.1} s: {:.0} characters/s", tokens as f64 / secs);
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
    /// Continue from <out-dir>/last.safetensors (written every
    /// `--eval-every` steps and on Ctrl-C).
    #[arg(long)]
    pub resume: bool,
    /// No progress bar (summary lines only).
    #[arg(long)]
    pub quiet: bool,
    /// Print the step profiler's table for one training step and write its trace.
    #[arg(long)]
    pub profile: bool,
    /// Mixed precision: autocast the forward pass (f16 matmul operands, f32
    /// sums) and scale the loss with a GradScaler.
    #[arg(long)]
    pub amp: bool,
}

/// The bookkeeping after each optimizer step: steps and characters so far,
/// the round's mean training loss (kept on the device), and the progress bar
/// with the latest loss every 10 steps (reading it back costs a sync).
#[derive(Default)]
pub struct Tally {
    /// Optimizer steps taken.
    pub step: usize,
    /// Target characters trained on.
    pub tokens: u64,
    round_loss: RunningMean,
}

impl Tally {
    /// Counts one step whose `loss` averaged over `n` target characters.
    pub fn record(&mut self, loss: &Tensor, n: usize, progress: &mut Progress) {
        self.round_loss.update_tensor(loss, n);
        self.step += 1;
        self.tokens += n as u64;
        progress.advance(n as u64);
        if self.step.is_multiple_of(10) {
            progress.set_message(format!("step {} loss {:.4}", self.step, loss.item()));
        }
    }

    /// The mean training loss since the last call (one evaluation round).
    pub fn take_round_loss(&mut self) -> f64 {
        std::mem::take(&mut self.round_loss).mean()
    }
}

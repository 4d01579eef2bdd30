//! [`Progress`]: a per-epoch progress bar (samples/s and ETA) and one summary
//! line per epoch.
//!
//! The bar is drawn on stderr only when stderr is a terminal: in CI logs and
//! pipes indicatif hides it, so no carriage returns or escape codes reach the
//! log, while the summary lines (plain text, on stdout by default) are printed
//! either way. [`Progress::quiet`] turns both off.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use web_time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::history::EpochRecord;

/// What an epoch produced, as the summary line shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochSummary {
    /// The epoch's metrics.
    pub record: EpochRecord,
    /// Total epochs planned (0 when unknown).
    pub epochs: usize,
    /// Training samples processed.
    pub samples: u64,
    /// Wall time from `start_epoch` to `finish_epoch`.
    pub elapsed: Duration,
}

impl EpochSummary {
    /// Training throughput.
    pub fn samples_per_sec(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.samples as f64 / s
        } else {
            0.0
        }
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |a| format!("{:.2}%", 100.0 * a))
}

impl std::fmt::Display for EpochSummary {
    /// `epoch 3/10  train loss 0.4123 acc 87.12%  val loss 0.4500 acc 85.00%  top5_acc 0.9712  lr 1.000e-3  1234 samples/s  12.3s`
    /// (further metrics after the validation figures); absent values print as `-`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.record;
        let width = if self.epochs > 0 { self.epochs.to_string().len() } else { 1 };
        write!(f, "epoch {:>width$}", r.epoch)?;
        if self.epochs > 0 {
            write!(f, "/{}", self.epochs)?;
        }
        write!(f, "  train loss {:.4} acc {}", r.train_loss, pct(r.train_acc))?;
        let val_loss = r.val_loss.map_or_else(|| "-".into(), |l| format!("{l:.4}"));
        write!(f, "  val loss {val_loss} acc {}", pct(r.val_acc))?;
        for (name, v) in &r.metrics {
            write!(f, "  {name} {v:.4}")?;
        }
        write!(f, "  lr {:.3e}  {:.0} samples/s  {:.1}s", r.lr, self.samples_per_sec(), self.elapsed.as_secs_f64())
    }
}

/// Where summary lines go.
type Sink = Arc<Mutex<dyn Write + Send>>;

/// Progress display for a training run: call [`start_epoch`](Self::start_epoch),
/// [`advance`](Self::advance) after each batch, and
/// [`finish_epoch`](Self::finish_epoch) with the epoch's record.
pub struct Progress {
    epochs: usize,
    quiet: bool,
    target: fn() -> ProgressDrawTarget,
    sink: Sink,
    bar: Option<ProgressBar>,
    started: Instant,
    samples: u64,
}

impl Progress {
    /// Progress for `epochs` planned epochs (0 if unknown): a bar on stderr
    /// when it is a terminal, summary lines on stdout.
    pub fn new(epochs: usize) -> Self {
        Progress {
            epochs,
            quiet: false,
            target: ProgressDrawTarget::stderr,
            sink: Arc::new(Mutex::new(io::stdout())),
            bar: None,
            started: Instant::now(),
            samples: 0,
        }
    }

    /// Turns every output off (bars and summary lines); the summaries are
    /// still returned by [`finish_epoch`](Self::finish_epoch).
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Never draws a bar, even on a terminal (summary lines only).
    pub fn without_bar(mut self) -> Self {
        self.target = ProgressDrawTarget::hidden;
        self
    }

    /// Sends summary lines to `writer` instead of stdout (a log file, a test buffer).
    pub fn with_writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.sink = Arc::new(Mutex::new(writer));
        self
    }

    /// Whether a bar is actually being drawn (false when quiet or when
    /// stderr is not a terminal).
    pub fn bar_visible(&self) -> bool {
        self.bar.as_ref().is_some_and(|b| !b.is_hidden())
    }

    /// Starts timing epoch `epoch` (from 1) of `samples` training samples
    /// (0 if unknown: the bar then shows a count and rate but no ETA).
    pub fn start_epoch(&mut self, epoch: usize, samples: u64) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        self.started = Instant::now();
        self.samples = 0;
        if self.quiet {
            return;
        }
        let len = (samples > 0).then_some(samples);
        let bar = ProgressBar::with_draw_target(len, (self.target)());
        let template = if len.is_some() {
            "{prefix} [{bar:30.cyan/blue}] {pos}/{len} {throughput} ETA {eta} {msg}"
        } else {
            "{prefix} {pos} samples {throughput} {msg}"
        };
        let style = ProgressStyle::with_template(template)
            .expect("progress: valid template")
            .with_key("throughput", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0} samples/s", s.per_sec());
            })
            .progress_chars("=> ");
        bar.set_style(style);
        let prefix = if self.epochs > 0 { format!("epoch {epoch}/{}", self.epochs) } else { format!("epoch {epoch}") };
        bar.set_prefix(prefix);
        self.bar = Some(bar);
    }

    /// Counts `samples` more training samples (after each batch).
    pub fn advance(&mut self, samples: u64) {
        self.samples += samples;
        if let Some(b) = &self.bar {
            b.inc(samples);
        }
    }

    /// Sets the text after the bar (e.g. `loss 0.4123`; reading a loss back
    /// each batch costs a sync, so callers may update it every few batches).
    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(b) = &self.bar {
            b.set_message(message.into());
        }
    }

    /// Prints a line without tearing the bar (it is redrawn below).
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) if !b.is_hidden() => b.suspend(|| self.write_line(line)),
            _ => self.write_line(line),
        }
    }

    fn write_line(&self, line: &str) {
        let mut w = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        // A closed stdout (e.g. `| head`) must not abort training.
        let _ = writeln!(w, "{line}").and_then(|_| w.flush());
    }

    /// Ends the epoch: clears the bar, prints the summary line and returns it.
    pub fn finish_epoch(&mut self, record: &EpochRecord) -> EpochSummary {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let summary = EpochSummary {
            record: record.clone(),
            epochs: self.epochs,
            samples: self.samples,
            elapsed: self.started.elapsed(),
        };
        if !self.quiet {
            self.write_line(&summary.to_string());
        }
        summary
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

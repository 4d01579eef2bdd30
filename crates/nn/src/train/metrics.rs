//! Metrics a training loop accumulates over an epoch: a running mean of the
//! loss, accuracy, top-k accuracy, the confusion matrix with per-class and
//! averaged precision/recall/F1, and perplexity.
//!
//! # Where the work happens
//!
//! The `update` methods take the batch's logits `[N, C]` (F32, or the F16
//! that a forward pass under autocast returns) and labels `[N]` (U32) as
//! device tensors and *record* a few kernels that count hits
//! into an accumulator tensor on the same device; nothing is read back, so a
//! training step stays one submitted command batch. The value is read back
//! once, when asked for (`value`, `mean`, `report`): one sync per epoch,
//! or per batch if the caller asks every batch (e.g. to show a live loss).
//! Every accumulator also has an `update_host` twin for predictions that
//! already live in host memory.
//!
//! F16 logits are compared in f32 on the device, as PyTorch's metrics do (one
//! cast launch; F32 logits are used as they are), and a loss may be F16 too.
//!
//! Device counts are f32 sums of 0/1 values, exact up to 2^24 (16.7 million)
//! per accumulator cell; the loss sum is an f32 sum of per-batch values, so
//! its relative rounding error grows at most linearly with the batch count
//! (well under 1e-4 for thousands of batches).
//!
//! Labels must be `< C`: they are not checked on the device (that would need
//! a read back); an out-of-range label counts as a miss and, in the
//! confusion matrix, is dropped.

use std::fmt;

use wgrad_autograd::{no_grad, DType, Tensor};

/// Checks a `[N, C]` F32/F16 logits / `[N]` U32 labels pair and returns
/// `(N, C, logits)`, the logits detached and in F32 (a cast only for F16).
fn check_batch(op: &str, logits: &Tensor, labels: &Tensor) -> (usize, usize, Tensor) {
    let (ls, ys) = (logits.shape(), labels.shape());
    assert!(
        ls.len() == 2 && ys.len() == 1 && ls[0] == ys[0],
        "{op}: expects logits [N, C] and labels [N], got logits {ls:?} and labels {ys:?}"
    );
    assert!(
        matches!(logits.dtype(), DType::F32 | DType::F16),
        "{op}: logits must be F32 or F16, got {:?}",
        logits.dtype()
    );
    assert!(labels.dtype() == DType::U32, "{op}: labels must be U32 class indices, got {:?}", labels.dtype());
    assert!(ls[1] > 0, "{op}: logits {ls:?} have no classes");
    (ls[0], ls[1], no_grad(|| logits.detach().to_dtype(DType::F32)))
}

/// Adds `batch` to a device accumulator (the first batch becomes it).
fn accumulate(acc: &mut Option<Tensor>, batch: Tensor) {
    *acc = Some(match acc.take() {
        Some(a) => no_grad(|| &a + &batch),
        None => batch,
    });
}

/// Number of rows whose arg-max (first index on ties, like `torch.argmax`)
/// equals the label, as a 0-d F32 tensor on the logits' device (no sync).
///
/// # Panics
/// When shapes or dtypes do not fit `[N, C]` F32/F16 logits and `[N]` U32 labels.
pub fn correct_count(logits: &Tensor, labels: &Tensor) -> Tensor {
    let (n, c, logits) = check_batch("correct_count", logits, labels);
    no_grad(|| {
        if n == 0 {
            return Tensor::zeros(&[], &logits.device());
        }
        let pred = logits.argmax(1, false);
        // One-hot rows of the predictions, read at the label's column: 1 for a hit.
        pred.one_hot(c).gather(1, &labels.reshape(&[n, 1])).sum_all()
    })
}

/// For each `k` of `ks`, the number of rows whose label is among the `k`
/// highest logits, as an F32 tensor `[ks.len()]` on the logits' device (no sync).
///
/// A row's label is in the top k when fewer than `k` logits are *strictly*
/// greater than the label's, so ties are resolved in the label's favour
/// (`torch.topk` leaves tie order unspecified). With distinct logits this is
/// exactly scikit-learn's `top_k_accuracy_score` count.
///
/// # Panics
/// When shapes or dtypes do not fit, or `ks` is empty or holds a zero.
pub fn top_k_correct(logits: &Tensor, labels: &Tensor, ks: &[usize]) -> Tensor {
    let (n, _, logits) = check_batch("top_k_correct", logits, labels);
    assert!(
        !ks.is_empty() && ks.iter().all(|&k| k > 0),
        "top_k_correct: ks must be non-empty and positive, got {ks:?}"
    );
    let dev = logits.device();
    no_grad(|| {
        if n == 0 {
            return Tensor::zeros(&[ks.len()], &dev);
        }
        let target = logits.gather(1, &labels.reshape(&[n, 1]));
        // How many classes beat the label: its 0-based rank, [N, 1].
        let rank = logits.gt(&target).sum(&[1], true);
        let ks_t = Tensor::from_vec(&ks.iter().map(|&k| k as f32).collect::<Vec<_>>(), &[ks.len()], &dev);
        rank.lt(&ks_t).sum(&[0], false)
    })
}

/// The batch's confusion counts `[C, C]` (row = true class, column =
/// predicted class, as scikit-learn's `confusion_matrix`) as an F32 tensor on
/// the logits' device (no sync): `one_hot(labels)ᵀ · one_hot(argmax)`.
///
/// # Panics
/// When shapes or dtypes do not fit.
pub fn confusion_counts(logits: &Tensor, labels: &Tensor) -> Tensor {
    let (n, c, logits) = check_batch("confusion_counts", logits, labels);
    no_grad(|| {
        if n == 0 {
            return Tensor::zeros(&[c, c], &logits.device());
        }
        let pred = logits.argmax(1, false).one_hot(c);
        labels.one_hot(c).t().matmul(&pred)
    })
}

/// Mean of per-batch values weighted by batch size (the epoch's mean loss
/// when each batch reports its mean loss).
#[derive(Clone, Debug, Default)]
pub struct RunningMean {
    host_sum: f64,
    count: usize,
    device_sum: Option<Tensor>,
}

impl RunningMean {
    /// An empty mean.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a host value that is the mean over `n` samples.
    pub fn update(&mut self, value: f64, n: usize) {
        self.host_sum += value * n as f64;
        self.count += n;
    }

    /// Adds a one-element tensor (e.g. the batch's mean loss) that is the mean
    /// over `n` samples, without reading it back: the weighted sum stays on
    /// its device until [`mean`](Self::mean).
    ///
    /// An F16 value (a loss computed under autocast) is summed in F32.
    ///
    /// # Panics
    /// When `value` has more or fewer than one element, or is not F32 or F16.
    pub fn update_tensor(&mut self, value: &Tensor, n: usize) {
        assert!(
            value.numel() == 1 && matches!(value.dtype(), DType::F32 | DType::F16),
            "RunningMean::update_tensor: expects one F32 or F16 value, got {:?} {:?}",
            value.shape(),
            value.dtype()
        );
        let weighted = no_grad(|| value.detach().reshape(&[]).to_dtype(DType::F32).mul_scalar(n as f32));
        accumulate(&mut self.device_sum, weighted);
        self.count += n;
    }

    /// The weighted mean so far (0 when nothing was added); reads back the
    /// device part, if any (one sync).
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        self.sum() / self.count as f64
    }

    /// The weighted sum so far (one sync when part of it is on the device).
    fn sum(&self) -> f64 {
        self.host_sum + self.device_sum.as_ref().map_or(0.0, |t| t.item() as f64)
    }

    /// Samples counted so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Forgets everything (start of an epoch).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Top-1 accuracy: the fraction of samples whose arg-max logit is the label.
#[derive(Clone, Debug, Default)]
pub struct Accuracy {
    host_correct: u64,
    total: u64,
    device_correct: Option<Tensor>,
}

impl Accuracy {
    /// An empty accuracy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a batch of logits `[N, C]` against U32 labels `[N]` on their
    /// device (no sync; see [`correct_count`]).
    pub fn update(&mut self, logits: &Tensor, labels: &Tensor) {
        accumulate(&mut self.device_correct, correct_count(logits, labels));
        self.total += labels.numel() as u64;
    }

    /// Counts host predictions against host labels.
    ///
    /// # Panics
    /// When the lengths differ.
    pub fn update_host(&mut self, preds: &[u32], labels: &[u32]) {
        assert_eq!(
            preds.len(),
            labels.len(),
            "Accuracy::update_host: {} predictions vs {} labels",
            preds.len(),
            labels.len()
        );
        self.host_correct += preds.iter().zip(labels).filter(|(p, y)| p == y).count() as u64;
        self.total += labels.len() as u64;
    }

    /// Correct samples so far (reads back the device count: one sync).
    pub fn correct(&self) -> u64 {
        self.host_correct + self.device_correct.as_ref().map_or(0, |t| t.item().round() as u64)
    }

    /// Samples seen so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Accuracy in `[0, 1]`; 0 before any sample (one sync).
    pub fn value(&self) -> f64 {
        ratio(self.correct(), self.total)
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Top-k accuracies for several `k` at once (e.g. top-1 and top-5 on ImageNet).
#[derive(Clone, Debug)]
pub struct TopKAccuracy {
    ks: Vec<usize>,
    host_correct: Vec<u64>,
    total: u64,
    device_correct: Option<Tensor>,
}

impl TopKAccuracy {
    /// Tracks the top-`k` accuracy for each `k` in `ks`.
    ///
    /// # Panics
    /// When `ks` is empty or holds a zero.
    pub fn new(ks: &[usize]) -> Self {
        assert!(
            !ks.is_empty() && ks.iter().all(|&k| k > 0),
            "TopKAccuracy: ks must be non-empty and positive, got {ks:?}"
        );
        TopKAccuracy { ks: ks.to_vec(), host_correct: vec![0; ks.len()], total: 0, device_correct: None }
    }

    /// The tracked `k`s.
    pub fn ks(&self) -> &[usize] {
        &self.ks
    }

    /// Counts a batch on its device (no sync; ties as in [`top_k_correct`]).
    pub fn update(&mut self, logits: &Tensor, labels: &Tensor) {
        accumulate(&mut self.device_correct, top_k_correct(logits, labels, &self.ks));
        self.total += labels.numel() as u64;
    }

    /// Counts host scores (`[N, C]` row-major) against host labels, with the
    /// same tie rule as the device path.
    ///
    /// # Panics
    /// When `scores.len() != labels.len() * classes` or a label is out of range.
    pub fn update_host(&mut self, scores: &[f32], classes: usize, labels: &[u32]) {
        assert_eq!(
            scores.len(),
            labels.len() * classes,
            "TopKAccuracy::update_host: {} scores for {} labels of {classes} classes",
            scores.len(),
            labels.len()
        );
        for (row, &y) in scores.chunks_exact(classes.max(1)).zip(labels) {
            assert!((y as usize) < classes, "TopKAccuracy::update_host: label {y} out of range for {classes} classes");
            let rank = row.iter().filter(|&&s| s > row[y as usize]).count();
            for (hits, &k) in self.host_correct.iter_mut().zip(&self.ks) {
                *hits += (rank < k) as u64;
            }
        }
        self.total += labels.len() as u64;
    }

    /// Accuracy for each tracked `k`, in order, in `[0, 1]` (one sync).
    pub fn values(&self) -> Vec<f64> {
        self.correct().into_iter().map(|c| ratio(c, self.total)).collect()
    }

    /// Correct samples so far for each tracked `k` (one sync).
    fn correct(&self) -> Vec<u64> {
        let device = self.device_correct.as_ref().map(|t| t.to_vec());
        (0..self.ks.len()).map(|i| self.host_correct[i] + device.as_ref().map_or(0, |v| v[i].round() as u64)).collect()
    }

    /// Forgets everything (keeps the `k`s).
    pub fn reset(&mut self) {
        *self = Self::new(&self.ks);
    }
}

/// A `classes × classes` confusion matrix accumulated over batches, from
/// which [`ClassificationReport`] derives accuracy and precision/recall/F1.
#[derive(Clone, Debug)]
pub struct ConfusionMatrix {
    classes: usize,
    host: Vec<u64>,
    device: Option<Tensor>,
}

impl ConfusionMatrix {
    /// An empty matrix for `classes` classes.
    ///
    /// # Panics
    /// When `classes` is 0.
    pub fn new(classes: usize) -> Self {
        assert!(classes > 0, "ConfusionMatrix: needs at least one class");
        ConfusionMatrix { classes, host: vec![0; classes * classes], device: None }
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Counts a batch of logits `[N, C]` against U32 labels `[N]` on their
    /// device (no sync; see [`confusion_counts`]).
    ///
    /// # Panics
    /// When `C` differs from the matrix's class count.
    pub fn update(&mut self, logits: &Tensor, labels: &Tensor) {
        let counts = confusion_counts(logits, labels);
        assert_eq!(
            counts.shape(),
            [self.classes, self.classes],
            "ConfusionMatrix::update: logits {:?} for a {}-class matrix",
            logits.shape(),
            self.classes
        );
        accumulate(&mut self.device, counts);
    }

    /// Counts host predictions against host labels.
    ///
    /// # Panics
    /// When the lengths differ or a class index is out of range.
    pub fn update_host(&mut self, preds: &[u32], labels: &[u32]) {
        assert_eq!(
            preds.len(),
            labels.len(),
            "ConfusionMatrix::update_host: {} predictions vs {} labels",
            preds.len(),
            labels.len()
        );
        let c = self.classes;
        for (&p, &y) in preds.iter().zip(labels) {
            assert!(
                (p as usize) < c && (y as usize) < c,
                "ConfusionMatrix::update_host: prediction {p} / label {y} out of range for {c} classes"
            );
            self.host[y as usize * c + p as usize] += 1;
        }
    }

    /// The counts, row-major `[true class][predicted class]` (one sync).
    pub fn counts(&self) -> Vec<Vec<u64>> {
        let c = self.classes;
        let device = self.device.as_ref().map(|t| t.to_vec());
        (0..c)
            .map(|i| {
                (0..c)
                    .map(|j| self.host[i * c + j] + device.as_ref().map_or(0, |d| d[i * c + j].round() as u64))
                    .collect()
            })
            .collect()
    }

    /// Accuracy, precision, recall and F1 from the counts (one sync).
    pub fn report(&self) -> ClassificationReport {
        ClassificationReport::from_counts(self.counts())
    }

    /// Forgets everything (keeps the class count).
    pub fn reset(&mut self) {
        *self = Self::new(self.classes);
    }
}

/// Precision, recall and F1 of one averaging scheme.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PrfScores {
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// 2·TP / (2·TP + FP + FN), the harmonic mean of precision and recall.
    pub f1: f64,
}

/// Scores derived from a confusion matrix, matching scikit-learn's
/// `precision_recall_fscore_support` / `classification_report` with
/// `zero_division=0` (the value its default `"warn"` returns, without the
/// warning):
///
/// * a class never predicted has precision 0, a class never true has recall
///   0, and a class with neither has F1 0;
/// * `macro_avg` is the unweighted mean over the classes that occur in the
///   labels *or* the predictions (scikit-learn's default label set when none
///   is passed): classes absent from both are listed per class with zeros
///   but do not drag the average down;
/// * `micro_avg` pools TP/FP/FN over classes (for single-label data all three
///   equal the accuracy);
/// * `weighted_avg` weights each class by its support (true count).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassificationReport {
    /// Counts, `[true class][predicted class]`.
    pub confusion: Vec<Vec<u64>>,
    /// Per-class scores.
    pub per_class: Vec<PrfScores>,
    /// Per-class number of true samples.
    pub support: Vec<u64>,
    /// Fraction of samples on the diagonal.
    pub accuracy: f64,
    /// Unweighted mean over the classes present in labels or predictions.
    pub macro_avg: PrfScores,
    /// Scores of the pooled counts.
    pub micro_avg: PrfScores,
    /// Support-weighted mean.
    pub weighted_avg: PrfScores,
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn prf(tp: u64, fp: u64, fn_: u64) -> PrfScores {
    PrfScores { precision: ratio(tp, tp + fp), recall: ratio(tp, tp + fn_), f1: ratio(2 * tp, 2 * tp + fp + fn_) }
}

impl ClassificationReport {
    /// Derives every score from square counts `[true][predicted]`.
    ///
    /// # Panics
    /// When `confusion` is not square.
    pub fn from_counts(confusion: Vec<Vec<u64>>) -> Self {
        let c = confusion.len();
        assert!(confusion.iter().all(|r| r.len() == c), "ClassificationReport: confusion matrix is not square");
        let tp: Vec<u64> = (0..c).map(|i| confusion[i][i]).collect();
        let support: Vec<u64> = confusion.iter().map(|r| r.iter().sum()).collect();
        let predicted: Vec<u64> = (0..c).map(|j| confusion.iter().map(|r| r[j]).sum()).collect();
        let per_class: Vec<PrfScores> = (0..c).map(|i| prf(tp[i], predicted[i] - tp[i], support[i] - tp[i])).collect();
        let total: u64 = support.iter().sum();
        let correct: u64 = tp.iter().sum();

        let present: Vec<usize> = (0..c).filter(|&i| support[i] > 0 || predicted[i] > 0).collect();
        let mean = |f: fn(&PrfScores) -> f64, w: &dyn Fn(usize) -> f64| -> f64 {
            let den: f64 = present.iter().map(|&i| w(i)).sum();
            if den == 0.0 {
                0.0
            } else {
                present.iter().map(|&i| w(i) * f(&per_class[i])).sum::<f64>() / den
            }
        };
        let averaged = |w: &dyn Fn(usize) -> f64| PrfScores {
            precision: mean(|s| s.precision, w),
            recall: mean(|s| s.recall, w),
            f1: mean(|s| s.f1, w),
        };
        let macro_avg = averaged(&|_| 1.0);
        let weighted_avg = averaged(&|i| support[i] as f64);
        // Pooled over classes, FP and FN both equal the off-diagonal total.
        let micro_avg = prf(correct, total - correct, total - correct);
        ClassificationReport {
            confusion,
            per_class,
            support,
            accuracy: ratio(correct, total),
            macro_avg,
            micro_avg,
            weighted_avg,
        }
    }
}

impl fmt::Display for ClassificationReport {
    /// A table like scikit-learn's `classification_report`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:>12} {:>9} {:>9} {:>9} {:>9}", "", "precision", "recall", "f1-score", "support")?;
        for (i, (s, n)) in self.per_class.iter().zip(&self.support).enumerate() {
            writeln!(f, "{i:>12} {:>9.4} {:>9.4} {:>9.4} {n:>9}", s.precision, s.recall, s.f1)?;
        }
        let total: u64 = self.support.iter().sum();
        writeln!(f)?;
        writeln!(f, "{:>12} {:>9} {:>9} {:>9.4} {total:>9}", "accuracy", "", "", self.accuracy)?;
        for (name, s) in
            [("macro avg", &self.macro_avg), ("micro avg", &self.micro_avg), ("weighted avg", &self.weighted_avg)]
        {
            writeln!(f, "{name:>12} {:>9.4} {:>9.4} {:>9.4} {total:>9}", s.precision, s.recall, s.f1)?;
        }
        Ok(())
    }
}

/// `exp(mean token cross-entropy)`, the usual language-model metric.
pub fn perplexity(mean_cross_entropy: f64) -> f64 {
    mean_cross_entropy.exp()
}

/// Perplexity over an epoch: a token-weighted running mean of cross-entropy
/// (in nats), exponentiated at the end. Averaging per-batch perplexities
/// instead would be wrong (the exp of a mean is not the mean of exps).
#[derive(Clone, Debug, Default)]
pub struct Perplexity {
    cross_entropy: RunningMean,
}

impl Perplexity {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a batch's mean token cross-entropy over `tokens` tokens (a
    /// one-element device tensor, not read back).
    pub fn update(&mut self, mean_cross_entropy: &Tensor, tokens: usize) {
        self.cross_entropy.update_tensor(mean_cross_entropy, tokens);
    }

    /// Adds a host mean token cross-entropy over `tokens` tokens.
    pub fn update_host(&mut self, mean_cross_entropy: f64, tokens: usize) {
        self.cross_entropy.update(mean_cross_entropy, tokens);
    }

    /// Mean token cross-entropy so far (one sync).
    pub fn mean_cross_entropy(&self) -> f64 {
        self.cross_entropy.mean()
    }

    /// `exp` of the mean cross-entropy (1 before any token).
    pub fn value(&self) -> f64 {
        perplexity(self.mean_cross_entropy())
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.cross_entropy.reset();
    }
}

/// What a [`Metric`] is given for each training batch: its mean loss (a
/// detached 0-d device tensor) over `samples` samples, and the model's
/// outputs and the targets when the step returned them
/// ([`StepOutput::with_accuracy`](super::StepOutput::with_accuracy)).
#[derive(Clone, Copy)]
pub struct MetricBatch<'a> {
    /// The batch's mean loss.
    pub loss: &'a Tensor,
    /// Samples in the batch (the loss's weight).
    pub samples: usize,
    /// Logits `[N, C]` and U32 labels `[N]`, when the step gave them.
    pub outputs: Option<(&'a Tensor, &'a Tensor)>,
}

/// A quantity accumulated over an epoch's batches, on the device (no sync
/// per batch), read once per epoch: what [`Trainer::metric`](super::Trainer::metric)
/// takes. Its value goes into [`EpochRecord::metrics`](super::EpochRecord::metrics)
/// under its name, and from there to the progress line and the history CSV.
///
/// The accumulated state is a few sums ([`state`](Self::state)), so the
/// states of several processes (data-parallel ranks) combine by adding
/// them ([`merge`](Self::merge)) before the value is read.
pub trait Metric {
    /// Its column name (`loss`, `acc`, `top5_acc`, `perplexity`).
    fn name(&self) -> String;
    /// Counts a batch (records device work; reads nothing back).
    fn update(&mut self, batch: &MetricBatch);
    /// The value over the batches counted (one sync), or `None` when it
    /// counted none (an accuracy without outputs).
    fn value(&self) -> Option<f64>;
    /// Forgets every batch (the start of an epoch).
    fn reset(&mut self);
    /// The accumulated sums (one sync), in an order of the metric's own.
    fn state(&self) -> Vec<f64>;
    /// Adds another accumulator's [`state`](Self::state) to this one.
    ///
    /// # Panics
    /// When `state` does not have this metric's length.
    fn merge(&mut self, state: &[f64]);
}

fn expect_len(what: &str, state: &[f64], n: usize) {
    assert_eq!(state.len(), n, "{what}::merge: a state of {n} sums, got {}", state.len());
}

/// The sample-weighted mean of the batches' losses.
impl Metric for RunningMean {
    fn name(&self) -> String {
        "loss".into()
    }
    fn update(&mut self, batch: &MetricBatch) {
        self.update_tensor(batch.loss, batch.samples);
    }
    fn value(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.mean())
    }
    fn reset(&mut self) {
        RunningMean::reset(self);
    }
    fn state(&self) -> Vec<f64> {
        vec![self.sum(), self.count as f64]
    }
    fn merge(&mut self, state: &[f64]) {
        expect_len("RunningMean", state, 2);
        self.host_sum += state[0];
        self.count += state[1] as usize;
    }
}

/// Top-1 accuracy of the batches that gave outputs.
impl Metric for Accuracy {
    fn name(&self) -> String {
        "acc".into()
    }
    fn update(&mut self, batch: &MetricBatch) {
        if let Some((logits, labels)) = batch.outputs {
            Accuracy::update(self, logits, labels);
        }
    }
    fn value(&self) -> Option<f64> {
        (self.total() > 0).then(|| Accuracy::value(self))
    }
    fn reset(&mut self) {
        Accuracy::reset(self);
    }
    fn state(&self) -> Vec<f64> {
        vec![self.correct() as f64, self.total as f64]
    }
    fn merge(&mut self, state: &[f64]) {
        expect_len("Accuracy", state, 2);
        self.host_correct += state[0] as u64;
        self.total += state[1] as u64;
    }
}

/// Perplexity of the batches' mean cross-entropy losses.
impl Metric for Perplexity {
    fn name(&self) -> String {
        "perplexity".into()
    }
    fn update(&mut self, batch: &MetricBatch) {
        Perplexity::update(self, batch.loss, batch.samples);
    }
    fn value(&self) -> Option<f64> {
        (self.cross_entropy.count() > 0).then(|| Perplexity::value(self))
    }
    fn reset(&mut self) {
        Perplexity::reset(self);
    }
    fn state(&self) -> Vec<f64> {
        self.cross_entropy.state()
    }
    fn merge(&mut self, state: &[f64]) {
        self.cross_entropy.merge(state);
    }
}

/// Top-`k` accuracy as one [`Metric`] (`top{k}_acc`): the fraction of
/// samples whose label is among their `k` highest logits.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    counts: TopKAccuracy,
}

impl TopK {
    /// Tracks the top-`k` accuracy.
    ///
    /// # Panics
    /// When `k` is 0.
    pub fn new(k: usize) -> Self {
        TopK { k, counts: TopKAccuracy::new(&[k]) }
    }
}

impl Metric for TopK {
    fn name(&self) -> String {
        format!("top{}_acc", self.k)
    }
    fn update(&mut self, batch: &MetricBatch) {
        if let Some((logits, labels)) = batch.outputs {
            self.counts.update(logits, labels);
        }
    }
    fn value(&self) -> Option<f64> {
        (self.counts.total > 0).then(|| self.counts.values()[0])
    }
    fn reset(&mut self) {
        self.counts.reset();
    }
    fn state(&self) -> Vec<f64> {
        vec![self.counts.correct()[0] as f64, self.counts.total as f64]
    }
    fn merge(&mut self, state: &[f64]) {
        expect_len("TopK", state, 2);
        self.counts.host_correct[0] += state[0] as u64;
        self.counts.total += state[1] as u64;
    }
}

//! The training-loop toolkit: metrics against scikit-learn worked values,
//! history CSV/PNG, progress output, early stopping with best restore, seeds.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wgrad_autograd::{no_grad, CrossEntropyOptions, DType, Device, Tensor};
use wgrad_gpu_core::ops::copy;
use wgrad_gpu_core::testing::{fresh_backends, gpu_or_skip};
use wgrad_gpu_core::Layout;
use wgrad_nn::train::early_stopping::snapshot;
use wgrad_nn::train::metrics::{correct_count, perplexity, top_k_correct};
use wgrad_nn::train::*;
use wgrad_nn::{BatchNorm1d, Init, Linear, ModuleExt, Sequential};

/// The CPU backend, plus the test GPU when there is one (loud skip otherwise).
fn backends(test: &str) -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu_or_skip(test));
    v
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

// ---- metrics --------------------------------------------------------------

// The worked example checked with scikit-learn 1.9:
// precision_recall_fscore_support(Y_TRUE, Y_PRED, zero_division=0).
const Y_TRUE: [u32; 10] = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3];
const Y_PRED: [u32; 10] = [0, 1, 0, 1, 2, 2, 2, 0, 2, 1];
const CLASSES: usize = 5; // class 4 occurs nowhere; class 3 is never predicted

/// Logits whose arg-max is `pred`, with distinct distractor values.
fn logits_for(pred: &[u32], classes: usize) -> Vec<f32> {
    let mut v = Vec::new();
    for (i, &p) in pred.iter().enumerate() {
        for c in 0..classes {
            v.push(if c == p as usize { 2.0 + i as f32 * 0.01 } else { (c as f32 * 0.37 + i as f32 * 0.11) % 1.0 });
        }
    }
    v
}

fn sklearn_report_checks(r: &ClassificationReport) {
    let want_p = [2.0 / 3.0, 1.0 / 3.0, 0.75, 0.0, 0.0];
    let want_r = [2.0 / 3.0, 0.5, 0.75, 0.0, 0.0];
    let want_f = [2.0 / 3.0, 0.4, 0.75, 0.0, 0.0];
    for c in 0..CLASSES {
        let s = r.per_class[c];
        assert!(
            close(s.precision, want_p[c], 1e-12) && close(s.recall, want_r[c], 1e-12) && close(s.f1, want_f[c], 1e-12),
            "class {c}: {s:?}"
        );
    }
    assert_eq!(r.support, [3, 2, 4, 1, 0]);
    assert!(close(r.accuracy, 0.6, 1e-12));
    // Macro over the classes present in labels or predictions (0..=3), as scikit-learn.
    let m = r.macro_avg;
    assert!(
        close(m.precision, 0.4375, 1e-12)
            && close(m.recall, 0.479_166_666_666_666_6, 1e-12)
            && close(m.f1, 0.454_166_666_666_666_6, 1e-12),
        "{m:?}"
    );
    let mi = r.micro_avg;
    assert!(close(mi.precision, 0.6, 1e-12) && close(mi.recall, 0.6, 1e-12) && close(mi.f1, 0.6, 1e-12), "{mi:?}");
    let w = r.weighted_avg;
    assert!(
        close(w.precision, 0.566_666_666_666_666_7, 1e-12) && close(w.recall, 0.6, 1e-12) && close(w.f1, 0.58, 1e-12),
        "{w:?}"
    );
}

#[test]
fn confusion_matrix_and_scores_match_sklearn_on_every_backend() {
    let want =
        vec![vec![2, 1, 0, 0, 0], vec![0, 1, 1, 0, 0], vec![1, 0, 3, 0, 0], vec![0, 1, 0, 0, 0], vec![0, 0, 0, 0, 0]];
    // Host path.
    let mut host = ConfusionMatrix::new(CLASSES);
    host.update_host(&Y_PRED, &Y_TRUE);
    assert_eq!(host.counts(), want);
    sklearn_report_checks(&host.report());

    let logits = logits_for(&Y_PRED, CLASSES);
    for dev in backends("confusion_matrix_and_scores_match_sklearn_on_every_backend") {
        let mut cm = ConfusionMatrix::new(CLASSES);
        let mut acc = Accuracy::new();
        // Two batches of awkward sizes (7 and 3) accumulate on the device.
        for (lo, hi) in [(0, 7), (7, 10)] {
            let x = Tensor::from_vec(&logits[lo * CLASSES..hi * CLASSES], &[hi - lo, CLASSES], &dev);
            let y = Tensor::from_u32(&Y_TRUE[lo..hi], &[hi - lo], &dev);
            cm.update(&x, &y);
            acc.update(&x, &y);
        }
        assert_eq!(cm.counts(), want, "on {}", dev.name());
        let r = cm.report();
        sklearn_report_checks(&r);
        assert_eq!((acc.correct(), acc.total()), (6, 10), "on {}", dev.name());
        assert!(close(acc.value(), 0.6, 1e-12));
        let table = r.to_string();
        assert!(table.contains("macro avg") && table.contains("weighted avg") && table.contains("0.4375"), "{table}");
    }
}

#[test]
fn accuracy_counts_argmax_ties_at_the_first_index_and_empty_batches() {
    for dev in backends("accuracy_counts_argmax_ties_at_the_first_index_and_empty_batches") {
        let x = Tensor::from_vec(&[1.0, 3.0, 3.0, 5.0, 0.0, 0.0], &[2, 3], &dev);
        // Row 0 ties classes 1 and 2: argmax is 1, so label 1 hits and label 2 misses.
        assert_eq!(correct_count(&x, &Tensor::from_u32(&[1, 0], &[2], &dev)).item(), 2.0);
        assert_eq!(correct_count(&x, &Tensor::from_u32(&[2, 0], &[2], &dev)).item(), 1.0);
        let mut acc = Accuracy::new();
        acc.update(&Tensor::zeros(&[0, 3], &dev), &Tensor::from_u32(&[], &[0], &dev));
        assert_eq!((acc.correct(), acc.total(), acc.value()), (0, 0, 0.0));
        acc.update_host(&[1, 2, 2], &[1, 2, 0]);
        assert!(close(acc.value(), 2.0 / 3.0, 1e-12));
        acc.reset();
        assert_eq!(acc.total(), 0);
    }
}

#[test]
fn top_k_accuracy_matches_sklearn() {
    // top_k_accuracy_score(y, s, k) for k = 1, 2, 3 gives 0.4, 0.6, 0.8.
    let s: [f32; 20] = [
        0.1, 0.5, 0.3, 0.1, //
        0.7, 0.1, 0.15, 0.05, //
        0.2, 0.15, 0.25, 0.4, //
        0.05, 0.6, 0.3, 0.04, //
        0.3, 0.2, 0.1, 0.4,
    ];
    let y = [2u32, 0, 0, 1, 2];
    let want = [0.4, 0.6, 0.8];
    let mut host = TopKAccuracy::new(&[1, 2, 3]);
    host.update_host(&s, 4, &y);
    for (v, w) in host.values().iter().zip(want) {
        assert!(close(*v, w, 1e-12), "{:?}", host.values());
    }
    for dev in backends("top_k_accuracy_matches_sklearn") {
        let mut m = TopKAccuracy::new(&[1, 2, 3]);
        m.update(&Tensor::from_vec(&s[..8], &[2, 4], &dev), &Tensor::from_u32(&y[..2], &[2], &dev));
        m.update(&Tensor::from_vec(&s[8..], &[3, 4], &dev), &Tensor::from_u32(&y[2..], &[3], &dev));
        let v = m.values();
        assert!(v.iter().zip(want).all(|(a, b)| close(*a, b, 1e-12)), "{v:?} on {}", dev.name());
        // Ties go the label's way: two classes share the top score.
        let tie = Tensor::from_vec(&[1.0, 1.0, 0.0], &[1, 3], &dev);
        assert_eq!(top_k_correct(&tie, &Tensor::from_u32(&[1], &[1], &dev), &[1]).to_vec(), [1.0]);
    }
}

#[test]
fn running_mean_weights_batches_by_size() {
    for dev in backends("running_mean_weights_batches_by_size") {
        let mut m = RunningMean::new();
        assert_eq!(m.mean(), 0.0);
        m.update_tensor(&Tensor::scalar(2.0, &dev), 3);
        m.update(1.0, 1);
        m.update_tensor(&Tensor::from_vec(&[0.5], &[1], &dev), 4);
        // (2·3 + 1·1 + 0.5·4) / 8
        assert!(close(m.mean(), 9.0 / 8.0, 1e-7), "{}", m.mean());
        assert_eq!(m.count(), 8);
        m.reset();
        assert_eq!((m.count(), m.mean()), (0, 0.0));
    }
}

#[test]
fn perplexity_is_exp_of_token_weighted_cross_entropy() {
    let mut p = Perplexity::new();
    assert_eq!(p.value(), 1.0);
    p.update_host(2.0, 3);
    p.update_host(1.0, 1);
    // exp((2·3 + 1·1) / 4) = exp(1.75)
    assert!(close(p.value(), 5.754_602_676_005_731, 1e-12), "{}", p.value());
    assert!(close(perplexity(0.0), 1.0, 0.0));
    // A model that is uniform over V tokens has perplexity V.
    for dev in backends("perplexity_is_exp_of_token_weighted_cross_entropy") {
        let vocab = 37;
        let mut p = Perplexity::new();
        for n in [5usize, 1] {
            let logits = Tensor::zeros(&[n, vocab], &dev);
            let targets = Tensor::from_u32(&(0..n as u32).collect::<Vec<_>>(), &[n], &dev);
            p.update(&logits.cross_entropy(&targets, &CrossEntropyOptions::default()), n);
        }
        assert!(close(p.value(), vocab as f64, 1e-5), "{} on {}", p.value(), dev.name());
    }
}

/// Kernel launches `f` causes, its inputs already computed (`f` reads its
/// result back, so whatever it recorded has run).
fn launches(dev: &Device, f: impl FnOnce() -> Vec<f32>) -> (Vec<f32>, u64) {
    let before = dev.stats();
    let v = f();
    (v, (dev.stats() - before).dispatches)
}

/// The logits a forward pass under autocast returns are F16: every metric
/// takes them and counts what the F32 logits give (compared in f32, as
/// PyTorch does), with one cast launch at most; F32 logits get no cast.
#[test]
fn metrics_take_f16_logits_and_losses() {
    let logits = logits_for(&Y_PRED, CLASSES);
    // Devices of this test's own: it counts their launches.
    for dev in fresh_backends("metrics_take_f16_logits_and_losses") {
        let x32 = Tensor::from_vec(&logits, &[Y_PRED.len(), CLASSES], &dev);
        let x16 = x32.to_dtype(DType::F16);
        let y = Tensor::from_u32(&Y_TRUE, &[Y_TRUE.len()], &dev);
        let _ = (x16.to_vec(), y.to_vec()); // inputs ready before counting

        let (hits32, n32) = launches(&dev, || correct_count(&x32, &y).to_vec());
        let (hits16, n16) = launches(&dev, || correct_count(&x16, &y).to_vec());
        // The metric's own ops, written out: what F32 logits must cost.
        let (direct, n_direct) = launches(&dev, || {
            no_grad(|| {
                let pred = x32.argmax(1, false).one_hot(CLASSES);
                pred.gather(1, &y.reshape(&[Y_TRUE.len(), 1])).sum_all().to_vec()
            })
        });
        assert_eq!((hits32.clone(), hits16), (vec![6.0], vec![6.0]), "on {}", dev.name());
        assert_eq!(direct, hits32);
        assert_eq!(n32, n_direct, "F32 logits must not be cast (on {})", dev.name());
        assert!(n16 <= n32 + 1, "F16 logits: {n16} launches vs {n32} for F32 (on {})", dev.name());

        let mut cm = ConfusionMatrix::new(CLASSES);
        cm.update(&x16, &y);
        sklearn_report_checks(&cm.report());
        let mut acc = Accuracy::new();
        acc.update(&x16, &y);
        assert_eq!((acc.correct(), acc.total()), (6, 10), "on {}", dev.name());
        let mut topk = TopKAccuracy::new(&[1, 2]);
        topk.update(&x16, &y);
        let mut topk32 = TopKAccuracy::new(&[1, 2]);
        topk32.update(&x32, &y);
        assert_eq!(topk.values(), topk32.values(), "on {}", dev.name());

        // Losses under autocast may be F16 too; the sums stay F32.
        let mut mean = RunningMean::new();
        mean.update_tensor(&Tensor::scalar(2.5, &dev).to_dtype(DType::F16), 3);
        mean.update_tensor(&Tensor::scalar(0.5, &dev), 1);
        assert!(close(mean.mean(), 8.0 / 4.0, 1e-7), "{} on {}", mean.mean(), dev.name());
        let mut p = Perplexity::new();
        let ce = x16.cross_entropy(&y, &CrossEntropyOptions::default()).to_dtype(DType::F16);
        p.update(&ce, Y_TRUE.len());
        let want = x32.cross_entropy(&y, &CrossEntropyOptions::default()).item() as f64;
        assert!(close(p.mean_cross_entropy(), want, 2e-3), "{} vs {want} on {}", p.mean_cross_entropy(), dev.name());
    }
}

// ---- history --------------------------------------------------------------

fn sample_history(epochs: usize) -> History {
    let mut h = History::new();
    for e in 1..=epochs {
        let t = e as f64;
        h.push(EpochRecord {
            epoch: e,
            train_loss: 2.0 / t + 0.1,
            train_acc: Some(1.0 - 0.8 / t),
            // Validation loss turns up after epoch 6: the best epoch is 6.
            val_loss: Some(2.2 / t + 0.15 + 0.08 * (t - 6.0).max(0.0)),
            val_acc: Some(0.95 - 0.8 / t - 0.003 * (t - 6.0).max(0.0)),
            lr: 1e-3 * 0.9f64.powi(e as i32 - 1),
            metrics: Vec::new(),
        });
    }
    h
}

/// A fresh scratch folder for one test (removed by the test when it passes).
fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wgrad-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn history_csv_round_trips_exactly_with_missing_values() {
    let mut h = sample_history(4);
    h.records[1].val_loss = None;
    h.records[1].val_acc = None;
    h.records[2].train_acc = None;
    h.records[3].train_loss = 0.1 + 0.2; // not exactly 0.3
    h.records[3].lr = 3e-7;
    let text = h.to_csv();
    assert!(text.starts_with("epoch,train_loss,train_acc,val_loss,val_acc,lr\n"), "{text}");
    assert!(text.lines().nth(2).unwrap().starts_with("2,") && text.lines().nth(2).unwrap().contains(",,,"), "{text}");
    let dir = scratch("history_csv");
    let path = dir.join("history.csv");
    h.save_csv(&path).unwrap();
    assert_eq!(History::load_csv(&path).unwrap(), h);

    // Columns are found by name; numbers in extra ones are further metrics,
    // other cells are ignored.
    let moved = "lr,epoch,note,train_loss,top5_acc\n0.5,1,x,2.25,0.75\n";
    let back = History::from_csv(moved).unwrap();
    assert_eq!(
        back.records,
        [EpochRecord {
            epoch: 1,
            train_loss: 2.25,
            train_acc: None,
            val_loss: None,
            val_acc: None,
            lr: 0.5,
            metrics: vec![("top5_acc".to_string(), 0.75)]
        }]
    );
    let err = History::from_csv("epoch,train_loss\n1,2\n").unwrap_err().to_string();
    assert!(err.contains("line 1") && err.contains("`lr`"), "{err}");
    let err = History::from_csv("epoch,train_loss,lr\n1,2,0.1\n2,oops,0.1\n").unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("oops"), "{err}");

    let mut t = sample_history(9);
    t.truncate_to_epoch(5);
    assert_eq!(t.len(), 5);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn best_epoch_is_lowest_validation_loss() {
    let h = sample_history(12);
    assert_eq!(h.best_epoch().map(|r| r.epoch), Some(6));
    let mut ties = sample_history(3);
    for r in &mut ties.records {
        r.val_loss = Some(1.0);
    }
    assert_eq!(ties.best_epoch().map(|r| r.epoch), Some(1), "earliest on ties");
    let mut none = sample_history(3);
    for r in &mut none.records {
        r.val_loss = None;
    }
    assert!(none.best_epoch().is_none());
}

/// Width, height, colour type and bit depth from a PNG file.
fn decode_png(path: &std::path::Path) -> (u32, u32, png::ColorType, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}

#[test]
fn history_png_is_written_with_the_expected_size() {
    let dir = scratch("history_png");
    let path = dir.join("curves.png");
    sample_history(12).save_png(&path, 1000, 420).unwrap();
    let (w, h, color, pixels) = decode_png(&path);
    assert_eq!((w, h, color), (1000, 420, png::ColorType::Rgb));
    let inked = pixels.chunks_exact(3).filter(|p| p.iter().any(|&c| c < 200)).count();
    assert!(
        inked > 5_000 && inked < (w * h / 2) as usize,
        "{inked} dark pixels: curves and text but not a filled image"
    );
    // Both panels carry ink (the accuracy panel is the right half).
    let right = pixels.chunks_exact(3).enumerate().filter(|(i, p)| (i % w as usize) > 520 && p[0] < 120).count();
    assert!(right > 500, "{right} dark pixels in the accuracy panel");

    // One epoch, no accuracy and no validation still draw.
    let single = History {
        records: vec![EpochRecord {
            epoch: 1,
            train_loss: 0.5,
            train_acc: None,
            val_loss: None,
            val_acc: None,
            lr: 0.1,
            metrics: Vec::new(),
        }],
    };
    single.save_png(dir.join("single.png"), 400, 300).unwrap();
    assert_eq!(decode_png(&dir.join("single.png")).0, 400);
    assert!(History::new().save_png(dir.join("empty.png"), 400, 300).is_err());
    assert!(sample_history(2).save_png(dir.join("tiny.png"), 100, 100).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- progress -------------------------------------------------------------

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[test]
fn progress_prints_plain_summary_lines_and_can_be_quiet() {
    let out = Captured::default();
    let mut p = Progress::new(3).without_bar().with_writer(out.clone());
    let h = sample_history(2);
    for r in &h.records {
        p.start_epoch(r.epoch, 100);
        for _ in 0..4 {
            p.advance(25);
        }
        p.set_message("loss 0.5");
        assert!(!p.bar_visible());
        let s = p.finish_epoch(r);
        assert_eq!(s.samples, 100);
    }
    p.println("note");
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("epoch 1/3  train loss 2.1000 acc 20.00%  val loss"), "{text}");
    assert!(lines[1].contains("lr 9.000e-4") && lines[1].contains("samples/s"), "{text}");
    assert!(!text.contains('\r') && !text.contains('\x1b'), "no control characters in logs: {text:?}");

    let silent = Captured::default();
    let mut q = Progress::new(3).quiet(true).with_writer(silent.clone());
    q.start_epoch(1, 10);
    q.advance(10);
    let s = q.finish_epoch(&h.records[0]);
    q.println("hidden");
    assert_eq!(s.record, h.records[0]);
    assert!(silent.text().is_empty());
}

#[test]
fn epoch_summary_line_reads_well() {
    let s = EpochSummary {
        record: EpochRecord {
            epoch: 3,
            train_loss: 0.41234,
            train_acc: Some(0.8712),
            val_loss: None,
            val_acc: None,
            lr: 1e-3,
            metrics: Vec::new(),
        },
        epochs: 10,
        samples: 1000,
        elapsed: Duration::from_secs(2),
    };
    assert_eq!(s.samples_per_sec(), 500.0);
    assert_eq!(
        s.to_string(),
        "epoch  3/10  train loss 0.4123 acc 87.12%  val loss - acc -  lr 1.000e-3  500 samples/s  2.0s"
    );
}

// ---- early stopping ---------------------------------------------------------

fn model(dev: &Device) -> Sequential {
    let mut init = Init::new(dev, 7);
    Sequential::new().add(Linear::builder(3, 2).build(&mut init)).add(BatchNorm1d::builder(2).build(&mut init))
}

/// Every parameter and buffer of `m`, flattened, in name order.
fn values(m: &Sequential) -> Vec<(String, Vec<f32>)> {
    let mut v: Vec<_> = m.named_parameters().into_iter().map(|(n, t)| (n, t.to_vec())).collect();
    v.extend(m.named_buffers().into_iter().map(|(n, t)| (n, t.to_vec())));
    v
}

/// Simulates an epoch of training: every tensor gets values unique to `epoch`.
fn train_epoch(m: &Sequential, epoch: usize) {
    for (i, (_, t)) in m.named_parameters().into_iter().chain(m.named_buffers()).enumerate() {
        let n = t.numel();
        let v: Vec<f32> = (0..n).map(|j| epoch as f32 * 100.0 + i as f32 * 10.0 + j as f32).collect();
        t.assign(&Tensor::from_vec(&v, &t.shape(), &t.device()));
    }
}

#[test]
fn early_stopping_stops_at_the_right_epoch_and_restores_the_best() {
    for dev in backends("early_stopping_stops_at_the_right_epoch_and_restores_the_best") {
        let m = model(&dev);
        let mut es = EarlyStopping::new(3, 0.02, Mode::Min);
        // Epoch 4 (0.79) is better than epoch 2 but by less than min_delta.
        let losses = [1.0, 0.8, 0.85, 0.79, 0.9, 0.5, 0.4];
        let mut best_values = None;
        let mut stopped = None;
        for (i, &loss) in losses.iter().enumerate() {
            let epoch = i + 1;
            train_epoch(&m, epoch);
            let out = es.step(epoch, loss, &m);
            if epoch == 2 {
                assert!(out.improved);
                best_values = Some(values(&m));
            }
            if out.stop {
                stopped = Some(epoch);
                break;
            }
        }
        assert_eq!(stopped, Some(5), "on {}", dev.name());
        assert_eq!((es.best_epoch(), es.best(), es.bad_epochs()), (Some(2), Some(0.8), 3));
        assert_ne!(values(&m), best_values.clone().unwrap());

        // The saved copy is independent of the parameters' buffers: write
        // into the live weight's buffer in place, then restore.
        let w = m.named_parameters()[0].1.clone();
        let (b, l) = w.buffer_and_layout();
        let junk = Tensor::full(&w.shape(), -1.0, &dev);
        let (jb, jl) = junk.buffer_and_layout();
        copy::copy_into(&jb, &jl, &b, &l).unwrap();
        assert_eq!(es.restore_best(&m).unwrap(), Some(2));
        assert_eq!(values(&m), best_values.clone().unwrap(), "restored the best epoch on {}", dev.name());
        // Training on after a restore leaves the saved copy intact.
        let (b, l) = m.named_parameters()[0].1.buffer_and_layout();
        copy::copy_into(&jb, &jl, &b, &Layout::contiguous(&l.shape)).unwrap();
        es.restore_best(&m).unwrap();
        assert_eq!(values(&m), best_values.unwrap());
    }
}

#[test]
fn early_stopping_modes_patience_and_nan() {
    let dev = Device::cpu();
    let m = model(&dev);
    let run = |es: &mut EarlyStopping, metrics: &[f64]| -> Option<usize> {
        metrics.iter().enumerate().find_map(|(i, &x)| es.step(i + 1, x, &m).stop.then_some(i + 1))
    };
    // Max mode: an equal value is no improvement, a larger one resets the count.
    let mut es = EarlyStopping::new(2, 0.0, Mode::Max);
    assert_eq!(run(&mut es, &[0.5, 0.6, 0.6, 0.61, 0.6, 0.6, 0.9]), Some(6));
    assert_eq!((es.best_epoch(), es.stopped_epoch()), (Some(4), Some(6)));
    // Patience 0 stops at the first epoch without improvement; NaN never improves.
    let mut es = EarlyStopping::new(0, 0.0, Mode::Min);
    assert_eq!(run(&mut es, &[1.0, 0.9, f64::NAN]), Some(3));
    let mut es = EarlyStopping::new(1, 0.0, Mode::Min);
    assert_eq!(run(&mut es, &[f64::NAN, 2.0, 3.0]), Some(1));
    assert!(es.should_stop() && es.best_state().is_none());
    assert_eq!(es.restore_best(&m).unwrap(), None, "nothing to restore yet");
}

#[test]
fn early_stopping_state_round_trips_and_restore_checks_shapes() {
    let dev = Device::cpu();
    let m = model(&dev);
    let mut es = EarlyStopping::new(4, 0.01, Mode::Min);
    train_epoch(&m, 1);
    es.step(1, 0.7, &m);
    let best = values(&m);
    train_epoch(&m, 2);
    es.step(2, 0.75, &m);

    let state = es.state_dict();
    assert!(state.tensors.contains_key("best.0.weight") && state.tensors.contains_key("best.1.running_var"));
    let mut back = EarlyStopping::new(1, 0.0, Mode::Max);
    back.load_state_dict(&state).unwrap();
    assert_eq!((back.patience, back.min_delta, back.mode), (4, 0.01, Mode::Min));
    assert_eq!(
        (back.best(), back.best_epoch(), back.bad_epochs(), back.stopped_epoch()),
        (Some(0.7), Some(1), 1, None)
    );
    back.restore_best(&m).unwrap();
    assert_eq!(values(&m), best);

    let other = Sequential::new().add(Linear::builder(4, 2).build(&mut Init::new(&dev, 1)));
    let err = back.restore_best(&other).unwrap_err().to_string();
    assert!(err.contains("0.weight"), "{err}");
    let direct = snapshot(&m);
    assert_eq!(direct.tensors.len(), 7, "4 parameters and 3 buffers");
}

// ---- seeds ------------------------------------------------------------------

#[test]
fn one_seed_reproduces_every_stream() {
    let (a, b) = (seed_everything(42), seed_everything(42));
    assert_eq!(a, b);
    let streams = [a.model, a.data, a.augment, a.extra];
    for i in 0..4 {
        for j in i + 1..4 {
            assert_ne!(streams[i].seed, streams[j].seed);
        }
    }
    assert_ne!(seed_everything(43).model, a.model);
    assert_eq!(a.epoch_seed(3), b.epoch_seed(3));
    assert_ne!(a.epoch_seed(3), a.epoch_seed(4));
    assert_eq!(a.epoch_augment(2), b.epoch_augment(2));

    // The same seed builds the same model.
    let dev = Device::cpu();
    let build = || {
        let s = seed_everything(5);
        Linear::builder(6, 3).build(&mut Init::from_generator(&dev, s.model))
    };
    let (m1, m2) = (build(), build());
    assert_eq!(m1.named_parameters()[0].1.to_vec(), m2.named_parameters()[0].1.to_vec());
}

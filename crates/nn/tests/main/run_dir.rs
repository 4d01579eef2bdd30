//! RunDir's end-of-epoch bookkeeping and resume, and `evaluate`.

use wgrad_autograd::{Device, Tensor};
use wgrad_nn::checkpoint::TrainingCheckpoint;
use wgrad_nn::optim::Sgd;
use wgrad_nn::train::{evaluate, EpochRecord, History, RunDir};
use wgrad_nn::{Init, Linear, ModuleExt};

fn record(epoch: usize, val_loss: f64) -> EpochRecord {
    EpochRecord {
        epoch,
        train_loss: 1.0,
        train_acc: Some(0.5),
        val_loss: Some(val_loss),
        val_acc: Some(0.6),
        lr: 0.1,
        metrics: Vec::new(),
    }
}

#[test]
fn finish_epoch_writes_the_run_and_resume_reads_it_back() {
    let dev = Device::cpu();
    let dir = std::env::temp_dir().join(format!("wgrad-rundir-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = RunDir::create(&dir).unwrap();
    let model = Linear::builder(3, 2).build(&mut Init::new(&dev, 0));
    let opt = Sgd::new(model.parameters(), 0.1);
    let mut history = History::new();
    let mut bests = Vec::new();
    for (epoch, loss) in [(1, 0.9), (2, 0.5), (3, 0.7)] {
        let mut ck = TrainingCheckpoint::capture(&model, &opt);
        ck.epoch = epoch as u64;
        bests.push(run.finish_epoch(&mut history, record(epoch, loss), &ck, &model).unwrap());
    }
    assert_eq!(bests, vec![true, true, false], "best = lowest validation loss so far");
    for p in [run.last(), run.best(), run.history_csv(), run.curves_png()] {
        assert!(p.exists(), "{} written", p.display());
    }
    let (ck, h) = run.resume(&dev).unwrap();
    assert_eq!((ck.epoch, h.len()), (3, 3));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn evaluate_averages_loss_and_accuracy_over_batches() {
    let dev = Device::cpu();
    // Identity-like model: logits = x.
    let model = wgrad_nn::Identity;
    let batches = vec![
        Ok::<_, ()>((Tensor::from_vec(&[2.0, 0.0, 0.0, 2.0], &[2, 2], &dev), Tensor::from_u32(&[0, 0], &[2], &dev), 2)),
        Ok((Tensor::from_vec(&[0.0, 2.0], &[1, 2], &dev), Tensor::from_u32(&[1], &[1], &dev), 1)),
    ];
    let (loss, acc) = evaluate(&model, batches.into_iter(), |l, y| l.cross_entropy(y, &Default::default())).unwrap();
    assert!((acc - 2.0 / 3.0).abs() < 1e-9, "two of three right: {acc}");
    // CE of a 2-logit gap: right = ln(1+e^-2), wrong = ln(1+e^2).
    let (r, w) = ((1.0f64 + (-2.0f64).exp()).ln(), (1.0f64 + 2.0f64.exp()).ln());
    assert!((loss - (2.0 * r + w) / 3.0).abs() < 1e-5, "{loss}");
}

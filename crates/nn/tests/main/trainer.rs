//! `Trainer::fit` against the hand-written loop it replaces: bit-identical
//! parameters on every backend, gradient accumulation equal to one large
//! batch, a stop mid-epoch plus `resume` equal to an uninterrupted run,
//! early stopping that restores the best epoch, the schedule stepped the
//! right number of times, out-of-memory returned as an error, a step budget
//! that ends a run inside an epoch, state carried between steps restored on
//! resume, the per-batch callback, and metrics added to the Trainer
//! (recorded, printed, saved; their states merge).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};

use wgrad_autograd::{Device, HostRng, Tensor};
use wgrad_gpu_core::testing::{assert_close, backends};
use wgrad_nn::checkpoint::TrainingCheckpoint;
use wgrad_nn::layers::recurrent::RecurrentState;
use wgrad_nn::loss::MSELoss;
use wgrad_nn::optim::{Adam, Optimizer, Sgd};
use wgrad_nn::schedule::{ExponentialLR, LrScheduler, StepLR};
use wgrad_nn::state::StateDict;
use wgrad_nn::train::{
    Accuracy, BoxError, EarlyStopping, Evaluation, Every, Metric, MetricBatch, Mode, Outcome, Perplexity, RunDir,
    RunningMean, Stateful, StepOutput, TopK, Trainer, TruncatedBptt,
};
use wgrad_nn::{Dropout, Init, Linear, Module, ModuleExt, Sequential, Tanh};

const FEATURES: usize = 5;
const SAMPLES: usize = 48;

/// Regression data: `SAMPLES` rows of inputs and targets, seeded.
fn dataset(dev: &Device) -> (Vec<f32>, Vec<f32>) {
    let x = Tensor::randn(&[SAMPLES, FEATURES], 11, dev).to_vec();
    let y = Tensor::randn(&[SAMPLES, 1], 12, dev).to_vec();
    (x, y)
}

/// Batches of `b` rows of epoch `epoch`, in an order that depends on the
/// epoch (a rotation), from batch `skip` on.
fn batches(
    data: &(Vec<f32>, Vec<f32>),
    b: usize,
    epoch: usize,
    skip: usize,
    dev: &Device,
) -> Vec<Result<(Tensor, Tensor), std::io::Error>> {
    let order: Vec<usize> = (0..SAMPLES).map(|i| (i + 7 * epoch) % SAMPLES).collect();
    order
        .chunks(b)
        .skip(skip)
        .map(|rows| {
            let x: Vec<f32> = rows.iter().flat_map(|&r| data.0[r * FEATURES..(r + 1) * FEATURES].to_vec()).collect();
            let y: Vec<f32> = rows.iter().map(|&r| data.1[r]).collect();
            Ok((Tensor::from_vec(&x, &[rows.len(), FEATURES], dev), Tensor::from_vec(&y, &[rows.len(), 1], dev)))
        })
        .collect()
}

/// A small MLP, with dropout when `dropout` (its stream is part of the
/// state a resume must restore).
fn model(dev: &Device, dropout: bool) -> Sequential {
    let mut init = Init::new(dev, 3);
    let mut m = Sequential::new().add(Linear::builder(FEATURES, 16).build(&mut init)).add(Tanh);
    if dropout {
        m = m.add(Dropout::builder(0.2).build(&mut init));
    }
    m.add(Linear::builder(16, 1).build(&mut init))
}

fn step(m: &Sequential, (x, y): (Tensor, Tensor)) -> StepOutput {
    let n = x.shape()[0];
    StepOutput::new(MSELoss::default().forward(&m.forward(&x), &y), n)
}

fn params(m: &Sequential) -> Vec<Vec<f32>> {
    m.parameters().iter().map(|p| p.to_vec()).collect()
}

fn bits(m: &Sequential) -> Vec<Vec<u32>> {
    params(m).iter().map(|v| v.iter().map(|f| f.to_bits()).collect()).collect()
}

#[test]
fn fit_equals_the_hand_written_loop_bit_for_bit() {
    const EPOCHS: usize = 3;
    const B: usize = 8;
    for dev in backends("fit_equals_the_hand_written_loop_bit_for_bit") {
        let data = dataset(&dev);

        // The loop of the train module's docs, with clipping and a per-step schedule.
        let hand = model(&dev, false);
        let mut opt = Adam::new(hand.parameters(), 0.01);
        let mut sched = ExponentialLR::new(&mut opt, 0.97);
        let mut losses = vec![];
        for epoch in 0..EPOCHS {
            let mut sum = 0.0;
            for batch in batches(&data, B, epoch, 0, &dev) {
                let (x, y) = batch.unwrap();
                let loss = MSELoss::default().forward(&hand.forward(&x), &y);
                opt.zero_grad();
                loss.backward();
                wgrad_nn::optim::clip_grad_norm_(&hand.parameters(), 0.5);
                opt.step();
                sched.step(&mut opt);
                sum += loss.item() as f64 * x.shape()[0] as f64;
            }
            losses.push(sum / SAMPLES as f64);
        }

        let mut fitted = model(&dev, false);
        let mut opt2 = Adam::new(fitted.parameters(), 0.01);
        let mut sched2 = ExponentialLR::new(&mut opt2, 0.97);
        let fit = Trainer::new(&mut fitted, &mut opt2, step)
            .epochs(EPOCHS)
            .schedule(&mut sched2, Every::Step)
            .clip_grad_norm(0.5)
            .quiet()
            .fit(SAMPLES / B, |e, s| batches(&data, B, e, s, &dev))
            .unwrap();
        assert_eq!(fit.outcome, Outcome::Completed);
        assert_eq!(fit.steps, (EPOCHS * SAMPLES / B) as u64);
        assert_eq!(bits(&fitted), bits(&hand), "{}: parameters after {EPOCHS} epochs", dev.name());
        assert_eq!(opt2.groups()[0].lr, opt.groups()[0].lr);
        let got: Vec<f64> = fit.history.records.iter().map(|r| r.train_loss).collect();
        for (g, w) in got.iter().zip(&losses) {
            assert!((g - w).abs() <= 1e-5 * w.abs(), "{}: train loss {g} vs {w}", dev.name());
        }
    }
}

#[test]
fn accumulating_k_micro_batches_equals_one_batch_k_times_larger() {
    const K: usize = 4;
    const B: usize = 3;
    for dev in backends("accumulating_k_micro_batches_equals_one_batch_k_times_larger") {
        let data = dataset(&dev);
        let run = |b: usize, k: usize| {
            let mut m = model(&dev, false);
            let mut opt = Sgd::new(m.parameters(), 0.1);
            let fit = Trainer::new(&mut m, &mut opt, step)
                .epochs(2)
                .accumulate(k)
                .quiet()
                .fit(SAMPLES / b, |e, s| batches(&data, b, e, s, &dev))
                .unwrap();
            (params(&m), fit.steps, fit.history.records[1].train_loss)
        };
        let (micro, micro_steps, micro_loss) = run(B, K);
        let (big, big_steps, big_loss) = run(B * K, 1);
        assert_eq!(micro_steps, big_steps);
        assert_eq!(micro_steps, (2 * SAMPLES / (B * K)) as u64);
        for (i, (g, w)) in micro.iter().zip(&big).enumerate() {
            assert_close(&format!("{}: parameter {i}", dev.name()), g, w, 1e-5, 1e-6);
        }
        assert!((micro_loss - big_loss).abs() < 1e-5 * big_loss, "epoch loss {micro_loss} vs {big_loss}");
        // And it is not the same as k separate steps.
        let (separate, _, _) = run(B, 1);
        assert!(separate != big, "the test would not see a missing accumulation");
    }
}

fn temp_run(name: &str) -> RunDir {
    let dir = std::env::temp_dir().join(format!("wgrad-trainer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    RunDir::create(&dir).unwrap()
}

/// A run with everything that has state: Adam, a per-step schedule, dropout,
/// evaluation, early stopping (patient enough not to stop), a run folder.
/// `stop_after`: set the stop flag after that many batches.
fn resumable_run(dev: &Device, run: &RunDir, resume: bool, stop_after: Option<usize>) -> (Vec<Vec<u32>>, Vec<f64>) {
    const B: usize = 8;
    let data = dataset(dev);
    let mut m = model(dev, true);
    let mut opt = Adam::new(m.parameters(), 0.01);
    let mut sched = ExponentialLR::new(&mut opt, 0.95);
    let mut stopper = EarlyStopping::new(10, 0.0, Mode::Min);
    let flag = AtomicBool::new(false);
    let seen = RefCell::new(0);
    let fit = Trainer::new(&mut m, &mut opt, |m: &Sequential, b| {
        *seen.borrow_mut() += 1;
        if stop_after == Some(*seen.borrow()) {
            flag.store(true, Ordering::SeqCst);
        }
        step(m, b)
    })
    .epochs(4)
    .schedule(&mut sched, Every::Step)
    .early_stopping(&mut stopper)
    .evaluate(|m| {
        let (x, y) = batches(&data, SAMPLES, 0, 0, dev).remove(0)?;
        let loss = wgrad_autograd::no_grad(|| MSELoss::default().forward(&m.forward(&x), &y).item());
        Ok(Evaluation { loss: loss as f64, accuracy: None })
    })
    .run_dir(run.clone())
    .resume(resume)
    .stop_flag(&flag)
    .quiet()
    .fit(SAMPLES / B, |e, s| batches(&data, B, e, s, dev))
    .unwrap();
    if let (Some(n), false) = (stop_after, resume) {
        let per_epoch = SAMPLES / B;
        assert_eq!(fit.outcome, Outcome::Interrupted { epoch: n / per_epoch + 1, batches: n % per_epoch });
    }
    let val: Vec<f64> = fit.history.records.iter().map(|r| r.val_loss.unwrap()).collect();
    (bits(&m), val)
}

#[test]
fn stop_mid_epoch_then_resume_equals_the_uninterrupted_run() {
    for dev in backends("stop_mid_epoch_then_resume_equals_the_uninterrupted_run") {
        let tag = if dev.is_gpu() { "gpu" } else { "cpu" };
        let whole = temp_run(&format!("whole-{tag}"));
        let (want, want_val) = resumable_run(&dev, &whole, false, None);
        assert_eq!(want_val.len(), 4);

        // Stopped in epoch 2 (after 3 of its 6 batches), resumed, stopped
        // again at the last batch of epoch 3 (which still ends with its
        // evaluation and checkpoint), resumed to the end.
        let split = temp_run(&format!("split-{tag}"));
        resumable_run(&dev, &split, false, Some(9));
        resumable_run(&dev, &split, true, Some(9));
        let (got, got_val) = resumable_run(&dev, &split, true, None);
        assert_eq!(got, want, "{}: parameters", dev.name());
        assert_eq!(got_val, want_val, "{}: validation losses", dev.name());

        // A checkpoint written by the examples' hand-written loops (no
        // `trainer.batch`: one optimizer step a batch) resumes as well.
        let old = temp_run(&format!("old-{tag}"));
        resumable_run(&dev, &old, false, Some(9));
        let mut ck = TrainingCheckpoint::load(old.last(), &dev).unwrap();
        assert_eq!(ck.extra.meta.remove("trainer.batch").as_deref(), Some("3"));
        assert_eq!((ck.epoch, ck.step), (1, 9));
        ck.save(old.last()).unwrap();
        let (got, got_val) = resumable_run(&dev, &old, true, None);
        assert_eq!((got, got_val), (want, want_val), "{}: resumed from a hand-written loop's checkpoint", dev.name());
        for run in [whole, split, old] {
            std::fs::remove_dir_all(run.last().parent().unwrap()).unwrap();
        }
    }
}

#[test]
fn early_stopping_ends_the_run_and_restores_the_best_epoch() {
    let dev = Device::cpu();
    let data = dataset(&dev);
    let mut m = model(&dev, false);
    let mut opt = Sgd::new(m.parameters(), 0.05);
    let mut stopper = EarlyStopping::new(2, 0.0, Mode::Min);
    // Scripted validation losses: best at epoch 2, then two bad epochs.
    let script = [1.0, 0.5, 0.7, 0.8, 0.9, 0.1];
    let (epoch, snapshots) = (RefCell::new(0), RefCell::new(vec![]));
    let fit = Trainer::new(&mut m, &mut opt, step)
        .epochs(6)
        .early_stopping(&mut stopper)
        .evaluate(|m| {
            snapshots.borrow_mut().push(params(m));
            *epoch.borrow_mut() += 1;
            Ok(Evaluation { loss: script[*epoch.borrow() - 1], accuracy: None })
        })
        .quiet()
        .fit(SAMPLES / 8, |e, s| batches(&data, 8, e, s, &dev))
        .unwrap();
    assert_eq!(fit.outcome, Outcome::EarlyStopped { epoch: 4, best_epoch: Some(2) });
    assert_eq!(fit.history.len(), 4);
    let snapshots = snapshots.into_inner();
    assert_eq!(params(&m), snapshots[1], "the parameters of epoch 2");
    assert_ne!(snapshots[3], snapshots[1]);
}

#[test]
fn the_schedule_steps_once_per_optimizer_step_or_per_epoch() {
    let dev = Device::cpu();
    let data = dataset(&dev);
    // 48 samples in batches of 5: 10 batches, the last one short; k = 3
    // gives 4 optimizer steps an epoch (3 + 3 + 3 + 1).
    for (every, k, want) in [(Every::Step, 3, 3 * 4), (Every::Step, 1, 3 * 10), (Every::Epoch, 3, 3)] {
        let mut m = model(&dev, false);
        let mut opt = Sgd::new(m.parameters(), 0.05);
        let mut sched = StepLR::new(&mut opt, 1000, 0.5);
        let fit = Trainer::new(&mut m, &mut opt, step)
            .epochs(3)
            .accumulate(k)
            .schedule(&mut sched, every)
            .quiet()
            .fit(10, |e, s| batches(&data, 5, e, s, &dev))
            .unwrap();
        assert_eq!(sched.last_epoch(), want, "{every:?}, k = {k}");
        if every == Every::Step {
            assert_eq!(fit.steps as usize, want);
        }
    }
}

#[test]
fn out_of_memory_is_an_error_that_says_so() {
    let dev = Device::cpu();
    let data = dataset(&dev);
    let mut m = model(&dev, false);
    let mut opt = Sgd::new(m.parameters(), 0.05);
    // Made before the budget: only the step itself allocates afterwards.
    let ready: Vec<(Tensor, Tensor)> = batches(&data, 8, 0, 0, &dev).into_iter().map(Result::unwrap).collect();
    dev.set_memory_budget(Some(1));
    let err = Trainer::new(&mut m, &mut opt, step)
        .quiet()
        .fit(ready.len(), |_, _| ready.iter().map(|b| Ok::<_, std::io::Error>(b.clone())).collect::<Vec<_>>())
        .unwrap_err();
    dev.set_memory_budget(None);
    assert!(err.is_out_of_memory(), "{err}");
    assert!(err.to_string().contains("the training step"), "{err}");
}

#[test]
fn resume_without_a_run_folder_is_a_clear_error() {
    let dev = Device::cpu();
    let mut m = model(&dev, false);
    let mut opt = Sgd::new(m.parameters(), 0.05);
    let err = Trainer::new(&mut m, &mut opt, step)
        .resume(true)
        .quiet()
        .fit(1, |_, _| Vec::<Result<(Tensor, Tensor), std::io::Error>>::new())
        .unwrap_err();
    assert!(err.to_string().contains("resume needs a run_dir"), "{err}");
}

#[test]
fn amp_with_clipping_equals_the_hand_written_mixed_precision_loop() {
    use wgrad_autograd::AutocastGuard;
    use wgrad_nn::amp::{GradScaler, GradScalerOptions};
    const B: usize = 8;
    for dev in backends("amp_with_clipping_equals_the_hand_written_mixed_precision_loop") {
        let data = dataset(&dev);
        // PyTorch's recipe: autocast forward, scaled backward, unscale, clip, step, update.
        let hand = model(&dev, false);
        let mut opt = Adam::new(hand.parameters(), 0.01);
        let mut scaler = GradScaler::with_options(GradScalerOptions::default().init_scale(1024.0));
        for epoch in 0..2 {
            for batch in batches(&data, B, epoch, 0, &dev) {
                let (x, y) = batch.unwrap();
                let loss = {
                    let _autocast = AutocastGuard::new(true);
                    MSELoss::default().forward(&hand.forward(&x), &y)
                };
                opt.zero_grad();
                scaler.scale(&loss).backward();
                scaler.unscale_(&mut opt);
                wgrad_nn::optim::clip_grad_norm_(&hand.parameters(), 0.5);
                scaler.step(&mut opt);
                scaler.update();
            }
        }

        let mut fitted = model(&dev, false);
        let mut opt2 = Adam::new(fitted.parameters(), 0.01);
        let fit = Trainer::new(&mut fitted, &mut opt2, step)
            .epochs(2)
            .amp(true)
            .grad_scaler(GradScaler::with_options(GradScalerOptions::default().init_scale(1024.0)))
            .clip_grad_norm(0.5)
            .quiet()
            .fit(SAMPLES / B, |e, s| batches(&data, B, e, s, &dev))
            .unwrap();
        assert_eq!(fit.outcome, Outcome::Completed);
        assert_eq!(bits(&fitted), bits(&hand), "{}: parameters after 2 mixed-precision epochs", dev.name());
        // Autocast really ran: the f32 loop ends elsewhere.
        let mut plain = model(&dev, false);
        let mut opt3 = Adam::new(plain.parameters(), 0.01);
        Trainer::new(&mut plain, &mut opt3, step)
            .epochs(2)
            .clip_grad_norm(0.5)
            .quiet()
            .fit(SAMPLES / B, |e, s| batches(&data, B, e, s, &dev))
            .unwrap();
        assert_ne!(bits(&plain), bits(&hand), "{}: autocast changed nothing", dev.name());
    }
}

#[test]
fn stop_in_the_first_epoch_then_resume_equals_the_uninterrupted_run() {
    // Stopped before any epoch ended: the run folder has a checkpoint but no history yet.
    let dev = Device::cpu();
    let whole = temp_run("first-whole");
    let want = resumable_run(&dev, &whole, false, None);
    let split = temp_run("first-split");
    resumable_run(&dev, &split, false, Some(2));
    assert!(!split.history_csv().exists());
    assert_eq!(resumable_run(&dev, &split, true, None), want);
    for run in [whole, split] {
        std::fs::remove_dir_all(run.last().parent().unwrap()).unwrap();
    }
}

#[test]
fn max_steps_ends_the_run_inside_an_epoch_without_reading_a_batch_more() {
    const B: usize = 8;
    let dev = Device::cpu();
    let data = dataset(&dev);
    // 6 batches an epoch; 9 steps end in the middle of the second.
    let hand = model(&dev, false);
    let mut opt = Sgd::new(hand.parameters(), 0.05);
    let all = batches(&data, B, 0, 0, &dev).into_iter().chain(batches(&data, B, 1, 0, &dev));
    for batch in all.take(9) {
        let (x, y) = batch.unwrap();
        MSELoss::default().forward(&hand.forward(&x), &y).backward();
        opt.step();
        opt.zero_grad();
    }

    let mut m = model(&dev, false);
    let mut opt2 = Sgd::new(m.parameters(), 0.05);
    let (read, evaluations) = (Cell::new(0), Cell::new(0));
    let fit = Trainer::new(&mut m, &mut opt2, step)
        .epochs(4)
        .max_steps(9)
        .evaluate(|_| {
            evaluations.set(evaluations.get() + 1);
            Ok(Evaluation { loss: 1.0, accuracy: None })
        })
        .quiet()
        .fit(SAMPLES / B, |e, s| batches(&data, B, e, s, &dev).into_iter().inspect(|_| read.set(read.get() + 1)))
        .unwrap();
    assert_eq!(fit.outcome, Outcome::Completed);
    assert_eq!((fit.steps, fit.history.len(), evaluations.get()), (9, 2, 2), "the cut epoch is evaluated and recorded");
    assert_eq!(read.get(), 9, "batches taken from the data");
    assert_eq!(bits(&m), bits(&hand));
}

/// What a step carries to the next batch, as truncated BPTT carries the
/// recurrent state: here the previous batch's loss, detached, added to the
/// next batch's inputs.
#[derive(Default)]
struct Carry(Option<Tensor>);

impl Stateful for Carry {
    fn state_dict(&self) -> StateDict {
        let mut s = StateDict::new();
        if let Some(t) = &self.0 {
            s.tensors.insert("carry".into(), t.clone());
        }
        s
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<(), BoxError> {
        self.0 = state.tensors.get("carry").cloned();
        Ok(())
    }
}

/// A run whose batches are random rows drawn from a host stream and whose
/// step carries a tensor from batch to batch; both are registered with
/// `Trainer::state` when `with_state`. The stream starts from `seed`.
fn carrying_run(
    dev: &Device,
    run: &RunDir,
    (resume, stop_after): (bool, Option<usize>),
    seed: u64,
    with_state: bool,
) -> Vec<Vec<u32>> {
    const B: usize = 8;
    let data = dataset(dev);
    let (rng, carry) = (RefCell::new(HostRng::new(seed)), RefCell::new(Carry::default()));
    let mut m = model(dev, false);
    let mut opt = Adam::new(m.parameters(), 0.01);
    let (flag, seen) = (AtomicBool::new(false), Cell::new(0));
    let step = |m: &Sequential, (x, y): (Tensor, Tensor)| {
        seen.set(seen.get() + 1);
        if stop_after == Some(seen.get()) {
            flag.store(true, Ordering::SeqCst);
        }
        let x = match &carry.borrow().0 {
            Some(c) => &x + c,
            None => x,
        };
        let out = step(m, (x, y));
        carry.borrow_mut().0 = Some(out.loss.detach());
        out
    };
    // Drawn lazily: the stream's state when a checkpoint is taken is that
    // after the batches trained so far.
    let draw = || {
        let rows: Vec<usize> = (0..B).map(|_| (rng.borrow_mut().next_u64() % SAMPLES as u64) as usize).collect();
        let x: Vec<f32> = rows.iter().flat_map(|&r| data.0[r * FEATURES..(r + 1) * FEATURES].to_vec()).collect();
        let y: Vec<f32> = rows.iter().map(|&r| data.1[r]).collect();
        Ok::<_, std::io::Error>((Tensor::from_vec(&x, &[B, FEATURES], dev), Tensor::from_vec(&y, &[B, 1], dev)))
    };
    let mut trainer = Trainer::new(&mut m, &mut opt, step).epochs(3);
    if with_state {
        trainer = trainer.state("batches", &rng).state("carry", &carry);
    }
    let fit = trainer
        .run_dir(run.clone())
        .resume(resume)
        .stop_flag(&flag)
        .quiet()
        .fit(SAMPLES / B, |_, skip| (skip..SAMPLES / B).map(|_| draw()))
        .unwrap();
    assert_eq!(fit.outcome == Outcome::Completed, stop_after.is_none());
    bits(&m)
}

#[test]
fn state_carried_between_steps_is_checkpointed_and_restored() {
    let dev = Device::cpu();
    let whole = temp_run("carry-whole");
    let want = carrying_run(&dev, &whole, (false, None), 1, true);
    // Stopped mid-epoch with a carried tensor and a half-used stream,
    // resumed from another seed and nothing carried: all from the checkpoint.
    let split = temp_run("carry-split");
    carrying_run(&dev, &split, (false, Some(8)), 1, true);
    let ck = TrainingCheckpoint::load(split.last(), &dev).unwrap();
    assert!(ck.extra.tensors.contains_key("carry.carry") && ck.extra.meta.contains_key("batches.state"));
    assert_eq!(carrying_run(&dev, &split, (true, None), 2, true), want);
    // Without the states the resumed run draws other batches: the test sees it.
    let blind = temp_run("carry-blind");
    carrying_run(&dev, &blind, (false, Some(8)), 1, false);
    assert_ne!(carrying_run(&dev, &blind, (true, None), 2, false), want);
    for run in [whole, split, blind] {
        std::fs::remove_dir_all(run.last().parent().unwrap()).unwrap();
    }
}

#[test]
fn a_reserved_or_repeated_state_name_is_a_clear_error() {
    let dev = Device::cpu();
    for names in [["trainer", "a"], ["a", "a"]] {
        let (a, b) = (RefCell::new(HostRng::new(0)), RefCell::new(HostRng::new(1)));
        let mut m = model(&dev, false);
        let mut opt = Sgd::new(m.parameters(), 0.05);
        let err = Trainer::new(&mut m, &mut opt, step)
            .state(names[0], &a)
            .state(names[1], &b)
            .quiet()
            .fit(1, |_, _| Vec::<Result<(Tensor, Tensor), std::io::Error>>::new())
            .unwrap_err();
        assert!(err.to_string().contains("reserved or used twice"), "{err}");
    }
}

#[test]
fn truncated_bptt_state_round_trips_through_stateful() {
    let dev = Device::cpu();
    let h = Tensor::randn(&[2, 3, 4], 5, &dev);
    let c = Tensor::randn(&[2, 3, 4], 6, &dev);
    let mut tbptt = TruncatedBptt::new();
    tbptt.carry(&RecurrentState { h: h.clone(), c: Some(c.clone()) });
    let saved = Stateful::state_dict(&tbptt);
    let mut back = TruncatedBptt::new();
    Stateful::load_state_dict(&mut back, &saved).unwrap();
    let st = back.state().expect("a state");
    assert_eq!((st.h.to_vec(), st.c.as_ref().unwrap().to_vec()), (h.to_vec(), c.to_vec()));
    // The zero state saves nothing and restores as the zero state.
    Stateful::load_state_dict(&mut back, &Stateful::state_dict(&TruncatedBptt::new())).unwrap();
    assert!(back.state().is_none());
    // A checkpoint from before the state carried its `carried` entry (the
    // old char_lstm's) is an error, not a silent restart from zero.
    let mut old = TruncatedBptt::state_dict(&tbptt);
    let err = Stateful::load_state_dict(&mut back, &old).unwrap_err().to_string();
    assert!(err.contains("no `carried` entry"), "{err}");
    old.meta.insert("carried".into(), "yes".into());
    old.tensors.clear();
    assert!(Stateful::load_state_dict(&mut back, &old).unwrap_err().to_string().contains("no `h`"));
}

#[test]
fn on_batch_end_sees_every_batch_and_its_optimizer_step() {
    let dev = Device::cpu();
    let data = dataset(&dev);
    let mut m = model(&dev, false);
    let mut opt = Sgd::new(m.parameters(), 0.05);
    let (losses, seen) = (RefCell::new(vec![]), RefCell::new(vec![]));
    // 10 batches of 5 (the last short) in micro-batches of 3: steps after
    // batches 3, 6, 9 and 10.
    let fit = Trainer::new(&mut m, &mut opt, |m: &Sequential, b| {
        let out = step(m, b);
        losses.borrow_mut().push(out.loss.item());
        out
    })
    .epochs(2)
    .accumulate(3)
    .quiet()
    .on_batch_end(|b| seen.borrow_mut().push((b.epoch, b.batch, b.steps, b.stepped, b.loss.item(), b.samples)))
    .fit(10, |e, s| batches(&data, 5, e, s, &dev))
    .unwrap();
    let seen = seen.into_inner();
    assert_eq!(seen.len(), 20);
    assert_eq!(fit.steps, 8);
    for (i, &(epoch, batch, steps, stepped, loss, samples)) in seen.iter().enumerate() {
        let (e, b) = (i / 10 + 1, i % 10 + 1);
        let due = b % 3 == 0 || b == 10;
        let before = (e - 1) * 4 + (b - 1) / 3;
        assert_eq!((epoch, batch, stepped, steps), (e, b, due, (before + due as usize) as u64), "batch {i}");
        assert_eq!(samples, if b == 10 { 3 } else { 5 });
        assert_eq!(loss, losses.borrow()[i], "the batch's own loss");
    }
}

/// Progress lines, captured.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Samples counted, as a user's own [`Metric`] would be written.
#[derive(Default)]
struct SamplesSeen(f64);

impl Metric for SamplesSeen {
    fn name(&self) -> String {
        "samples".into()
    }
    fn update(&mut self, batch: &MetricBatch) {
        self.0 += batch.samples as f64;
    }
    fn value(&self) -> Option<f64> {
        Some(self.0)
    }
    fn reset(&mut self) {
        self.0 = 0.0;
    }
    fn state(&self) -> Vec<f64> {
        vec![self.0]
    }
    fn merge(&mut self, state: &[f64]) {
        self.0 += state[0];
    }
}

/// Metrics added with `Trainer::metric` (a built-in top-k accuracy and
/// perplexity, and a user's own) are tracked per epoch: in the records,
/// the progress line and the history CSV, which loads back the same.
#[test]
fn metrics_added_to_the_trainer_are_recorded_printed_and_saved() {
    for dev in backends("metrics_added_to_the_trainer_are_recorded_printed_and_saved") {
        let mut init = Init::new(&dev, 5);
        let mut m = Sequential::new().add(Linear::builder(FEATURES, 4).build(&mut init));
        let mut opt = Sgd::new(m.parameters(), 0.1);
        let x = Tensor::randn(&[12, FEATURES], 3, &dev);
        let labels: Vec<u32> = (0..12).map(|i| i % 4).collect();
        let y = Tensor::from_u32(&labels, &[12], &dev);
        let run = temp_run("metrics");
        let lines = Captured::default();
        let progress = wgrad_nn::train::Progress::new(2).without_bar().with_writer(lines.clone());
        let fit = Trainer::new(&mut m, &mut opt, |m: &Sequential, (x, y): (Tensor, Tensor)| {
            let logits = m.forward(&x);
            let loss = logits.cross_entropy(&y, &wgrad_autograd::CrossEntropyOptions::default());
            StepOutput::new(loss, 12).with_accuracy(&logits, &y)
        })
        .epochs(2)
        .metric(TopK::new(2))
        .metric(Perplexity::new())
        .metric(SamplesSeen::default())
        .progress(progress)
        .run_dir(run.clone())
        .fit(2, |_, skip| (skip..2).map(|_| Ok::<_, std::io::Error>((x.clone(), y.clone()))).collect::<Vec<_>>())
        .unwrap();
        for r in &fit.history.records {
            let names: Vec<&str> = r.metrics.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["top2_acc", "perplexity", "samples"], "{}", dev.name());
            let (top2, ppl) = (r.metric("top2_acc").unwrap(), r.metric("perplexity").unwrap());
            assert!(top2 >= r.train_acc.unwrap() && top2 <= 1.0, "top-2 {top2} vs top-1 {:?}", r.train_acc);
            assert_close("perplexity is exp(mean loss)", &[ppl as f32], &[r.train_loss.exp() as f32], 1e-5, 1e-5);
            assert_eq!(r.metric("samples"), Some(24.0));
        }
        let shown = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(
            shown.contains("top2_acc ") && shown.contains("perplexity ") && shown.contains("samples 24."),
            "{shown}"
        );
        let csv = std::fs::read_to_string(run.history_csv()).unwrap();
        assert!(csv.lines().next().unwrap().ends_with(",lr,top2_acc,perplexity,samples"), "{csv}");
        assert_eq!(wgrad_nn::train::History::from_csv(&csv).unwrap(), fit.history, "{}", dev.name());
    }
}

/// A metric's state is sums: two accumulators over halves of the batches,
/// merged, give the value of one over all of them (as data-parallel ranks
/// will combine theirs).
#[test]
fn merged_metric_states_equal_one_accumulator_over_all_batches() {
    let dev = Device::cpu();
    let logits = Tensor::randn(&[8, 5], 9, &dev);
    let labels = Tensor::from_u32(&[0, 1, 2, 3, 4, 0, 1, 2], &[8], &dev);
    let loss = |v: f32| Tensor::from_vec(&[v], &[], &dev);
    let halves = [
        (logits.narrow(0, 0, 3), labels.narrow(0, 0, 3), 1.5f32),
        (logits.narrow(0, 3, 5), labels.narrow(0, 3, 5), 0.5),
    ];
    let fresh = || -> Vec<Box<dyn Metric>> {
        vec![
            Box::new(RunningMean::new()),
            Box::new(Accuracy::new()),
            Box::new(TopK::new(3)),
            Box::new(Perplexity::new()),
        ]
    };
    let (mut all, mut merged) = (fresh(), fresh());
    let mut parts = [fresh(), fresh()];
    for ((x, y, l), part) in halves.iter().zip(&mut parts) {
        let (x, y, l) = (x.contiguous(), y.contiguous(), loss(*l));
        let batch = MetricBatch { loss: &l, samples: y.numel(), outputs: Some((&x, &y)) };
        for (a, p) in all.iter_mut().zip(part.iter_mut()) {
            a.update(&batch);
            p.update(&batch);
        }
    }
    for part in &parts {
        for (m, p) in merged.iter_mut().zip(part) {
            m.merge(&p.state());
        }
    }
    for (a, m) in all.iter().zip(&merged) {
        let (want, got) = (a.value().unwrap(), m.value().unwrap());
        assert!((want - got).abs() <= 1e-9 * want.abs().max(1.0), "{}: {got} merged vs {want}", a.name());
    }
    assert_eq!(all[0].value(), Some((1.5 * 3.0 + 0.5 * 5.0) / 8.0));
}

//! Replay (`gpu/replay.rs`) changes no bit of a training trajectory: 20
//! steps with replay on and off give the same losses and parameters, bit
//! for bit, for ResNet with batch norm under a learning rate that changes
//! every step, a GPT with dropout and an LSTM on batches that repeat tokens
//! (their embeddings' gradients add repeated rows), and mixed precision with a
//! GradScaler that skips steps. On a GPU the replayed runs really replay
//! (the counters say so) and the eager ones do not; on lavapipe every model
//! also runs without operand textures, where every launch's bind group can
//! be replayed. On the CPU backends (reference and fast) nothing is
//! recorded, so replay is a no-op there: the same trajectories are checked
//! to be unaffected by the switch.

use wgrad::gpu_core::StatsSnapshot;
use wgrad::models::{Gpt, ResNet, RnnLm, Shortcut};
use wgrad::nn::amp::GradScalerOptions;
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Adam, Optimizer, Sgd, SgdOptions};
use wgrad::nn::RecurrentKind;
use wgrad::prelude::*;

const STEPS: usize = 20;
/// A first loss scale the f16 gradients overflow at: the scaler halves it
/// over a few skipped steps, then trains.
const SKIPPING_SCALE: f32 = 1_048_576.0;

/// What a run did, bit for bit.
#[derive(Debug, PartialEq)]
struct Trajectory {
    losses: Vec<u32>,
    /// Steps the GradScaler skipped.
    skipped: usize,
    params: Vec<Vec<u32>>,
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A model's training loop (`params`: its parameters): `step(i)` runs step `i` and returns its loss
/// tensor and whether the optimizer stepped.
fn trajectory(params: Vec<Tensor>, mut step: impl FnMut(usize) -> (Tensor, bool)) -> Trajectory {
    let (mut losses, mut skipped) = (Vec::new(), 0);
    for i in 0..STEPS {
        let (loss, stepped) = step(i);
        losses.push(loss.item().to_bits());
        skipped += usize::from(!stepped);
    }
    Trajectory { losses, skipped, params: params.iter().map(|p| bits(&p.to_vec())).collect() }
}

/// ResNet-8 (batch norm, the option-A shortcut) with SGD + momentum whose
/// learning rate changes every step.
fn resnet(dev: &Device) -> Trajectory {
    let model = ResNet::cifar(8, 10, Shortcut::ZeroPad, &mut Init::new(dev, 5));
    let opts = SgdOptions { momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
    let mut opt = Sgd::with_options(model.parameters(), 0.05, opts);
    let labels: Vec<u32> = (0..4).map(|i| (i * 3 % 10) as u32).collect();
    let (x, y) = (Tensor::randn(&[4, 3, 8, 8], 11, dev), Tensor::from_u32(&labels, &[4], dev));
    trajectory(model.parameters(), |i| {
        opt.groups_mut()[0].lr = 0.05 / (1.0 + i as f32);
        let loss = CrossEntropyLoss::default().forward(&model.forward(&x), &y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        (loss, true)
    })
}

/// A 1-block GPT with dropout (a new mask every step) and Adam (whose step
/// count changes every step), with autocast and a GradScaler when `amp`
/// (whose first scale overflows the f16 gradients, so it skips steps).
///
/// Eight sequences over 5 of the 16 tokens: the embeddings' gradients add
/// repeated tokens' (and positions') rows, in a fixed order on every
/// device (`index_add`), so repeats must not change a bit either.
fn gpt(dev: &Device, amp: bool) -> Trajectory {
    let model = Gpt::builder(16, 8).layers(1).heads(2).width(16).dropout(0.1).build(&mut Init::new(dev, 9));
    let mut opt = Adam::new(model.parameters(), 3e-3);
    let tokens: Vec<u32> = (0..72).map(|i| (i * 7 + i / 5) % 5).collect();
    let (inputs, next): (Vec<u32>, Vec<u32>) = (0..8)
        .flat_map(|b| (0..8).map(move |t| (b * 9 + t, b * 9 + t + 1)))
        .map(|(i, j)| (tokens[i], tokens[j]))
        .unzip();
    let (ids, targets) = (Tensor::from_u32(&inputs, &[8, 8], dev), Tensor::from_u32(&next, &[8, 8], dev));
    let mut scaler = GradScaler::with_options(GradScalerOptions::default().enabled(amp).init_scale(SKIPPING_SCALE));
    trajectory(model.parameters(), |_| {
        let loss = {
            let _autocast = AutocastGuard::new(amp);
            model.loss(&ids, &targets)
        };
        opt.zero_grad();
        scaler.scale(&loss).backward();
        let stepped = scaler.step(&mut opt);
        scaler.update();
        (loss, stepped)
    })
}

/// A 1-layer LSTM language model with Adam, on a sequence that repeats
/// tokens (see [`gpt`]).
fn lstm(dev: &Device) -> Trajectory {
    let model =
        RnnLm::builder(12).embed(8).hidden(16).layers(1).kind(RecurrentKind::Lstm).build(&mut Init::new(dev, 3));
    let mut opt = Adam::new(model.parameters(), 1e-2);
    let tokens: Vec<u32> = (0..8).map(|i| (i * 5 + 1) % 4).collect();
    let (ids, targets) = (Tensor::from_u32(&tokens[..7], &[1, 7], dev), Tensor::from_u32(&tokens[1..], &[7], dev));
    trajectory(model.parameters(), |_| {
        let (logits, _) = model.forward_with_state(&ids, None);
        let loss = CrossEntropyLoss::default().forward(&logits.reshape(&[7, 12]), &targets);
        opt.zero_grad();
        loss.backward();
        opt.step();
        (loss, true)
    })
}

/// Runs `run` on a fresh `open()`ed device with replay off, then on another
/// with replay on, checks the trajectories are identical and returns the
/// replayed run's counters.
fn same_with_and_without_replay(
    what: &str,
    open: impl Fn() -> Device,
    run: impl Fn(&Device) -> Trajectory,
) -> StatsSnapshot {
    let eager_dev = open();
    eager_dev.set_replay(false).unwrap();
    let eager = run(&eager_dev);
    let eager_stats = eager_dev.stats();
    let dev = open();
    dev.set_replay(true).unwrap();
    let replayed = run(&dev);
    let s = dev.stats();
    println!(
        "{what} on {}: {} plans captured, {} of {} batches replayed, {} launches replayed of {}, {} fallbacks (last: {:?})",
        dev.name(),
        s.plans_captured,
        s.batches_replayed,
        s.submissions,
        s.launches_replayed,
        s.dispatches,
        s.replay_fallbacks,
        dev.replay_fallback()
    );
    let first = |a: &Trajectory, b: &Trajectory| {
        let loss = a.losses.iter().zip(&b.losses).position(|(x, y)| x != y);
        let param = a.params.iter().zip(&b.params).position(|(x, y)| x != y);
        format!(
            "first step whose loss differs: {loss:?}; first parameter that differs: {param:?}; skipped {} vs {}",
            a.skipped, b.skipped
        )
    };
    assert!(
        replayed == eager,
        "{what} on {}: replay changed the trajectory ({})",
        dev.name(),
        first(&replayed, &eager)
    );
    assert_eq!(
        (eager_stats.plans_captured, eager_stats.batches_replayed, eager_stats.launches_replayed),
        (0, 0, 0),
        "{what} on {}: replay off records every batch afresh",
        dev.name()
    );
    s
}

/// The devices a trajectory is checked on: the CPU reference and fast
/// backends (replay is a no-op there), and a GPU of the test's own with
/// its default operand textures and, on CPU adapters, without them.
fn check(what: &str, run: impl Fn(&Device) -> Trajectory + Copy) {
    for (name, open) in [("cpu reference", Device::cpu_reference as fn() -> Device), ("cpu", Device::cpu)] {
        let s = same_with_and_without_replay(&format!("{what} ({name})"), open, run);
        assert_eq!((s.plans_captured, s.launches_replayed), (0, 0), "{what}: the CPU backend records nothing");
        assert!(!open().replay(), "{what}: replay is off on the CPU backend");
    }
    let Some(gpu) = wgrad::gpu_core::testing::fresh_gpu_or_skip(what) else { return };
    let textures = [gpu.texture_operands(), false];
    for textures in if textures[0] { &textures[..] } else { &textures[1..] } {
        let open = || {
            let d = Device::gpu().expect("the test GPU opens again");
            d.set_texture_operands(*textures);
            d
        };
        let s = same_with_and_without_replay(&format!("{what} (operand textures {textures})"), open, run);
        assert!(s.batches_replayed > 0 && s.launches_replayed > 0, "{what}: nothing was replayed ({s:?})");
        assert!(s.batches_replayed >= STEPS as u64 / 2, "{what}: most steps replay whole ({s:?})");
    }
}

#[test]
fn resnet_with_batch_norm_and_a_changing_learning_rate_replays_bit_for_bit() {
    check("resnet", resnet);
}

#[test]
fn gpt_with_dropout_replays_bit_for_bit() {
    check("gpt", |d| gpt(d, false));
}

#[test]
fn lstm_replays_bit_for_bit() {
    check("lstm", lstm);
}

#[test]
fn amp_with_a_grad_scaler_skipping_steps_replays_bit_for_bit() {
    check("amp gpt", |d| {
        let t = gpt(d, true);
        assert!(
            t.skipped > 0 && t.skipped < STEPS - 5,
            "the scaler skips a few steps, then trains ({} skipped)",
            t.skipped
        );
        t
    });
}

/// A step with new shapes falls back (recorded afresh, counted, and
/// explained by `Device::replay_fallback`) and is then replayed as a plan
/// of its own; with replay off nothing is replayed.
#[test]
fn a_step_with_new_shapes_falls_back_and_says_why() {
    let Some(_) = wgrad::gpu_core::testing::fresh_gpu_or_skip("a_step_with_new_shapes_falls_back") else { return };
    let dev = Device::gpu().unwrap();
    dev.set_texture_operands(false);
    assert!(dev.replay(), "replay is on by default (WGRAD_REPLAY unset)");
    let model = wgrad::models::mlp(&[8, 16, 4], &mut Init::new(&dev, 1));
    let mut opt = Sgd::new(model.parameters(), 0.1);
    let mut step = |rows: usize| {
        let x = Tensor::randn(&[rows, 8], rows as u64, &dev);
        let loss = model.forward(&x).square().mean_all();
        opt.zero_grad();
        loss.backward();
        opt.step();
        loss.item()
    };
    for _ in 0..6 {
        step(5);
    }
    let before = dev.stats();
    step(5);
    let d = dev.stats() - before;
    assert_eq!((d.batches_replayed, d.replay_fallbacks), (1, 0), "a repeated step replays whole ({d:?})");
    assert!(d.launches_replayed > 0);
    let before = dev.stats();
    step(7);
    let d = dev.stats() - before;
    assert_eq!((d.batches_replayed, d.replay_fallbacks, d.plans_captured), (0, 1, 1), "new shapes fall back ({d:?})");
    let why = dev.replay_fallback().expect("a reason");
    assert!(why.starts_with("position ") && (why.contains("launch `") || why.contains("elementwise run")), "{why}");
    for _ in 0..4 {
        step(7);
    }
    let before = dev.stats();
    step(7);
    step(5);
    let d = dev.stats() - before;
    assert_eq!(d.batches_replayed, 2, "both shapes replay as plans of their own ({d:?})");
    dev.set_replay(false).unwrap();
    let before = dev.stats();
    step(5);
    let d = dev.stats() - before;
    assert_eq!((d.batches_replayed, d.launches_replayed, d.plans_captured), (0, 0, 0), "replay off ({d:?})");
}

//! Compiled steps (`wgrad_autograd::CompiledStep`, gpu-core's step graphs)
//! change no bit of a training trajectory: 20 steps, a new batch every
//! step, run eagerly and through a compiled step (forward, loss, backward
//! and the optimizer's updates recorded once, then replayed without
//! running their code; the optimizer's step counts and scalars prepared on
//! the host before each) give the same losses and parameters, bit for
//! bit: ResNet with batch norm and SGD whose learning rate changes every
//! step, an LSTM with Adam (whose bias corrections change every step), a
//! GPT with dropout (a new mask every step, drawn from counters the compiled
//! step writes before each replay). On a GPU the compiled runs really
//! replay (most steps); a step whose dropout generators the compiled step
//! was not given is never replayed and says why. On the CPU backends the
//! compiled step runs the step every time (nothing is recorded there).

use std::sync::Mutex;

use wgrad::models::{Gpt, ResNet, RnnLm, Shortcut};
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Adam, Optimizer, Sgd, SgdOptions};
use wgrad::nn::RecurrentKind;
use wgrad::prelude::*;

const STEPS: usize = 20;

/// What a run did, bit for bit, and how many steps the compiled step replayed.
#[derive(Debug, PartialEq)]
struct Trajectory {
    losses: Vec<u32>,
    params: Vec<Vec<u32>>,
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs `STEPS` steps: `batch(i)` makes step `i`'s inputs, `loss(inputs)`
/// its loss, then the optimizer steps (all but its host half recorded and
/// replayed when `compiled`). Returns the trajectory and the compiled step's replays
/// and last reason for not replaying.
fn train(
    params: Vec<Tensor>,
    streams: &[&Mutex<Generator>],
    opt: &mut dyn Optimizer,
    compiled: bool,
    mut batch: impl FnMut(usize) -> Vec<Tensor>,
    loss: impl Fn(&[Tensor]) -> Tensor,
    mut schedule: impl FnMut(&mut dyn Optimizer, usize),
) -> (Trajectory, u64, Option<String>) {
    let mut step = CompiledStep::new(params.clone());
    let mut losses = Vec::new();
    for i in 0..STEPS {
        schedule(opt, i);
        let inputs = batch(i);
        opt.zero_grad();
        let l = if compiled {
            // The optimizer's host half (step counts, this step's scalars
            // written to the device) runs here; its updates are recorded
            // and replayed with the rest.
            opt.prepare_step();
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let out = step
                .run_with_streams(0, &refs, streams, |x| {
                    let l = loss(x);
                    l.backward();
                    opt.apply_step();
                    vec![l]
                })
                .expect("the compiled step runs");
            out[0].clone()
        } else {
            let l = loss(&inputs);
            l.backward();
            opt.step();
            l
        };
        losses.push(l.item().to_bits());
    }
    let t = Trajectory { losses, params: params.iter().map(|p| bits(&p.to_vec())).collect() };
    (t, step.replays(), step.why_not().map(str::to_string))
}

/// ResNet-8 (batch norm, option-A shortcut), SGD + momentum with a learning
/// rate that changes every step, a new batch every step.
fn resnet(dev: &Device, compiled: bool) -> (Trajectory, u64, Option<String>) {
    let model = ResNet::cifar(8, 10, Shortcut::ZeroPad, &mut Init::new(dev, 5));
    let opts = SgdOptions { momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
    let mut opt = Sgd::with_options(model.parameters(), 0.05, opts);
    let batch = |i: usize| {
        let labels: Vec<u32> = (0..4).map(|k| ((k * 3 + i) % 10) as u32).collect();
        vec![Tensor::randn(&[4, 3, 8, 8], 11 + i as u64, dev), Tensor::from_u32(&labels, &[4], dev)]
    };
    let loss = |x: &[Tensor]| CrossEntropyLoss::default().forward(&model.forward(&x[0]), &x[1]);
    let schedule = |o: &mut dyn Optimizer, i: usize| o.groups_mut()[0].lr = 0.05 / (1.0 + i as f32);
    train(model.parameters(), &[], &mut opt, compiled, batch, loss, schedule)
}

/// A 1-layer LSTM language model with Adam; each step a sequence that
/// repeats tokens (their embedding rows' gradients add in a fixed order).
fn lstm(dev: &Device, compiled: bool) -> (Trajectory, u64, Option<String>) {
    let model =
        RnnLm::builder(12).embed(8).hidden(16).layers(1).kind(RecurrentKind::Lstm).build(&mut Init::new(dev, 3));
    let mut opt = Adam::new(model.parameters(), 1e-2);
    let batch = |i: usize| {
        let tokens: Vec<u32> = (0..8).map(|k| ((k * 5 + 1 + i) % 4) as u32).collect();
        vec![Tensor::from_u32(&tokens[..7], &[1, 7], dev), Tensor::from_u32(&tokens[1..], &[7], dev)]
    };
    let loss = |x: &[Tensor]| {
        let (logits, _) = model.forward_with_state(&x[0], None);
        CrossEntropyLoss::default().forward(&logits.reshape(&[7, 12]), &x[1])
    };
    train(model.parameters(), &[], &mut opt, compiled, batch, loss, |_, _| {})
}

/// A 1-block GPT with dropout (a new mask every step) and Adam; the
/// compiled step is given the model's generators unless `hide_streams`.
fn gpt_run(dev: &Device, compiled: bool, hide_streams: bool) -> (Trajectory, u64, Option<String>) {
    let model = Gpt::builder(16, 8).layers(1).heads(2).width(16).dropout(0.1).build(&mut Init::new(dev, 9));
    let mut opt = Adam::new(model.parameters(), 3e-3);
    let batch = |i: usize| {
        // Four sequences over 5 tokens: repeats in every batch.
        let tokens: Vec<u32> = (0..36).map(|k| ((k * 7 + k / 5 + 3 + i) % 5) as u32).collect();
        let (x, y): (Vec<u32>, Vec<u32>) =
            (0..32).map(|k| (tokens[k / 8 * 9 + k % 8], tokens[k / 8 * 9 + k % 8 + 1])).unzip();
        vec![Tensor::from_u32(&x, &[4, 8], dev), Tensor::from_u32(&y, &[4, 8], dev)]
    };
    let loss = |x: &[Tensor]| model.loss(&x[0], &x[1]);
    let streams = if hide_streams { Vec::new() } else { wgrad::nn::random_streams(&model) };
    assert!(!streams.is_empty() || hide_streams, "the GPT has dropout generators");
    let out = train(model.parameters(), &streams, &mut opt, compiled, batch, loss, |_, _| {});
    // The generators stand where the eager run left them.
    let positions = wgrad::nn::random_streams(&model).iter().map(|g| g.lock().unwrap().offset as u32).collect();
    let mut out = out;
    out.0.params.push(positions);
    out
}

fn gpt(dev: &Device, compiled: bool) -> (Trajectory, u64, Option<String>) {
    gpt_run(dev, compiled, false)
}

fn gpt_without_streams(dev: &Device, compiled: bool) -> (Trajectory, u64, Option<String>) {
    gpt_run(dev, compiled, true)
}

type Run = fn(&Device, bool) -> (Trajectory, u64, Option<String>);

/// Checks `run` eager vs compiled on the CPU backends (no replay there) and
/// a GPU with and without operand textures; returns the GPU runs' replays
/// and reasons.
fn same_compiled_and_eager(what: &str, run: Run) -> Vec<(u64, Option<String>)> {
    for open in [Device::cpu_reference as fn() -> Device, Device::cpu] {
        let dev = open();
        let (eager, _, _) = run(&dev, false);
        let (compiled, replays, why) = run(&dev, true);
        assert!(compiled == eager, "{what} on {}: the compiled step changed the trajectory", dev.name());
        assert_eq!(replays, 0, "{what}: the CPU backend replays nothing");
        assert_eq!(why, None, "{what}: the CPU backend runs the step as it comes");
    }
    let Some(gpu) = wgrad::gpu_core::testing::fresh_gpu_or_skip(what) else { return Vec::new() };
    let textures = [gpu.texture_operands(), false];
    let mut out = Vec::new();
    for textures in if textures[0] { &textures[..] } else { &textures[1..] } {
        let open = || {
            let d = Device::gpu().expect("the test GPU opens again");
            d.set_texture_operands(*textures);
            d
        };
        let (eager, _, _) = run(&open(), false);
        let dev = open();
        let before = dev.stats();
        let (compiled, replays, why) = run(&dev, true);
        let s = dev.stats() - before;
        println!("{what} (operand textures {textures}): {replays} of {STEPS} steps replayed, {s:?}; why not: {why:?}");
        assert!(compiled == eager, "{what} (operand textures {textures}): the compiled step changed the trajectory");
        assert_eq!(s.graphs_replayed, replays, "{what}: the device counts the replays");
        out.push((replays, why));
    }
    out
}

#[test]
fn resnet_with_batch_norm_and_a_changing_learning_rate_compiles_bit_for_bit() {
    for (replays, why) in same_compiled_and_eager("resnet", resnet) {
        assert!(replays >= STEPS as u64 / 2, "most steps replay ({replays}; why not: {why:?})");
    }
}

#[test]
fn lstm_compiles_bit_for_bit() {
    for (replays, why) in same_compiled_and_eager("lstm", lstm) {
        assert!(replays >= STEPS as u64 / 2, "most steps replay ({replays}; why not: {why:?})");
    }
}

#[test]
fn gpt_with_dropout_compiles_bit_for_bit() {
    for (replays, why) in same_compiled_and_eager("gpt", gpt) {
        assert!(replays >= STEPS as u64 / 2, "most steps replay ({replays}; why not: {why:?})");
    }
}

#[test]
fn dropout_from_generators_the_step_was_not_given_is_never_replayed_and_says_why() {
    for (replays, why) in same_compiled_and_eager("gpt without streams", gpt_without_streams) {
        assert_eq!(replays, 0, "the masks' generators are unknown: never replayed");
        let why = why.expect("a reason");
        assert!(why.contains("generator it was not given"), "names the generator: {why}");
    }
}

#[test]
fn new_shapes_a_replaced_parameter_and_a_readback_are_handled() {
    let Some(_) = wgrad::gpu_core::testing::fresh_gpu_or_skip("compiled_step_invalidation") else { return };
    let dev = Device::gpu().unwrap();
    dev.set_texture_operands(false);
    let model = wgrad::models::mlp(&[8, 16, 4], &mut Init::new(&dev, 1));
    let mut compiled = CompiledStep::new(model.parameters());
    // A tensor the step reads without it being an input (a constant target
    // per shape here) is recorded as the buffer it is: the same tensor
    // every call is replayed, a new one every call is not (see below).
    let targets = [5, 7].map(|rows| Tensor::randn(&[rows, 4], 1000 + rows as u64, &dev));
    let run = |compiled: &mut CompiledStep, rows: usize, seed: u64| {
        let x = Tensor::randn(&[rows, 8], seed, &dev);
        let target = &targets[usize::from(rows == 7)];
        for p in model.parameters() {
            p.zero_grad();
        }
        let out = compiled
            .run(0, &[&x], |x| {
                let l = (model.forward(&x[0]) - target).square().mean_all();
                l.backward();
                vec![l]
            })
            .unwrap();
        let eager = {
            let l = (model.forward(&x) - target).square().mean_all();
            l.item()
        };
        assert_eq!(out[0].item().to_bits(), eager.to_bits(), "rows {rows}, seed {seed}: the step's loss");
    };
    for s in 0..6 {
        run(&mut compiled, 5, s);
    }
    assert!(compiled.is_captured() && compiled.replays() > 0, "a repeated step replays: {:?}", compiled.why_not());
    let replays = compiled.replays();
    run(&mut compiled, 7, 100);
    assert!(compiled.replays() == replays && !compiled.is_captured(), "new shapes record afresh");
    for s in 0..6 {
        run(&mut compiled, 7, 200 + s);
    }
    assert!(compiled.is_captured(), "the new shapes are captured in turn: {:?}", compiled.why_not());
    let replays = compiled.replays();
    run(&mut compiled, 5, 250);
    assert_eq!(compiled.replays(), replays + 1, "the first shapes' graph was kept: replayed at once");
    // Replace a parameter: its old buffer is freed, and the graph reads it.
    let p = &model.parameters()[0];
    p.assign(&p.detach().mul_scalar(1.0));
    let replays = compiled.replays();
    run(&mut compiled, 7, 300);
    assert_eq!(compiled.replays(), replays, "the stale graph was not replayed");
    assert!(compiled.why_not().is_some_and(|w| w.contains("freed")), "{:?}", compiled.why_not());

    // A new target made outside the step every call: the graph would read
    // the buffer it was recorded with, so it is never replayed (the
    // recordings read other buffers) or refused (that buffer freed); every
    // loss is right.
    let mut outside = CompiledStep::new(model.parameters());
    for seed in 0..8 {
        let (x, target) = (Tensor::randn(&[5, 8], seed, &dev), Tensor::randn(&[5, 4], 500 + seed, &dev));
        let out = outside
            .run(0, &[&x], |x| {
                let l = (model.forward(&x[0]) - &target).square().mean_all();
                vec![l]
            })
            .unwrap();
        let eager = (model.forward(&x) - &target).square().mean_all().item();
        assert_eq!(out[0].item().to_bits(), eager.to_bits(), "seed {seed}: a new outside target each step");
    }

    let mut reads = CompiledStep::new(model.parameters());
    let x = Tensor::randn(&[5, 8], 1, &dev);
    for _ in 0..3 {
        reads
            .run(0, &[&x], |x| {
                let l = model.forward(&x[0]).square().mean_all();
                let _ = l.item();
                vec![l]
            })
            .unwrap();
    }
    assert_eq!(reads.replays(), 0);
    assert!(reads.why_not().is_some_and(|w| w.contains("reads data back")), "{:?}", reads.why_not());
}

/// `Trainer::compiled` (inputs made outside the step, forward + backward +
/// Adam recorded once and replayed) trains bit for bit as `Trainer::new`
/// with the same two closures composed, an lr schedule stepping every
/// batch included; so does it with gradient clipping and with AMP, where
/// the optimizer runs after the graph (and the loss scale is part of its
/// key); on a GPU most steps replay.
#[test]
fn the_compiled_trainer_trains_as_the_eager_one() {
    use wgrad::nn::schedule::ExponentialLR;
    use wgrad::nn::train::{Every, StepOutput, Trainer};
    type Batch = (Vec<f32>, Vec<u32>);
    // (clip, amp) of each configuration.
    let run = |dev: &Device, compiled: bool, (clip, amp): (bool, bool)| {
        let mut model = wgrad::models::mlp(&[8, 16, 4], &mut Init::new(dev, 1));
        let mut opt = Adam::new(model.parameters(), 1e-2);
        let mut schedule = ExponentialLR::new(&mut opt, 0.9);
        // Five batches of 5 rows and a last one of 3 (its own graph, whose
        // samples must not be taken for the others').
        let data: Vec<Batch> = (0..6u64)
            .map(|i| {
                let rows = if i == 5 { 3 } else { 5 };
                let x = Tensor::randn(&[rows, 8], i, dev).to_vec();
                (x, (0..rows as u32).map(|k| (k + i as u32) % 4).collect())
            })
            .collect();
        let inputs = |(x, y): Batch| {
            let rows = y.len();
            vec![Tensor::from_vec(&x, &[rows, 8], dev), Tensor::from_u32(&y, &[rows], dev)]
        };
        let forward = |m: &Sequential, t: &[Tensor]| {
            let (logits, rows) = (m.forward(&t[0]), t[1].numel());
            StepOutput::new(CrossEntropyLoss::default().forward(&logits, &t[1]), rows).with_accuracy(&logits, &t[1])
        };
        let before = dev.stats();
        let trainer = if compiled {
            Trainer::compiled(&mut model, &mut opt, inputs, forward)
        } else {
            Trainer::new(&mut model, &mut opt, move |m: &Sequential, b: Batch| forward(m, &inputs(b)))
        };
        let trainer = if clip { trainer.clip_grad_norm(0.5) } else { trainer };
        let fit = trainer
            .epochs(3)
            .schedule(&mut schedule, Every::Step)
            .amp(amp)
            .quiet()
            .fit(6, |_epoch, _skip| data.clone().into_iter().map(Ok::<_, std::io::Error>))
            .unwrap();
        let replays = (dev.stats() - before).graphs_replayed;
        let records: Vec<(u64, Option<u64>)> =
            fit.history.records.iter().map(|r| (r.train_loss.to_bits(), r.train_acc.map(f64::to_bits))).collect();
        let params: Vec<Vec<u32>> = model.parameters().iter().map(|p| bits(&p.to_vec())).collect();
        (records, params, replays)
    };
    let mut devices = vec![Device::cpu()];
    if let Some(gpu) = wgrad::gpu_core::testing::fresh_gpu_or_skip("the_compiled_trainer") {
        devices.push(gpu);
    }
    for dev in devices {
        for options in [(false, false), (true, false), (false, true)] {
            let (eager, eager_params, _) = run(&dev, false, options);
            let (compiled, compiled_params, replays) = run(&dev, true, options);
            assert!(
                compiled == eager && compiled_params == eager_params,
                "{} (clip, amp) {options:?}: the compiled Trainer trains the same bits",
                dev.name()
            );
            if dev.is_gpu() {
                assert!(replays >= 10, "{} {options:?}: most of the 18 steps replay ({replays})", dev.name());
            } else {
                assert_eq!(replays, 0);
            }
        }
    }
}

/// AMP with the scale on the device: an MLP with Adam and a GradScaler
/// whose steps 3 and 11 overflow (huge inputs), 20 steps eagerly with
/// `step` (the verdict read back, the optimizer not called) and through a
/// compiled step that records the scaler's unscaling, the optimizer's
/// updates gated by the overflow flag and the scale's update with the
/// rest: the same losses, parameters, optimizer step counts and scale,
/// bit for bit; on a GPU most steps replay, the skipped ones among them.
#[test]
fn amp_with_skipped_steps_compiles_bit_for_bit() {
    use wgrad::nn::amp::{GradScaler, GradScalerOptions};
    let run = |dev: &Device, compiled: bool| {
        let model = wgrad::models::mlp(&[6, 8, 3], &mut Init::new(dev, 4));
        let mut opt = Adam::new(model.parameters(), 1e-2);
        let mut scaler = GradScaler::with_options(GradScalerOptions::default().growth_interval(4));
        assert!(scaler.scale_on_device());
        let mut step = CompiledStep::new(model.parameters());
        let loss = |t: &[Tensor]| CrossEntropyLoss::default().forward(&model.forward(&t[0]), &t[1]);
        let mut losses = Vec::new();
        for i in 0..STEPS {
            let big = if i == 3 || i == 11 { 1e36 } else { 1.0 };
            let x = Tensor::randn(&[4, 6], 100 + i as u64, dev).mul_scalar(big);
            let labels: Vec<u32> = (0..4).map(|k| ((k + i) % 3) as u32).collect();
            let y = Tensor::from_u32(&labels, &[4], dev);
            opt.zero_grad();
            let l = if compiled {
                opt.prepare_step();
                let key = scaler.replay_key();
                let out = step
                    .run(key, &[&x, &y], |t| {
                        let l = loss(t);
                        scaler.scale(&l).backward();
                        scaler.apply_step_async(&mut opt);
                        scaler.update();
                        vec![l]
                    })
                    .expect("the compiled step runs");
                out[0].clone()
            } else {
                let l = loss(&[x, y]);
                scaler.scale(&l).backward();
                scaler.step(&mut opt);
                scaler.update();
                l
            };
            losses.push(l.item().to_bits());
        }
        let sd = opt.state_dict();
        let counts: Vec<String> =
            (0..model.parameters().len()).map(|i| sd.meta[&format!("state.{i}.step")].clone()).collect();
        let params: Vec<Vec<u32>> = model.parameters().iter().map(|p| bits(&p.to_vec())).collect();
        ((losses, params, counts, scaler.get_scale().to_bits()), step.replays())
    };
    let mut devices = vec![Device::cpu_reference(), Device::cpu()];
    devices.extend(wgrad::gpu_core::testing::fresh_gpu_or_skip("amp_with_skipped_steps_compiles_bit_for_bit"));
    for dev in devices {
        let (eager, _) = run(&dev, false);
        assert_eq!(eager.2[0], (STEPS - 2).to_string(), "two steps skipped");
        let (compiled, replays) = run(&dev, true);
        assert!(compiled == eager, "{}: the compiled AMP steps changed the trajectory", dev.name());
        if dev.is_gpu() {
            assert!(replays >= STEPS as u64 / 2, "{}: most steps replay ({replays})", dev.name());
        }
    }
}

//! ResNet-20 training step (forward, cross-entropy, backward, SGD momentum)
//! on 3x32x32 images: ms/step and images/s on the adapter `WGRAD_DEVICE` picks
//! and on the CPU backend, plus the time to the first step (pipeline
//! compilation included), the dispatches one step records, the bytes it
//! copies into operand textures (CPU adapters) and the peak device memory
//! of a step. `benches/resnet_pytorch.py` times the same step in
//! PyTorch CPU in the same run (when `python3` with torch is available), and
//! the ratios are printed next to it. On a hardware GPU each step's loss is
//! read a step late (`common/late.rs`): the host records step N + 1 while
//! the GPU runs step N (the AMP rows still wait for `GradScaler`'s overflow
//! flag in every step).
//!
//! `cargo bench --bench resnet [-- BATCH...] [--profile] [--amp]` (default
//! batches 32 and 128); `--profile` prints the step profiler's table for one
//! step of each batch on the adapter and writes
//! `target/resnet-b<BATCH>-profile.json`; `--amp` adds a row per batch for
//! the mixed-precision step (autocast forward, GradScaler), and PyTorch's
//! autocast step next to it. `compiled ms` is the same step through a
//! `CompiledStep` (replayed as a step graph). A second table gives the host's cost per
//! launch of the f32 step recorded afresh (`Device::set_replay(false)`),
//! replayed, and compiled (`CompiledStep`), measured in the same run.

use std::time::Instant;

mod common;
#[path = "common/host.rs"]
mod host;
#[path = "common/late.rs"]
mod late;
#[path = "common/profiling.rs"]
mod profiling;

use wgrad::models::{ResNet, Shortcut};
use wgrad::nn::amp::{GradScaler, GradScalerOptions};
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Optimizer, Sgd, SgdOptions};
use wgrad::prelude::*;

/// What one configuration measured.
struct Measured {
    ms: f64,
    first_s: f64,
    dispatches: u64,
    texture_mb: f64,
    peak_mb: f64,
    host: host::HostCost,
}

/// One configuration's timed steps; `compiled`: forward, backward and the
/// optimizer's updates (behind the scaler's device-side check with AMP)
/// through a `CompiledStep`, replayed as a step graph.
fn bench(dev: &Device, batch: usize, steps: usize, profile: bool, amp: bool, compiled: bool) -> Measured {
    let t0 = Instant::now();
    let model = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut Init::new(dev, 0));
    let opts = SgdOptions { momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
    let mut opt = Sgd::with_options(model.parameters(), 0.1, opts);
    let x = Tensor::randn(&[batch, 3, 32, 32], 1, dev);
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let y = Tensor::from_u32(&labels, &[batch], dev);
    let mut scaler = GradScaler::with_options(GradScalerOptions::default().enabled(amp));
    let mut graph = CompiledStep::new(model.parameters());
    let mut step = |opt: &mut Sgd| {
        let forward = |x: &Tensor, y: &Tensor| {
            let _autocast = AutocastGuard::new(amp);
            CrossEntropyLoss::default().forward(&model.forward(x), y)
        };
        opt.zero_grad();
        if compiled {
            // The optimizer's updates (behind the scaler's device-side
            // check under AMP) are part of the graph; its host half (step
            // counts, this step's scalars) runs before the replay.
            opt.prepare_step();
            let run = graph.run(scaler.replay_key(), &[&x, &y], |i| {
                let loss = forward(&i[0], &i[1]);
                scaler.scale(&loss).backward();
                scaler.apply_step_async(opt);
                scaler.update();
                vec![loss]
            });
            return run.expect("the compiled step runs").remove(0);
        }
        let loss = forward(&x, &y);
        scaler.scale(&loss).backward();
        // No readback: an overflow skips the update on the device.
        scaler.step_async(opt);
        scaler.update();
        loss
    };
    step(&mut opt).item();
    let first = t0.elapsed().as_secs_f64();
    // More untimed steps: the pool's order settles, replay has its plans, a
    // compiled step has its graph.
    for _ in 0..if compiled { 6 } else { 2 } {
        step(&mut opt).item();
    }
    if profile {
        profiling::profile_step(dev, &format!("resnet-b{batch}"), || step(&mut opt).item());
    }
    dev.reset_peak();
    let before = dev.stats();
    let t = Instant::now();
    // Each loss is read a step late on GPUs (late.rs), the last one inside the clock.
    let (mut losses, mut last) = (late::LateLoss::new(dev), None);
    for _ in 0..steps {
        last = losses.push(&step(&mut opt));
    }
    assert!(losses.finish(last).is_some_and(f32::is_finite), "loss is not finite");
    let wall = t.elapsed().as_secs_f64();
    let ms = wall * 1e3 / steps as f64;
    let after = dev.stats();
    if compiled {
        println!(
            "resnet-20 b{batch} compiled: {} of {} steps replayed (why not: {:?})",
            after.graphs_replayed - before.graphs_replayed,
            steps,
            graph.why_not()
        );
    }
    Measured {
        host: host::per_launch(&(after - before), wall),
        ms,
        first_s: first,
        dispatches: (after.dispatches - before.dispatches) / steps as u64,
        texture_mb: (after.texture_bytes - before.texture_bytes) as f64 / 1e6 / steps as f64,
        peak_mb: after.bytes_peak as f64 / 1e6,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = profiling::requested();
    let batches: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let batches = if batches.is_empty() { vec![32, 128] } else { batches };
    let amp = args.iter().any(|a| a == "--amp");
    let modes: &[bool] = if amp { &[false, true] } else { &[false] };
    let gpu = Device::from_env().expect("open WGRAD_DEVICE");
    let cpu = Device::cpu();
    let mut rows: Vec<(usize, bool, [Measured; 3])> = Vec::new();
    for &b in &batches {
        for &m in modes {
            let eager = bench(&gpu, b, 5, profile, m, false);
            let compiled = bench(&gpu, b, 5, false, m, true);
            rows.push((b, m, [eager, compiled, bench(&cpu, b, 3, false, m, false)]));
        }
    }
    let mut torch_args: Vec<String> = batches.iter().map(|b| b.to_string()).collect();
    if amp {
        torch_args.push("--amp".into());
    }
    let torch = common::pytorch("resnet_pytorch.py", &torch_args);
    if let Err(why) = &torch {
        println!("pytorch: not measured ({why})");
    }
    println!("device: {}", gpu.name());
    println!(
        "{:<6} {:<5} {:>11} {:>11} {:>11} {:>11} {:>13} {:>13} {:>11} {:>10} {:>11} {:>11} {:>10} {:>10} {:>10} {:>10}",
        "batch",
        "mode",
        "gpu ms",
        "compiled ms",
        "first s",
        "dispatches",
        "host us/l rec",
        "host us/l all",
        "texture MB",
        "peak MB",
        "cpu ms",
        "pytorch ms",
        "gpu/torch",
        "comp/torch",
        "cpu/torch",
        "gpu img/s"
    );
    let replay: Vec<host::ReplayRow> = batches
        .iter()
        .map(|&b| {
            let (eager, replayed) = host::eager_then_replayed(&gpu, || bench(&gpu, b, 5, false, false, false).host);
            // The f32 row's compiled run, measured above.
            let compiled = rows.iter().find(|r| r.0 == b && !r.1).map(|r| r.2[1].host);
            host::ReplayRow { name: format!("resnet-20 b{b}"), eager, replayed, compiled }
        })
        .collect();
    for (b, m, [g, k, c]) in rows {
        let mode = if m { "amp" } else { "f32" };
        let key = if m { format!("b{b}-amp") } else { format!("b{b}") };
        let theirs = common::lookup(&torch, &key);
        println!(
            "{b:<6} {mode:<5} {:>11.1} {:>11.1} {:>11.2} {:>11} {:>13.1} {:>13.1} {:>11.1} {:>10.1} {:>11.1} {:>11} {:>10} \
             {:>10} {:>10} {:>10.1}",
            g.ms,
            k.ms,
            g.first_s,
            g.dispatches,
            g.host.record_us,
            g.host.busy_us,
            g.texture_mb,
            g.peak_mb,
            c.ms,
            common::show(theirs),
            common::ratio(g.ms, theirs),
            common::ratio(k.ms, theirs),
            common::ratio(c.ms, theirs),
            b as f64 / g.ms * 1e3
        );
    }
    println!();
    host::print_replay_table(&replay);
}

//! Sequence-model training steps, next to PyTorch CPU measured in the same run:
//!
//! - `lstm`: one LSTM layer, input 128, hidden 256, seq 64, batch 32;
//!   forward + backward + Adam step.
//! - `transformer`: a GPT of 2 pre-LN blocks, d_model 256, 4 heads, FFN 1024,
//!   seq 128, batch 16, vocab 256; forward + backward + AdamW; also tokens/s.
//! - `gpt` (only when named; minutes on a CPU): a GPT of 12 blocks, d_model
//!   768, 12 heads, FFN 3072, context 256, batch 8, vocab 256 (GPT-2 small's
//!   body with a byte vocabulary).
//!
//! `--amp` adds a `NAME-amp` row per bench: the forward under autocast (f16
//! products, on matrix units where the adapter offers them), the loss
//! scaled by a `GradScaler`; PyTorch's autocast step beside it.
//!
//! Times the adapter `WGRAD_DEVICE` picks; then runs `benches/sequence_pytorch.py`
//! (same shapes) when `python3` with torch is available, and prints the ratio.
//!
//! On a hardware GPU each step's loss is read a step late
//! (`common/late.rs`), so the host records step N + 1 while the GPU runs
//! step N; the last loss is read inside the clock.
//!
//! A last table gives the host's cost per launch of each f32 bench
//! recorded afresh (`Device::set_replay(false)`) and replayed, in the same run.
//!
//! `cargo bench --bench sequence [-- lstm|transformer|gpt] [--amp] [--steps N] [--profile]`

use std::time::Instant;

mod common;
#[path = "common/host.rs"]
mod host;
#[path = "common/late.rs"]
mod late;
#[path = "common/profiling.rs"]
mod profiling;

use wgrad::models::Gpt;
use wgrad::nn::amp::{GradScaler, GradScalerOptions};
use wgrad::nn::optim::{Adam, AdamW, Optimizer};
use wgrad::prelude::*;

/// What to run: timed steps, and whether to profile one more.
#[derive(Clone, Copy)]
struct Run<'a> {
    dev: &'a Device,
    steps: usize,
    profile: bool,
    /// Autocast forward and a `GradScaler` (the `-amp` rows).
    amp: bool,
    /// Forward and backward through a `CompiledStep` (the host-cost table's last columns).
    compiled: bool,
}

/// One bench's figures: mean step ms, the first step's seconds, and per
/// step the kernel launches and the bytes copied into operand textures
/// (host-independent counters; textures on CPU adapters only).
struct Measured {
    ms: f64,
    first_s: f64,
    dispatches: u64,
    texture_mb: f64,
    host: host::HostCost,
}

/// Times `step` (which returns its loss) over `steps` runs after three
/// warm-up steps, each loss read a step late on GPUs (`late.rs`), the last one inside the
/// clock. With `--profile`, one more step runs under the step profiler,
/// whose table is printed and whose trace goes to `target/<name>-profile.json`.
fn timed(run: Run, name: &str, mut step: impl FnMut() -> Tensor) -> Measured {
    let steps = run.steps;
    let t0 = Instant::now();
    let first = step().item();
    assert!(first.is_finite(), "loss is not finite");
    let first_s = t0.elapsed().as_secs_f64();
    // More untimed steps: the pool's order settles, replay has its plans, a
    // compiled step has its graph.
    for _ in 0..if run.compiled { 6 } else { 2 } {
        step().item();
    }
    let before = run.dev.stats();
    let t = Instant::now();
    let (mut losses, mut last) = (late::LateLoss::new(run.dev), None);
    for _ in 0..steps {
        last = losses.push(&step());
    }
    let last = losses.finish(last);
    let wall = t.elapsed().as_secs_f64();
    assert!(last.is_some_and(f32::is_finite), "loss is not finite");
    let ms = wall * 1e3 / steps as f64;
    let done = run.dev.stats() - before;
    if run.compiled {
        println!("{name} compiled: {} of {steps} steps replayed", done.graphs_replayed);
    }
    if run.profile {
        profiling::profile_step(run.dev, name, || step().item());
    }
    Measured {
        ms,
        first_s,
        dispatches: done.dispatches / steps as u64,
        texture_mb: done.texture_bytes as f64 / 1e6 / steps as f64,
        host: host::per_launch(&done, wall),
    }
}

/// One training step of `opt` on the loss `forward` computes from
/// `inputs`: under autocast with a scaler for `-amp` runs, plain otherwise;
/// forward and backward through `graph` for compiled runs.
fn train_step(
    run: Run,
    (scaler, opt, graph): (&mut GradScaler, &mut dyn Optimizer, &mut CompiledStep),
    inputs: &[&Tensor],
    forward: impl Fn(&[Tensor]) -> Tensor,
) -> Tensor {
    let loss = |x: &[Tensor]| {
        let _autocast = AutocastGuard::new(run.amp);
        forward(x)
    };
    opt.zero_grad();
    if run.compiled {
        // The optimizer's updates (behind the scaler's device-side check
        // under AMP) are part of the graph; its host half (step counts,
        // this step's scalars) runs before the replay.
        opt.prepare_step();
        let out = graph.run(scaler.replay_key(), inputs, |x| {
            let l = loss(x);
            scaler.scale(&l).backward();
            scaler.apply_step_async(opt);
            scaler.update();
            vec![l]
        });
        return out.expect("the compiled step runs").remove(0);
    }
    let x: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
    let l = loss(&x);
    scaler.scale(&l).backward();
    // No readback: an overflow skips the update on the device.
    scaler.step_async(opt);
    scaler.update();
    l
}

fn scaler(run: Run) -> GradScaler {
    GradScaler::with_options(GradScalerOptions::default().enabled(run.amp))
}

fn lstm(run: Run, name: &str) -> Measured {
    let dev = run.dev;
    let mut init = Init::new(dev, 0);
    let m = LSTM::builder(128, 256).build(&mut init);
    let x = Tensor::randn(&[64, 32, 128], 1, dev);
    let mut opt = Adam::new(m.parameters(), 1e-3);
    let (mut scaler, mut graph) = (scaler(run), CompiledStep::new(m.parameters()));
    timed(run, name, || {
        train_step(run, (&mut scaler, &mut opt, &mut graph), &[&x], |x| m.forward(&x[0]).square().mean_all())
    })
}

/// A GPT of `layers` blocks of `width` (64-wide heads, FFN 4 x width, vocab
/// 256) on `batch` sequences of `context` tokens.
fn gpt(run: Run, name: &str, (layers, width, context, batch): (usize, usize, usize, usize)) -> Measured {
    let dev = run.dev;
    let mut init = Init::new(dev, 0);
    let model = Gpt::builder(256, context).layers(layers).heads(width / 64).width(width).build(&mut init);
    let n = batch * context;
    let ids: Vec<u32> = (0..n).map(|i| (i * 7919 % 256) as u32).collect();
    let tgt: Vec<u32> = (0..n).map(|i| (i * 104_729 % 256) as u32).collect();
    let (x, y) = (Tensor::from_u32(&ids, &[batch, context], dev), Tensor::from_u32(&tgt, &[batch, context], dev));
    let mut opt = AdamW::new(model.parameters(), 1e-3);
    let (mut scaler, mut graph) = (scaler(run), CompiledStep::new(model.parameters()));
    timed(run, name, || train_step(run, (&mut scaler, &mut opt, &mut graph), &[&x, &y], |x| model.loss(&x[0], &x[1])))
}

/// The tokens one step of bench `name` sees.
fn tokens(name: &str) -> f64 {
    match name.trim_end_matches("-amp") {
        "gpt" => 8.0 * 256.0,
        // LSTM 64 x 32, Transformer 128 x 16.
        _ => 2048.0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let profile = profiling::requested();
    let steps = args.iter().position(|a| a == "--steps").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(5);
    let amp = args.iter().any(|a| a == "--amp");
    let mut names: Vec<&str> =
        args.iter().map(String::as_str).filter(|a| matches!(*a, "lstm" | "transformer" | "gpt")).collect();
    if names.is_empty() {
        names = vec!["lstm", "transformer"];
    }
    let dev = Device::from_env().expect("open WGRAD_DEVICE");
    println!("device: {}, matrix units: {:?}", dev.name(), dev.info().matrix_units);
    let bench = |n: &str, name: &str, run: Run| match n {
        "lstm" => lstm(run, name),
        "transformer" => gpt(run, name, (2, 256, 128, 16)),
        _ => gpt(run, name, (12, 768, 256, 8)),
    };
    let mut ours: Vec<(String, Measured, Measured)> = Vec::new();
    for &n in &names {
        for amp in if amp { vec![false, true] } else { vec![false] } {
            let name = if amp { format!("{n}-amp") } else { n.to_string() };
            let run = Run { dev: &dev, steps, profile, amp, compiled: false };
            let eager = bench(n, &name, run);
            let compiled = bench(n, &name, Run { compiled: true, profile: false, ..run });
            ours.push((name, eager, compiled));
        }
    }
    let replay: Vec<host::ReplayRow> = names
        .iter()
        .map(|&n| {
            let run = Run { dev: &dev, steps, profile: false, amp: false, compiled: false };
            let (eager, replayed) = host::eager_then_replayed(&dev, || bench(n, n, run).host);
            // The f32 row's compiled run, measured above.
            let compiled = ours.iter().find(|r| r.0 == n).map(|r| r.2.host);
            host::ReplayRow { name: n.to_string(), eager, replayed, compiled }
        })
        .collect();
    let mut py_args: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    py_args.extend(["--steps".to_string(), steps.to_string()]);
    if amp {
        py_args.push("--amp".into());
    }
    let torch = common::pytorch("sequence_pytorch.py", &py_args);
    if let Err(why) = &torch {
        println!("pytorch: not measured ({why})");
    }
    println!(
        "{:<12} {:>12} {:>12} {:>14} {:>14} {:>12} {:>12} {:>16} {:>11} {:>14} {:>14} {:>14}",
        "bench",
        "wgrad ms",
        "compiled ms",
        "first step s",
        "pytorch ms",
        "ratio",
        "comp ratio",
        "wgrad tokens/s",
        "dispatches",
        "texture MB",
        "host us/l rec",
        "host us/l all"
    );
    for (n, m, k) in ours {
        let theirs = common::lookup(&torch, &n);
        let tokens = tokens(&n);
        let (ms, first) = (m.ms, m.first_s);
        let (t, r, kr) = (common::show(theirs), common::ratio(ms, theirs), common::ratio(k.ms, theirs));
        println!(
            "{n:<12} {ms:>12.1} {:>12.1} {first:>14.2} {t:>14} {r:>12} {kr:>12} {:>16.0} {:>11} {:>14.1} {:>14.1} {:>14.1}",
            k.ms,
            tokens / ms * 1e3,
            m.dispatches,
            m.texture_mb,
            m.host.record_us,
            m.host.busy_us
        );
    }
    println!();
    host::print_replay_table(&replay);
}

//! Dispatch overhead: the cost of recording and running tiny ops, where the
//! per-op CPU work (bind groups, passes, the graph) dominates.
//!
//! `cargo bench --bench dispatch` — measures, on the adapter `WGRAD_DEVICE`
//! picks and on the CPU backend in the same run:
//! - a chain of 1,000 elementwise ops on a [64] tensor, recorded then read once;
//! - one training step of a 3-layer MLP (forward, MSE, backward, SGD).
//!
//! `benches/dispatch_pytorch.py` times the same workloads in PyTorch eager
//! (CPU) in the same run, when `python3` with torch is available: its cost
//! per op is the mark for wgrad's host cost per launch.
//!
//! Each line also gives the host's cost per launch (see `common/host.rs`):
//! inside the recorder (recording + submitting), and all the host did
//! (wall time less the waits for the device).
//!
//! A last table gives the host's cost per launch of both workloads
//! recorded afresh (`Device::set_replay(false)`) and replayed, measured in
//! the same run.
//!
//! `--profile` runs one more MLP step on the adapter under the step profiler
//! (table printed, trace in `target/mlp-profile.json`).

use std::time::Instant;

mod common;
#[path = "common/host.rs"]
mod host;
#[path = "common/profiling.rs"]
mod profiling;

use wgrad::autograd::{no_grad, Device, Tensor};

/// Seconds per run, launches per run (the fuser merges the chain's ops),
/// and the host cost per launch over the timed runs.
fn chain(dev: &Device, len: usize) -> (f64, u64, host::HostCost) {
    let x = Tensor::arange(0.0, 64.0, 1.0, dev);
    let run = || {
        let mut y = x.clone();
        for _ in 0..len {
            y = &y + 1.0;
        }
        y.to_vec()[0]
    };
    for _ in 0..3 {
        run(); // warm-up: pipelines compiled, pool filled and settled, replay plans captured
    }
    let reps = 5;
    let before = dev.stats();
    let t = Instant::now();
    for _ in 0..reps {
        run();
    }
    let wall = t.elapsed().as_secs_f64();
    let done = dev.stats() - before;
    (wall / reps as f64, done.dispatches / reps, host::per_launch(&done, wall))
}

/// Seconds per step, launches per step, and the host cost per launch.
fn mlp_step_time(dev: &Device) -> (f64, u64, host::HostCost) {
    let p: Vec<Tensor> = [(64, 128), (128, 128), (128, 10)]
        .iter()
        .enumerate()
        .flat_map(|(i, &(a, b))| {
            [
                Tensor::rand(&[a, b], i as u64, dev).affine(0.2, -0.1).detach().requires_grad_(),
                Tensor::zeros(&[b], dev).requires_grad_(),
            ]
        })
        .collect();
    let x = Tensor::randn(&[32, 64], 7, dev);
    let y = Tensor::randn(&[32, 10], 8, dev);
    let step = || {
        let h = (x.matmul(&p[0]) + &p[1]).relu();
        let h = (h.matmul(&p[2]) + &p[3]).relu();
        let loss = (h.matmul(&p[4]) + &p[5] - &y).square().mean_all();
        loss.backward();
        no_grad(|| {
            for w in &p {
                w.assign(&(w - &(w.grad().unwrap() * 0.01)));
                w.zero_grad();
            }
        });
        loss.item()
    };
    for _ in 0..3 {
        step(); // warm-up, as for the chain
    }
    let before = dev.stats().dispatches;
    step();
    let per_step = dev.stats().dispatches - before;
    let reps = 20;
    let before = dev.stats();
    let t = Instant::now();
    for _ in 0..reps {
        step();
    }
    let wall = t.elapsed().as_secs_f64();
    let cost = host::per_launch(&(dev.stats() - before), wall);
    profiling::maybe_profile(dev, "mlp", step);
    (wall / reps as f64, per_step, cost)
}

/// The two host-cost lines under a workload.
fn print_host(cost: &host::HostCost) {
    println!("{:<34} {:>11.1} us", "  host per launch: recorder", cost.record_us);
    println!("{:<34} {:>11.1} us", "  host per launch: all but waits", cost.busy_us);
}

fn main() {
    let gpu = Device::from_env().expect("open WGRAD_DEVICE");
    let cpu = Device::cpu();
    let torch = common::pytorch("dispatch_pytorch.py", &[]);
    if let Err(why) = &torch {
        println!("pytorch: not measured ({why})");
    }
    println!("device: {}", gpu.name());
    let head = gpu.name().chars().take(14).collect::<String>();
    println!("{:<34} {:>14} {:>14} {:>14}", "workload", head, "cpu backend", "pytorch cpu");
    let ((g, n, gh), (c, _, _)) = (chain(&gpu, 1000), chain(&cpu, 1000));
    let theirs = common::lookup(&torch, "chain-op");
    let t = common::show(theirs);
    println!("{:<34} {:>11.1} us {:>11.1} us {t:>11} us", "1000-op chain, per op", g * 1e3, c * 1e3);
    println!("{:<34} {:>11}", "  launches per chain", n);
    print_host(&gh);
    println!(
        "{:<34} {:>14} {:>14}",
        "  per op / pytorch's",
        common::ratio(g * 1e3, theirs),
        common::ratio(c * 1e3, theirs)
    );
    let ((g, n, gh), (c, _, _)) = (mlp_step_time(&gpu), mlp_step_time(&cpu));
    let theirs = common::lookup(&torch, "mlp-step");
    let t = common::show(theirs.map(|ms| ms * 1e3 / n as f64));
    println!(
        "{:<34} {:>11.2} ms {:>11.2} ms {:>11} ms",
        format!("MLP step ({n} kernels)"),
        g * 1e3,
        c * 1e3,
        common::show(theirs)
    );
    println!(
        "{:<34} {:>11.1} us {:>11.1} us {t:>11} us",
        "MLP step, per kernel",
        g * 1e6 / n as f64,
        c * 1e6 / n as f64
    );
    print_host(&gh);
    println!(
        "{:<34} {:>14} {:>14}",
        "  step / pytorch's",
        common::ratio(g * 1e3, theirs),
        common::ratio(c * 1e3, theirs)
    );
    let replay = vec![
        {
            let (eager, replayed) = host::eager_then_replayed(&gpu, || chain(&gpu, 1000).2);
            host::ReplayRow { name: "1000-op chain".to_string(), eager, replayed, compiled: None }
        },
        {
            let (eager, replayed) = host::eager_then_replayed(&gpu, || mlp_step_time(&gpu).2);
            host::ReplayRow { name: "MLP step".to_string(), eager, replayed, compiled: None }
        },
    ];
    println!();
    host::print_replay_table(&replay);
}

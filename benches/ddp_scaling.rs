//! Data-parallel scaling on this machine's cores: ResNet-20 training steps
//! (forward, cross-entropy, backward, SGD momentum) on the CPU backend with
//! one thread per rank (`WGRAD_CPU_THREADS=1`), one rank against two
//! (`mpirun -np 2`) at the same per-rank batch. Prints images/s in all,
//! the speed-up (2.0 is perfect), and where the all-reduce time went: how
//! much of it backward hid (buckets reduced while it ran), with overlap on
//! and off. The speed-up compares wgrad with itself on the same host, so
//! it holds across hosts better than a time does;
//! `benches/ddp_scaling_pytorch.py` runs PyTorch's DistributedDataParallel
//! (gloo, one thread per rank pinned to a core) in the same run, for its
//! own speed-up and the `vs PyTorch` column (images/s over PyTorch's,
//! higher is better).
//!
//! `cargo bench --bench ddp_scaling --features mpi [-- BATCH STEPS]`
//! (default per-rank batch 32, 12 timed steps after 2 warm-up steps).
//! `WGRAD_DEVICE` picks the ranks' device (default `cpu`); on a machine
//! with one GPU, `WGRAD_DEVICE=auto` puts both ranks on it, which measures
//! the host-staged all-reduce's cost rather than scaling.
//! `WGRAD_DDP_BUCKET_MB` sets both bucket caps (the first and the others).

use std::process::Command;

mod common;
use std::time::Instant;

use wgrad::distributed::{DdpOptions, DistributedDataParallel, ProcessGroup};
use wgrad::models::{ResNet, Shortcut};
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Sgd, SgdOptions};
use wgrad::prelude::*;

const WARMUP: usize = 2;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (batch, steps) = (args.first().copied().unwrap_or(32), args.get(1).copied().unwrap_or(12));
    if let Ok(overlap) = std::env::var("WGRAD_DDP_BENCH_OVERLAP") {
        return rank(batch, steps, overlap == "1");
    }
    let device = std::env::var("WGRAD_DEVICE").unwrap_or_else(|_| "cpu".into());
    println!("ResNet-20, per-rank batch {batch}, {steps} timed steps, WGRAD_DEVICE={device}, 1 CPU thread per rank");
    println!("{}", host_line());
    let torch = common::pytorch("ddp_scaling_pytorch.py", &[batch.to_string(), steps.to_string()]);
    if let Err(why) = &torch {
        println!("(no PyTorch figures: {why})");
    }
    println!(
        "| ranks | overlap | images/s | speed-up | all-reduce ms/step | hidden behind backward | exposed ms/step | \
         PyTorch images/s | PyTorch speed-up | vs PyTorch |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut one = None;
    let torch_one = common::lookup(&torch, "ranks1");
    for (np, overlap) in [(1, true), (2, true), (2, false)] {
        let line = launch(np, overlap, batch, steps, &device);
        let f: Vec<f64> = line.split_whitespace().map(|v| v.parse().unwrap()).collect();
        let (rate, reduce_ms, hidden, exposed_ms) = (f[0], f[1], f[2], f[3]);
        let base = *one.get_or_insert(rate);
        let theirs = common::lookup(&torch, &format!("ranks{np}"));
        let their_speedup = theirs.zip(torch_one).map_or("-".into(), |(t, o)| format!("{:.2}x", t / o));
        println!(
            "| {np} | {} | {rate:.1} | {:.2}x | {reduce_ms:.1} | {:.0}% | {exposed_ms:.1} | {} | {their_speedup} | {} |",
            if overlap { "on" } else { "off" },
            rate / base,
            100.0 * hidden,
            common::show(theirs),
            common::ratio(rate, theirs)
        );
    }
}

/// Runs this bench as `np` ranks; rank 0's result line.
fn launch(np: usize, overlap: bool, batch: usize, steps: usize, device: &str) -> String {
    let out = Command::new("mpirun")
        .args(["-np", &np.to_string(), "--oversubscribe", "--allow-run-as-root", "--bind-to", "core"])
        .arg(std::env::current_exe().unwrap())
        .args([batch.to_string(), steps.to_string()])
        .env("WGRAD_DDP_BENCH_OVERLAP", if overlap { "1" } else { "0" })
        .env("WGRAD_DEVICE", device)
        .env("WGRAD_CPU_THREADS", "1")
        .output()
        .expect("mpirun (apt-get install openmpi-bin libopenmpi-dev)");
    assert!(out.status.success(), "mpirun failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("a RESULT line").to_string()
}

/// One rank: warm-up steps, then timed ones; rank 0 prints the result line.
fn rank(batch: usize, steps: usize, overlap: bool) {
    let group = ProcessGroup::from_env().expect("MPI");
    let dev = Device::from_env().unwrap();
    let model = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut Init::new(&dev, 0));
    let mut options = DdpOptions::default().overlap(overlap);
    if let Some(mb) = std::env::var("WGRAD_DDP_BUCKET_MB").ok().and_then(|v| v.parse::<f64>().ok()) {
        options = options.bucket_cap_mb(mb).first_bucket_mb(mb);
    }
    let mut ddp = DistributedDataParallel::new(&model, &group, options).unwrap();
    let mut opt = Sgd::with_options(model.parameters(), 0.01, SgdOptions { momentum: 0.9, ..Default::default() });
    let loss_fn = CrossEntropyLoss::default();
    let seed = 1 + group.rank() as u64;
    let x = Tensor::randn(&[batch, 3, 32, 32], seed, &dev);
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let y = Tensor::from_u32(&labels, &[batch], &dev);
    let mut step = |ddp: &mut DistributedDataParallel| {
        let loss = loss_fn.forward(&model.forward(&x), &y);
        ddp.backward(&loss).unwrap();
        opt.step();
        opt.zero_grad();
        loss.item()
    };
    for _ in 0..WARMUP {
        step(&mut ddp);
    }
    group.barrier().unwrap();
    let start = Instant::now();
    for _ in 0..steps {
        step(&mut ddp);
    }
    group.barrier().unwrap();
    let secs = start.elapsed().as_secs_f64();
    let s = ddp.stats();
    // The warm-up steps' share of the sums, taken out.
    let timed = steps as f64 / (steps + WARMUP) as f64;
    let reduce_ms = 1e3 * s.all_reduce.as_secs_f64() * timed / steps as f64;
    let exposed_ms = 1e3 * s.exposed.as_secs_f64() * timed / steps as f64;
    if group.is_main() {
        let rate = (batch * steps * group.world_size()) as f64 / secs;
        println!("RESULT {rate} {reduce_ms} {} {exposed_ms}", s.hidden_fraction());
    }
    group.finalize().unwrap();
}

/// The CPU model (`lscpu`), for the figure's context.
fn host_line() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("host: {model}, {cores} cores")
}

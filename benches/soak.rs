//! Soak (issue 15): every example's training step run for thousands of
//! steps, checking that device memory stays flat after warm-up:
//! `buffers_created` (driver allocations, i.e. buffer-pool misses),
//! `bytes_live` and `bytes_peak` are sampled every tenth of the run after a
//! warm-up of a tenth, and any growth after warm-up fails the run (exit 1);
//! so does the process's resident memory rising more than
//! `soak::RESIDENT_SLACK` (on a CPU adapter, the driver's own memory, which
//! the counters do not see).
//! The loops and their sizes are in `benches/common/soak.rs`.
//!
//! `cargo bench --bench soak -- [--steps N] [--model NAME]... [--backend gpu|cpu] [--minutes M]`
//! (default: 5,000 steps, every example, both backends; `gpu` opens the
//! adapter `WGRAD_DEVICE` names, or the best one). `--minutes M` stops each
//! soak after M minutes of wall time at the step reached (a slow device, a
//! busy host): the table then says how many steps ran, and a run stopped
//! before its warm-up ended judges nothing.

#[path = "../examples/common/amp.rs"]
mod amp;
#[path = "common/soak.rs"]
mod soak;

use std::io::Write;
use std::time::{Duration, Instant};

use wgrad::prelude::*;

/// Command-line options.
struct Options {
    steps: usize,
    minutes: Option<f64>,
    models: Vec<String>,
    backends: Vec<String>,
}

fn options() -> Options {
    let mut o = Options { steps: 5000, minutes: None, models: Vec::new(), backends: Vec::new() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| fail(&format!("{a} needs a value")));
        match a.as_str() {
            "--steps" => o.steps = value().parse().unwrap_or_else(|_| fail("--steps takes a number")),
            "--model" => o.models.push(value()),
            "--minutes" => o.minutes = Some(value().parse().unwrap_or_else(|_| fail("--minutes takes a number"))),
            "--backend" => o.backends.push(value()),
            "--bench" => {} // what `cargo bench` passes
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    if o.steps < 20 {
        fail("--steps must be at least 20 (a tenth of warm-up, then samples every tenth)");
    }
    for m in &o.models {
        if !soak::MODELS.contains(&m.as_str()) {
            fail(&format!("unknown --model {m:?} (one of {:?})", soak::MODELS));
        }
    }
    for b in &o.backends {
        if b != "gpu" && b != "cpu" {
            fail(&format!("unknown --backend {b:?} (gpu, cpu)"));
        }
    }
    if o.models.is_empty() {
        o.models = soak::MODELS.iter().map(|m| m.to_string()).collect();
    }
    if o.backends.is_empty() {
        o.backends = vec!["gpu".into(), "cpu".into()];
    }
    o
}

fn fail(why: &str) -> ! {
    eprintln!("soak: {why}");
    eprintln!("usage: cargo bench --bench soak -- [--steps N] [--model NAME]... [--backend gpu|cpu] [--minutes M]");
    std::process::exit(2)
}

fn main() {
    let o = options();
    let (warmup, every) = (o.steps / 10, o.steps / 10);
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for backend in &o.backends {
        for model in &o.models {
            let dev = match (backend.as_str(), std::env::var("WGRAD_DEVICE")) {
                ("cpu", _) => Device::cpu(),
                (_, Ok(name)) if name != "cpu" => Device::from_env().expect("opening WGRAD_DEVICE"),
                _ => Device::gpu().expect("opening a GPU adapter"),
            };
            let t0 = Instant::now();
            let deadline = o.minutes.map(|m| t0 + Duration::from_secs_f64(m * 60.0));
            let mut lp = soak::build(model, o.steps, &dev);
            println!("== {model} on {backend} ({}): {}", dev.name(), lp.describe());
            let result = soak::soak(&mut *lp, &dev, (o.steps, warmup, every), deadline, &mut |s| {
                println!(
                    "   step {:>6}  bytes_live {:>11}  bytes_peak {:>11}  buffers_created {:>7}  resident {:>7.1} MB  {:>8.1} s",
                    s.step,
                    s.stats.bytes_live,
                    s.stats.bytes_peak,
                    s.stats.buffers_created,
                    s.resident as f64 / 1e6,
                    t0.elapsed().as_secs_f64()
                );
                let _ = std::io::stdout().flush();
            });
            if result.steps_run < o.steps {
                println!("   stopped by --minutes after {} of {} steps", result.steps_run, o.steps);
            }
            let verdict = result.whole_process_verdict();
            if let Err(why) = &verdict {
                println!("   NOT FLAT: {why}");
                failed.push(format!("{model}/{backend}: {why}"));
            }
            rows.push((model.clone(), backend.clone(), result, verdict.is_ok()));
        }
    }
    println!(
        "\nsoak: {} steps, warm-up {warmup}, sampled every {every} ({} samples after warm-up)",
        o.steps,
        o.steps.div_ceil(every) - 1
    );
    println!(
        "{:<15} {:<4} {:>6} {:>12} {:>9} {:>25} {:>17} {:>10} {:>8} {:>12} {:>10} {:>8} {:>5}",
        "model",
        "dev",
        "steps",
        "warm live B",
        "warm bufs",
        "live B min..max",
        "bufs min..max",
        "live grow",
        "buf grow",
        "peak B",
        "rss grow",
        "steps/s",
        "flat"
    );
    for (model, backend, r, ok) in &rows {
        let (lmin, lmax) = r.live_range();
        let (bmin, bmax) = r.buffers_range();
        // A run stopped in warm-up has no samples to range over.
        let range = |lo, hi| if r.after.is_empty() { "-".to_string() } else { format!("{lo}..{hi}") };
        println!(
            "{model:<15} {backend:<4} {:>6} {:>12} {:>9} {:>25} {:>17} {:>10} {:>8} {:>12} {:>10} {:>8.2} {:>5}",
            r.steps_run,
            r.warm.stats.bytes_live,
            r.warm.stats.buffers_created,
            range(lmin, lmax),
            range(bmin, bmax),
            r.live_growth(),
            r.buffers_growth(),
            r.last().bytes_peak,
            format!("{:.1} MB", r.resident_growth() as f64 / 1e6),
            r.steps_per_s,
            if r.after.is_empty() {
                "-"
            } else if *ok {
                "yes"
            } else {
                "NO"
            }
        );
    }
    if !failed.is_empty() {
        eprintln!("soak: memory grew after warm-up:\n  {}", failed.join("\n  "));
        std::process::exit(1);
    }
}

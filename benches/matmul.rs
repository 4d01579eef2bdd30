//! f32 matmul throughput on the chosen adapter (`WGRAD_DEVICE`) and on the
//! CPU twin, measured in the same run: `cargo bench --bench matmul`.
//!
//! Each timing covers several back-to-back products plus a synchronize, so
//! recording, submission and the GPU's work are all inside the clock.

use std::time::{Duration, Instant};

use wgrad_gpu_core::ops::matmul::matmul;
use wgrad_gpu_core::testing::Rng;
use wgrad_gpu_core::{Buffer, Device, Layout};

/// (M, K, N) of each measured product.
const SIZES: &[(usize, usize, usize)] = &[(256, 256, 256), (1024, 1024, 1024), (2048, 2048, 2048)];
/// Spend about this long per size and device, so a slow adapter (lavapipe)
/// still finishes in seconds while a fast one gets enough repetitions.
const BUDGET: Duration = Duration::from_millis(1500);

/// GFLOP/s of `a @ b` on `dev`: one warm-up (pipeline compilation, pool
/// allocation), one timed product to size the run, then the best of two timed batches.
fn gflops(dev: &Device, (m, k, n): (usize, usize, usize), da: &[f32], db: &[f32]) -> f64 {
    let a = Buffer::from_f32(dev, da).unwrap();
    let b = Buffer::from_f32(dev, db).unwrap();
    let (la, lb) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[k, n]));
    let time = |iters: usize| {
        dev.synchronize().unwrap();
        let t = Instant::now();
        for _ in 0..iters {
            drop(matmul(&a, &la, &b, &lb).unwrap());
        }
        dev.synchronize().unwrap();
        t.elapsed()
    };
    time(1);
    let once = time(1);
    let iters = ((BUDGET.as_secs_f64() / once.as_secs_f64().max(1e-6)) as usize).clamp(1, 200);
    // Best of two batches: the machine may be busy with other work.
    let t = time(iters).min(time(iters));
    2.0 * (m * k * n) as f64 * iters as f64 / t.as_secs_f64() / 1e9
}

fn main() {
    let gpu = Device::from_env().expect("WGRAD_DEVICE names a device that cannot be opened");
    let cpu = Device::cpu();
    let info = gpu.info();
    println!("adapter: {} ({}, {})", info.name, info.backend, info.device_type);
    println!("{:>16} {:>12} {:>16} {:>8}", "M x K x N", "GPU GFLOP/s", "CPU twin GFLOP/s", "GPU/CPU");
    let mut rng = Rng::new(7);
    for &(m, k, n) in SIZES {
        let (da, db) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
        let g = gflops(&gpu, (m, k, n), &da, &db);
        let c = gflops(&cpu, (m, k, n), &da, &db);
        println!("{:>16} {g:>12.1} {c:>16.1} {:>8.2}", format!("{m}x{k}x{n}"), g / c);
    }
}

//! f32 matmul throughput on the chosen adapter (`WGRAD_DEVICE`), on the
//! CPU backend and in PyTorch (`benches/matmul_pytorch.py`, CPU), measured
//! in the same run: `cargo bench --bench matmul`.
//!
//! `WGRAD_MATMUL_KERNEL=tiled` (or `subgroup`, `coop`) measures that GPU
//! kernel instead of the one the adapter gets by default.
//!
//! `cargo bench --bench matmul -- --f16`: f16 operands with f32 sums, as
//! autocast runs them: the default kernel (matrix units where the adapter
//! offers them), the tiled kernel on the ordinary ALUs, and PyTorch's f16
//! product (`--dtype f16`; cuBLAS tensor cores with `WGRAD_TORCH_DEVICE=cuda`).
//!
//! `-- --f16 --units`: only the f16 kernel at 2048^3 and 4096^3, one line
//! each, for comparing its settings (`WGRAD_COOP_FRAGS`, `WGRAD_COOP_TILE`)
//! run by run.
//!
//! Each timing covers several back-to-back products plus a synchronize, so
//! recording, submission and the device's work are all inside the clock.

mod common;

use std::time::{Duration, Instant};

use wgrad_gpu_core::ops::matmul::{matmul_config, MatmulConfig, MatmulKernel, Operands};
use wgrad_gpu_core::testing::Rng;
use wgrad_gpu_core::{Buffer, Device, Layout};

/// (M, K, N) of each measured product.
const SIZES: &[(usize, usize, usize)] = &[(256, 256, 256), (1024, 1024, 1024), (2048, 2048, 2048)];
/// Spend about this long per timed batch, so a slow adapter (lavapipe)
/// still finishes in seconds while a fast one gets enough repetitions.
const BUDGET: Duration = Duration::from_millis(1000);

/// GFLOP/s of `a @ b` on `dev`: one warm-up (pipeline compilation, pool
/// allocation), one timed product to size the run, then the best of two
/// timed batches (the machine may be busy with other work).
fn gflops(dev: &Device, cfg: MatmulConfig, (m, k, n): (usize, usize, usize), da: &[f32], db: &[f32]) -> f64 {
    let upload = |v: &[f32]| match cfg.operands {
        Operands::F32 => Buffer::from_f32(dev, v).unwrap(),
        Operands::F16 => Buffer::from_f16(dev, &v.iter().map(|&x| half::f16::from_f32(x)).collect::<Vec<_>>()).unwrap(),
    };
    let (a, b) = (upload(da), upload(db));
    let (la, lb) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[k, n]));
    let time = |iters: usize| {
        dev.synchronize().unwrap();
        let t = Instant::now();
        for _ in 0..iters {
            drop(matmul_config(cfg, &a, &la, &b, &lb).unwrap());
        }
        dev.synchronize().unwrap();
        t.elapsed()
    };
    time(1);
    let once = time(1);
    let iters = ((BUDGET.as_secs_f64() / once.as_secs_f64().max(1e-6)) as usize).clamp(1, 500);
    let t = time(iters).min(time(iters));
    2.0 * (m * k * n) as f64 * iters as f64 / t.as_secs_f64() / 1e9
}

fn main() {
    let gpu = Device::from_env().expect("WGRAD_DEVICE names a device that cannot be opened");
    let kernel = match std::env::var("WGRAD_MATMUL_KERNEL").as_deref() {
        Ok("tiled") => MatmulKernel::Tiled,
        Ok("subgroup") => MatmulKernel::Subgroup,
        Ok("coop") => MatmulKernel::Cooperative,
        Ok("auto") | Err(_) => MatmulKernel::Auto,
        Ok(other) => panic!("WGRAD_MATMUL_KERNEL={other:?} is not auto, tiled, subgroup or coop"),
    };
    let info = gpu.info();
    println!(
        "adapter: {} ({}, {}), kernel: {:?}, matrix units: {:?}",
        info.name,
        info.backend,
        info.device_type,
        kernel.resolve(&gpu),
        info.matrix_units
    );
    if std::env::args().any(|a| a == "--f16") {
        if std::env::args().any(|a| a == "--units") {
            return f16_lines(&gpu, kernel);
        }
        return f16_table(&gpu, kernel);
    }
    let cpu = Device::cpu();
    let torch = common::pytorch("matmul_pytorch.py", &[]);
    if let Err(e) = &torch {
        println!("pytorch: not measured ({e})");
    }
    println!(
        "{:>16} {:>12} {:>16} {:>16} {:>8} {:>10}",
        "M x K x N", "GPU GFLOP/s", "CPU twin GFLOP/s", "PyTorch GFLOP/s", "GPU/CPU", "CPU/torch"
    );
    let mut rng = Rng::new(7);
    for &(m, k, n) in SIZES {
        let (da, db) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
        let cfg = MatmulConfig { kernel, ..MatmulConfig::default() };
        let g = gflops(&gpu, cfg, (m, k, n), &da, &db);
        let c = gflops(&cpu, cfg, (m, k, n), &da, &db);
        let name = format!("{m}x{k}x{n}");
        let t = common::lookup(&torch, &name);
        // Of throughputs here: ours over PyTorch's, higher is better.
        let vs = common::ratio(c, t);
        println!("{name:>16} {g:>12.1} {c:>16.1} {:>16} {:>8.2} {vs:>10}", common::show(t), g / c);
    }
}

/// The f16 kernel's GFLOP/s at two large sizes, nothing else.
fn f16_lines(gpu: &Device, kernel: MatmulKernel) {
    let mut rng = Rng::new(7);
    for size in [2048, 4096] {
        let (da, db) = (rng.vec(size * size, -1.0, 1.0), rng.vec(size * size, -1.0, 1.0));
        let cfg = MatmulConfig { kernel, ..MatmulConfig::f16() };
        println!("f16 {size}^3: {:.1} GFLOP/s", gflops(gpu, cfg, (size, size, size), &da, &db));
    }
}

/// The f16 table: `kernel` (by default matrix units where offered), the
/// tiled kernel on the ALUs, and PyTorch's f16 product, same sizes. The CPU
/// backend is left out (f16 products widen to the f32 GEMM there).
fn f16_table(gpu: &Device, kernel: MatmulKernel) {
    let torch = common::pytorch("matmul_pytorch.py", &["--dtype".into(), "f16".into()]);
    if let Err(e) = &torch {
        println!("pytorch: not measured ({e})");
    }
    let units = gpu.info().matrix_units.is_some() && matches!(kernel, MatmulKernel::Auto | MatmulKernel::Cooperative);
    println!(
        "{:>16} {:>14} {:>14} {:>16} {:>10} {:>10}",
        "M x K x N", "f16 GFLOP/s", "ALU GFLOP/s", "PyTorch GFLOP/s", "vs torch", "vs ALU"
    );
    println!("(f16 GFLOP/s: {}; ALU: the tiled kernel)", if units { "matrix units" } else { "no matrix units here" });
    let mut rng = Rng::new(7);
    for &(m, k, n) in SIZES {
        let (da, db) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
        let f16 = MatmulConfig { kernel, ..MatmulConfig::f16() };
        let g = gflops(gpu, f16, (m, k, n), &da, &db);
        let alu = gflops(gpu, MatmulConfig { kernel: MatmulKernel::Tiled, ..f16 }, (m, k, n), &da, &db);
        let name = format!("{m}x{k}x{n}");
        let t = common::lookup(&torch, &name);
        println!(
            "{name:>16} {g:>14.1} {alu:>14.1} {:>16} {:>10} {:>9.2}x",
            common::show(t),
            common::ratio(g, t),
            g / alu
        );
    }
}

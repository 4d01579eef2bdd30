//! Optimizer step cost: the fused AdamW kernel against the same update
//! written as a sequence of elementwise tensor ops.
//!
//! `cargo bench --bench optim` — 10M parameters in 10 tensors of 1M, with
//! fixed gradients; one AdamW step (lr 1e-3, weight decay 0.01), ending with
//! `Device::synchronize()`, in ms, on the adapter `WGRAD_DEVICE` picks and on
//! the CPU backend in the same run.

use std::time::Instant;

use wgrad::autograd::{no_grad, Device, Tensor};
use wgrad::nn::optim::{AdamW, Optimizer};

const TENSORS: usize = 10;
const SIZE: usize = 1_000_000;
const LR: f32 = 1e-3;
const WD: f32 = 0.01;
const BETAS: (f32, f32) = (0.9, 0.999);
const EPS: f32 = 1e-8;

/// Parameters with a gradient each (kept across steps: no zero_grad).
fn params(dev: &Device) -> Vec<Tensor> {
    (0..TENSORS as u64)
        .map(|i| {
            let p = Tensor::randn(&[SIZE], i, dev).requires_grad_();
            (&p * &Tensor::randn(&[SIZE], 100 + i, dev)).sum_all().backward();
            p
        })
        .collect()
}

/// Milliseconds per call of `step` (after one warm-up call) and kernels per call.
fn time(dev: &Device, reps: usize, mut step: impl FnMut()) -> (f64, u64) {
    step();
    dev.synchronize().unwrap();
    let before = dev.stats().dispatches;
    let t = Instant::now();
    for _ in 0..reps {
        step();
        dev.synchronize().unwrap();
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
    (ms, (dev.stats().dispatches - before) / reps as u64)
}

fn fused(dev: &Device, reps: usize) -> (f64, u64) {
    let p = params(dev);
    let mut opt = AdamW::new(p, LR);
    time(dev, reps, || opt.step())
}

/// AdamW as PyTorch writes it, one tensor op per line (each a kernel).
fn unfused(dev: &Device, reps: usize) -> (f64, u64) {
    let p = params(dev);
    let grads: Vec<Tensor> = p.iter().map(|p| p.grad().unwrap()).collect();
    let m: Vec<Tensor> = p.iter().map(|p| p.zeros_like()).collect();
    let v: Vec<Tensor> = p.iter().map(|p| p.zeros_like()).collect();
    let mut t = 0;
    time(dev, reps, || {
        t += 1;
        let (b1, b2) = (BETAS.0 as f64, BETAS.1 as f64);
        let step_size = (LR as f64 / (1.0 - b1.powi(t))) as f32;
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt() as f32;
        no_grad(|| {
            for i in 0..TENSORS {
                let (p, g, m, v) = (&p[i], &grads[i], &m[i], &v[i]);
                p.assign(&p.mul_scalar(1.0 - LR * WD));
                m.assign(&(m.mul_scalar(BETAS.0) + g.mul_scalar(1.0 - BETAS.0)));
                v.assign(&(v.mul_scalar(BETAS.1) + g.square().mul_scalar(1.0 - BETAS.1)));
                let denom = v.sqrt().affine(1.0 / bc2_sqrt, EPS);
                p.assign(&(p - &(m.mul_scalar(step_size) / denom)));
            }
        });
    })
}

fn main() {
    let gpu = Device::from_env().expect("open WGRAD_DEVICE");
    let cpu = Device::cpu();
    println!("device: {}", gpu.name());
    println!("AdamW step over {TENSORS} x {SIZE} parameters, ms per step (kernels per step)");
    println!("{:<28} {:>18} {:>18}", "", gpu.name().chars().take(18).collect::<String>(), "cpu backend");
    let (gf, nf) = fused(&gpu, 20);
    let (cf, _) = fused(&cpu, 20);
    println!("{:<28} {:>12.1} ({:>3}) {:>12.1}", "fused kernel", gf, nf, cf);
    let (gu, nu) = unfused(&gpu, 5);
    let (cu, _) = unfused(&cpu, 5);
    println!("{:<28} {:>12.1} ({:>3}) {:>12.1}", "unfused tensor ops", gu, nu, cu);
    println!("{:<28} {:>17.1}x {:>17.1}x", "speed-up", gu / gf, cu / cf);
}

//! Convolution layer cost: conv2d 3x3, N=32, C=64->64, 32x32, forward +
//! backward (input and weight gradients), and batch_norm + relu on the same
//! tensor, on the adapter `WGRAD_DEVICE` picks and on the CPU backend in the
//! same run.
//!
//! `cargo bench --bench conv`

use std::time::Instant;

use wgrad::autograd::{Conv2dOptions, Device, Tensor};

fn time_ms(reps: usize, mut f: impl FnMut() -> f32) -> f64 {
    f(); // warm-up: pipelines compiled, pool filled
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    t.elapsed().as_secs_f64() * 1e3 / reps as f64
}

fn run(dev: &Device, reps: usize) -> (f64, f64) {
    let x = Tensor::randn(&[32, 64, 32, 32], 1, dev).detach().requires_grad_();
    let w = Tensor::randn(&[64, 64, 3, 3], 2, dev).mul_scalar(0.05).detach().requires_grad_();
    let opts = Conv2dOptions::new().padding(1);
    // The output gradient is given (no loss reduction in the timing); each
    // step ends with a device synchronisation.
    let gy = Tensor::ones(&[32, 64, 32, 32], dev);
    let conv = time_ms(reps, || {
        x.conv2d(&w, None, &opts).backward_with(&gy);
        dev.synchronize().unwrap();
        x.zero_grad();
        w.zero_grad();
        0.0
    });
    let (rm, rv) = (Tensor::zeros(&[64], dev), Tensor::ones(&[64], dev));
    let (gamma, beta) = (Tensor::ones(&[64], dev).requires_grad_(), Tensor::zeros(&[64], dev).requires_grad_());
    let bn = time_ms(reps, || {
        x.batch_norm(Some(&rm), Some(&rv), Some(&gamma), Some(&beta), true, 0.1, 1e-5).relu().backward_with(&gy);
        dev.synchronize().unwrap();
        x.zero_grad();
        0.0
    });
    (conv, bn)
}

fn main() {
    let gpu = Device::from_env().expect("open WGRAD_DEVICE");
    let cpu = Device::cpu();
    let (gc, gb) = run(&gpu, 3);
    let (cc, cb) = run(&cpu, 3);
    println!("device: {}", gpu.name());
    println!("{:<58} {:>12} {:>12}", "workload (ms per step)", "gpu", "cpu backend");
    println!("{:<58} {gc:>12.1} {cc:>12.1}", "conv2d 3x3 N=32 C=64->64 32x32, fwd + bwd (dx, dw)");
    println!("{:<58} {gb:>12.1} {cb:>12.1}", "batch_norm + relu, same tensor, fwd + bwd (train)");
}

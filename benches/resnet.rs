//! ResNet-20 training step (forward, cross-entropy, backward, SGD momentum)
//! on 3x32x32 images: ms/step and images/s on the adapter `WGRAD_DEVICE` picks
//! and on the CPU backend, plus the time to the first step (pipeline
//! compilation included). `benches/resnet_pytorch.py` times the same step in
//! PyTorch for comparison (run by hand; PyTorch is not a dependency).
//!
//! `cargo bench --bench resnet [-- BATCH...]` (default batches 32 and 128)

use std::time::Instant;

use wgrad::models::{ResNet, Shortcut};
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Optimizer, Sgd, SgdOptions};
use wgrad::prelude::*;

fn bench(dev: &Device, batch: usize, steps: usize) -> (f64, f64, f64) {
    let t0 = Instant::now();
    let model = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut Generator::new(0), dev);
    let opts = SgdOptions { momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
    let mut opt = Sgd::with_options(model.parameters(), 0.1, opts);
    let x = Tensor::randn(&[batch, 3, 32, 32], 1, dev);
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let y = Tensor::from_u32(&labels, &[batch], dev);
    let step = |opt: &mut Sgd| {
        let loss = CrossEntropyLoss::default().forward(&model.forward(&x), &y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        loss.item()
    };
    step(&mut opt);
    let first = t0.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..steps {
        step(&mut opt);
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
    (ms, batch as f64 / ms * 1e3, first)
}

fn main() {
    let batches: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let batches = if batches.is_empty() { vec![32, 128] } else { batches };
    let gpu = Device::from_env().expect("open WGRAD_DEVICE");
    let cpu = Device::cpu();
    println!("device: {}", gpu.name());
    println!(
        "{:<8} {:>14} {:>12} {:>16} {:>14} {:>12}",
        "batch", "gpu ms/step", "gpu img/s", "gpu first step s", "cpu ms/step", "cpu img/s"
    );
    for b in batches {
        let (gm, gi, gf) = bench(&gpu, b, 5);
        let (cm, ci, _) = bench(&cpu, b, 3);
        println!("{b:<8} {gm:>14.1} {gi:>12.1} {gf:>16.2} {cm:>14.1} {ci:>12.1}");
    }
}

//! Kernel launches per training step (forward, backward, optimizer) of the
//! reference workloads: a host- and adapter-independent counter, for
//! checking that a change to the fuser or the layers adds no launch.
//!
//! `cargo bench --bench launch_counts` — on the GPU adapter
//! `WGRAD_DEVICE=gpu` picks (lavapipe in CI; counts are the same on every
//! adapter that takes the same paths: run with `WGRAD_TEXTURE_OPERANDS=0`
//! for a hardware GPU's). Small batches: a launch count does not depend on
//! the batch. Each workload runs two warm-up steps, then one counted step.
//! docs/architecture.md ("The fuser's tails") keeps the table it prints.

use wgrad::models::{mnist_cnn, Gpt, ResNet, Shortcut};
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Adam, AdamW, Optimizer, Sgd, SgdOptions};
use wgrad::prelude::*;

/// Launches of one step, by phase.
struct Counts {
    forward: u64,
    backward: u64,
    optimizer: u64,
}

/// Counts the launches of `loss` (forward), its backward and `opt.step()`,
/// after two uncounted steps.
fn count(dev: &Device, opt: &mut dyn Optimizer, loss: &dyn Fn() -> Tensor) -> Counts {
    let once = |opt: &mut dyn Optimizer| {
        opt.zero_grad();
        dev.synchronize().expect("sync");
        let s0 = dev.stats().dispatches;
        let l = loss();
        dev.flush().expect("flush");
        let s1 = dev.stats().dispatches;
        l.backward();
        dev.flush().expect("flush");
        let s2 = dev.stats().dispatches;
        opt.step();
        dev.flush().expect("flush");
        let s3 = dev.stats().dispatches;
        l.item();
        Counts { forward: s1 - s0, backward: s2 - s1, optimizer: s3 - s2 }
    };
    once(opt);
    once(opt);
    once(opt)
}

fn main() {
    let dev = Device::from_env().expect("a device");
    let mut init = Init::new(&dev, 0);
    let mut rows: Vec<(&str, Counts)> = Vec::new();
    let labels = |n: usize, classes: u32| {
        let v: Vec<u32> = (0..n as u32).map(|i| i * 7 % classes).collect();
        Tensor::from_u32(&v, &[n], &dev)
    };

    let resnet = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut init);
    let (x, y) = (Tensor::randn(&[2, 3, 32, 32], 1, &dev), labels(2, 10));
    let opts = SgdOptions { momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
    let mut opt = Sgd::with_options(resnet.parameters(), 0.1, opts);
    rows.push(("ResNet-20", count(&dev, &mut opt, &|| CrossEntropyLoss::default().forward(&resnet.forward(&x), &y))));
    // Mixed precision: the forward under autocast (f16 activations).
    let amp_loss = || {
        let _autocast = AutocastGuard::new(true);
        CrossEntropyLoss::default().forward(&resnet.forward(&x), &y)
    };
    rows.push(("ResNet-20, autocast", count(&dev, &mut opt, &amp_loss)));

    let cnn = mnist_cnn(&mut init);
    let (x, y) = (Tensor::randn(&[2, 1, 28, 28], 2, &dev), labels(2, 10));
    let mut opt = Adam::new(cnn.parameters(), 1e-3);
    rows.push(("MNIST CNN", count(&dev, &mut opt, &|| CrossEntropyLoss::default().forward(&cnn.forward(&x), &y))));

    let gpt = Gpt::builder(256, 32).layers(2).heads(2).width(128).build(&mut init);
    let ids: Vec<u32> = (0..64).map(|i| (i * 7919 % 256) as u32).collect();
    let tgt: Vec<u32> = (0..64).map(|i| (i * 104_729 % 256) as u32).collect();
    let (x, y) = (Tensor::from_u32(&ids, &[2, 32], &dev), Tensor::from_u32(&tgt, &[2, 32], &dev));
    let mut opt = AdamW::new(gpt.parameters(), 1e-3);
    rows.push(("GPT (2 blocks of 128)", count(&dev, &mut opt, &|| gpt.loss(&x, &y))));

    let lstm = LSTM::builder(32, 64).build(&mut init);
    let x = Tensor::randn(&[16, 2, 32], 3, &dev);
    let mut opt = Adam::new(lstm.parameters(), 1e-3);
    rows.push(("LSTM (16 steps)", count(&dev, &mut opt, &|| lstm.forward(&x).square().mean_all())));

    println!("{} ({}):", dev.name(), dev.info().backend);
    println!("| workload | forward | backward | optimizer | step |");
    println!("|---|---:|---:|---:|---:|");
    for (name, c) in rows {
        let step = c.forward + c.backward + c.optimizer;
        println!("| {name} | {} | {} | {} | {step} |", c.forward, c.backward, c.optimizer);
    }
}

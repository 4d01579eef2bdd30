//! Whole training steps with the elementwise fuser on and off: the same loss
//! and gradients, fewer launches. Prints the launch counts (the numbers in
//! docs/performance.md).

use wgrad_autograd::{Device, Tensor};
use wgrad_models::{Gpt, ResNet, Shortcut};
use wgrad_nn::{Init, Module, ModuleExt};

/// A fresh GPU device with fusion `on`, or `None` (skipped) without an adapter.
fn gpu(on: bool, test: &str) -> Option<Device> {
    match Device::gpu() {
        Ok(d) => {
            d.set_fusion(on).unwrap();
            Some(d)
        }
        Err(e) if wgrad_gpu_core::env::switch("WGRAD_REQUIRE_GPU", false) => panic!("no GPU: {e}"),
        Err(_) => {
            eprintln!("*** SKIPPED GPU test `{test}`: no GPU adapter ***");
            None
        }
    }
}

/// One step's loss, every parameter's gradient and the launches it took.
struct Step {
    loss: f32,
    grads: Vec<(String, Vec<f32>)>,
    launches: u64,
}

/// Runs `loss` forward and backward on `model` and collects the results.
fn step<M: Module>(dev: &Device, model: &M, loss: impl FnOnce() -> Tensor) -> Step {
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let l = loss();
    l.backward();
    dev.flush().unwrap();
    let launches = dev.stats().dispatches - before;
    let grads = model
        .named_parameters()
        .into_iter()
        .map(|(name, p)| (name, p.grad().map(|g| g.to_vec()).unwrap_or_default()))
        .collect();
    Step { loss: l.item(), grads, launches }
}

/// Fused and unfused steps agree within 1e-6 relative (plus a small
/// absolute floor for gradients that cancel to about zero).
fn compare(what: &str, fused: &Step, plain: &Step) {
    eprintln!("{what}: {} launches unfused, {} fused", plain.launches, fused.launches);
    assert!(
        (fused.loss - plain.loss).abs() <= 1e-6 * plain.loss.abs(),
        "{what}: loss {} vs {}",
        fused.loss,
        plain.loss
    );
    for ((name, f), (_, p)) in fused.grads.iter().zip(&plain.grads) {
        let scale = p.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (a, b)) in f.iter().zip(p).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * b.abs() + 1e-6 * scale,
                "{what}: gradient of {name}[{i}]: fused {a} vs unfused {b}"
            );
        }
    }
    assert!(fused.launches < plain.launches, "{what}: fusion saves launches");
}

#[test]
fn a_transformer_step_is_the_same_fused_and_unfused() {
    let run = |on: bool| {
        let dev = gpu(on, "a_transformer_step_is_the_same_fused_and_unfused")?;
        let model = Gpt::builder(50, 16).layers(2).heads(2).width(32).build(&mut Init::new(&dev, 7));
        let ids: Vec<u32> = (0..2 * 16).map(|i| (i * 7 % 50) as u32).collect();
        let targets: Vec<u32> = (0..2 * 16).map(|i| (i * 11 % 50) as u32).collect();
        let (ids, targets) = (Tensor::from_u32(&ids, &[2, 16], &dev), Tensor::from_u32(&targets, &[2, 16], &dev));
        Some(step(&dev, &model, || model.loss(&ids, &targets)))
    };
    let (Some(fused), Some(plain)) = (run(true), run(false)) else { return };
    compare("GPT (2 layers, width 32, batch 2 x 16) step", &fused, &plain);
}

#[test]
fn a_resnet20_step_is_the_same_fused_and_unfused() {
    let run = |on: bool| {
        let dev = gpu(on, "a_resnet20_step_is_the_same_fused_and_unfused")?;
        let model = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut Init::new(&dev, 3));
        let x = Tensor::randn(&[2, 3, 32, 32], 5, &dev);
        let y = Tensor::from_u32(&[3, 8], &[2], &dev);
        let opts = wgrad_autograd::CrossEntropyOptions::default();
        Some(step(&dev, &model, || model.forward(&x).cross_entropy(&y, &opts)))
    };
    let (Some(fused), Some(plain)) = (run(true), run(false)) else { return };
    compare("ResNet-20 (batch 2, 32x32) step", &fused, &plain);
}

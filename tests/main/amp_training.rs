//! Mixed-precision training tracks f32 training: a small CNN (convolution,
//! batch norm, linear head), ResNet-20 (f16 activations end to end:
//! convolutions, batch norm, the option-A shortcut) and a small GPT (f16
//! products and attention, f32 layer norms and loss) trained with autocast
//! and a GradScaler follow the f32 loss curve step for step within a stated
//! tolerance, on every backend, while really computing something different
//! (the curves are not identical).

use crate::common;
use common::devices;
use wgrad::models::{mnist_cnn, Gpt, ResNet, Shortcut};
use wgrad::nn::amp::GradScaler;
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Adam, Optimizer, Sgd, SgdOptions};
use wgrad::prelude::*;

/// Per-step losses of `steps` optimizer steps of `model` on the fixed batch
/// `(x, y)`, with autocast and loss scaling when `amp`.
fn curve(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    (x, y): (&Tensor, &Tensor),
    amp: bool,
    steps: usize,
) -> (Vec<f32>, GradScaler) {
    let mut scaler = GradScaler::with_options(wgrad::nn::amp::GradScalerOptions::default().enabled(amp));
    let mut out = Vec::new();
    for _ in 0..steps {
        let loss = {
            let _autocast = AutocastGuard::new(amp);
            CrossEntropyLoss::default().forward(&model.forward(x), y)
        };
        opt.zero_grad();
        scaler.scale(&loss).backward();
        assert!(scaler.step(opt), "no overflow expected at these magnitudes");
        scaler.update();
        out.push(loss.item());
    }
    (out, scaler)
}

/// A batch of `n` random images of `shape` with labels `i * mult % 10`.
fn batch(shape: &[usize], seed: u64, mult: usize, dev: &Device) -> (Tensor, Tensor) {
    let labels: Vec<u32> = (0..shape[0]).map(|i| (i * mult % 10) as u32).collect();
    (Tensor::randn(shape, seed, dev), Tensor::from_u32(&labels, &[shape[0]], dev))
}

/// Per-step losses of `steps` Adam steps of the MNIST CNN on a fixed synthetic batch.
fn losses(dev: &Device, amp: bool, steps: usize) -> (Vec<f32>, GradScaler) {
    let model = mnist_cnn(&mut Init::new(dev, 3));
    let mut opt = Adam::new(model.parameters(), 2e-3);
    let (x, y) = batch(&[16, 1, 28, 28], 7, 7, dev);
    curve(&model, &mut opt, (&x, &y), amp, steps)
}

/// Tolerance: 2% of the f32 loss plus 0.01 per step. f16 operands carry
/// 11 significant bits (relative error 2^-11 ≈ 5e-4 per operand); over 25
/// Adam steps those differences compound through the weights: the largest
/// relative gap measured is 1.9% (CPU backend and lavapipe, 2026-11-23,
/// since convolutions return f16 activations; 1.1% when they returned f32),
/// at a step where the absolute term covers most of it.
#[test]
fn amp_follows_the_f32_loss_curve() {
    for dev in devices("amp_follows_the_f32_loss_curve") {
        let (f32_curve, _) = losses(&dev, false, 25);
        let (amp_curve, scaler) = losses(&dev, true, 25);
        assert!(f32_curve[24] < 0.5 * f32_curve[0], "{}: f32 training learns ({f32_curve:?})", dev.name());
        for (i, (a, f)) in amp_curve.iter().zip(&f32_curve).enumerate() {
            assert!((a - f).abs() <= 0.02 * f + 0.01, "{} step {i}: amp {a} vs f32 {f}", dev.name());
        }
        let gap = amp_curve.iter().zip(&f32_curve).map(|(a, f)| (a - f).abs() / f).fold(0.0f32, f32::max);
        println!("{}: largest relative gap {gap:.5}", dev.name());
        assert_ne!(amp_curve, f32_curve, "{}: autocast changed nothing", dev.name());
        assert_eq!(scaler.get_scale(), 65536.0, "{}: no overflow, fewer than 2000 steps", dev.name());
    }
}

/// Per-step losses of ResNet-20 trained with SGD + momentum on a fixed
/// synthetic batch of 16x16 images (small, so the test stays fast; the
/// network is the CIFAR one).
fn resnet_losses(dev: &Device, amp: bool, steps: usize) -> Vec<f32> {
    let model = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut Init::new(dev, 5));
    let opts = SgdOptions { momentum: 0.9, ..Default::default() };
    let mut opt = Sgd::with_options(model.parameters(), 0.05, opts);
    let (x, y) = batch(&[8, 3, 16, 16], 11, 3, dev);
    curve(&model, &mut opt, (&x, &y), amp, steps).0
}

/// ResNet-20 with f16 activations: tolerance 3% of the f32 loss plus 0.02
/// per step over 12 steps. f16 activations round every layer's output, not
/// only the products' operands. Measured 2026-11-23: the largest absolute
/// gap is 0.008 (lavapipe, step 4: 0.339 against 0.331); the relative gap
/// reaches 8% only once the loss is below 0.003 (the batch is memorised).
#[test]
fn amp_resnet20_follows_the_f32_loss_curve() {
    for dev in devices("amp_resnet20_follows_the_f32_loss_curve") {
        let f32_curve = resnet_losses(&dev, false, 12);
        let amp_curve = resnet_losses(&dev, true, 12);
        assert!(f32_curve[11] < 0.7 * f32_curve[0], "{}: f32 training learns ({f32_curve:?})", dev.name());
        for (i, (a, f)) in amp_curve.iter().zip(&f32_curve).enumerate() {
            assert!((a - f).abs() <= 0.03 * f + 0.02, "{} step {i}: amp {a} vs f32 {f}", dev.name());
        }
        let gap = amp_curve.iter().zip(&f32_curve).map(|(a, f)| (a - f).abs() / f).fold(0.0f32, f32::max);
        println!("{}: ResNet-20 largest relative gap {gap:.5} ({amp_curve:?} vs {f32_curve:?})", dev.name());
        assert_ne!(amp_curve, f32_curve, "{}: autocast changed nothing", dev.name());
    }
}

/// Per-step losses of a 2-block GPT (width 16, 2 heads of 8) trained with
/// Adam on a fixed batch of token windows (next-token targets).
fn gpt_losses(dev: &Device, amp: bool, steps: usize) -> Vec<f32> {
    let model = Gpt::builder(16, 8).layers(2).heads(2).width(16).build(&mut Init::new(dev, 9));
    let mut opt = Adam::new(model.parameters(), 3e-3);
    let tokens: Vec<u32> = (0..4 * 9).map(|i| (i * 7 + i / 9) as u32 % 16).collect();
    let window = |start: usize| -> Vec<u32> { (0..4).flat_map(|b| tokens[b * 9 + start..][..8].to_vec()).collect() };
    let (ids, targets) = (Tensor::from_u32(&window(0), &[4, 8], dev), Tensor::from_u32(&window(1), &[4, 8], dev));
    let mut scaler = GradScaler::with_options(wgrad::nn::amp::GradScalerOptions::default().enabled(amp));
    let mut out = Vec::new();
    for _ in 0..steps {
        let loss = {
            let _autocast = AutocastGuard::new(amp);
            model.loss(&ids, &targets)
        };
        opt.zero_grad();
        scaler.scale(&loss).backward();
        assert!(scaler.step(&mut opt), "no overflow expected at these magnitudes");
        scaler.update();
        out.push(loss.item());
    }
    out
}

/// A Transformer with f16 products and f16 attention (q, k, v, output and
/// their gradients): tolerance 1% of the f32 loss plus 0.005 per step over
/// 20 Adam steps. Measured 2026-11-23 with f16 attention and f16 matmul
/// results: the largest absolute gap is 0.00074 (CPU backend; lavapipe
/// 0.00066), at losses from 2.9 down to 0.88.
#[test]
fn amp_gpt_follows_the_f32_loss_curve() {
    for dev in devices("amp_gpt_follows_the_f32_loss_curve") {
        let f32_curve = gpt_losses(&dev, false, 20);
        let amp_curve = gpt_losses(&dev, true, 20);
        assert!(f32_curve[19] < 0.7 * f32_curve[0], "{}: f32 training learns ({f32_curve:?})", dev.name());
        for (i, (a, f)) in amp_curve.iter().zip(&f32_curve).enumerate() {
            assert!((a - f).abs() <= 0.01 * f + 0.005, "{} step {i}: amp {a} vs f32 {f}", dev.name());
        }
        let gap = amp_curve.iter().zip(&f32_curve).map(|(a, f)| (a - f).abs()).fold(0.0f32, f32::max);
        println!("{}: GPT largest absolute gap {gap:.5} ({amp_curve:?} vs {f32_curve:?})", dev.name());
        assert_ne!(amp_curve, f32_curve, "{}: autocast changed nothing", dev.name());
    }
}

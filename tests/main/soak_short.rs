//! The CI-sized soak (issue 15): each example's training loop from
//! `benches/common/soak.rs` run for 40 steps (ResNet: 26, whose step is the
//! slowest on lavapipe; it still crosses an epoch boundary after warm-up)
//! on the CPU backend and the GPU, with the device counters read after every
//! step past a warm-up of 10 steps and 3 submitted batches (at most half
//! the steps; the pool's order of buffers settles over the first batches):
//! no buffer allocated from the driver, no new peak, `bytes_live` flat. The
//! 5,000-step runs are `cargo bench --bench soak` (docs/reliability.md).

// The bench's report uses the rest of the module. It finds the examples'
// AMP recipe as `crate::amp` (declared in main.rs).
#[allow(dead_code)]
#[path = "../../benches/common/soak.rs"]
mod soak;

use std::time::Instant;

use wgrad::gpu_core::testing::fresh_backends;
use wgrad::prelude::*;

const STEPS: usize = 40;
const WARMUP: usize = 10;

/// Soaks `model` on every backend (each a device of its own, so the
/// counters are this loop's alone) and fails naming what grew.
fn flat_after_warmup(model: &str, steps: usize) {
    for dev in fresh_backends(&format!("soak_short::{model}")) {
        let mut lp = soak::build(model, steps, &dev);
        let result = soak::soak(&mut *lp, &dev, (steps, WARMUP, 1), None, &mut |_| {});
        if let Err(why) = result.verdict() {
            panic!("{model} on {}: {why}\n({})\nsamples: {:?}", dev.name(), lp.describe(), result.after);
        }
        assert_eq!(result.after.len(), steps - result.warm.step);
        assert!(result.after.len() >= steps / 2, "{model}: the warm-up took {} of {steps} steps", result.warm.step);
    }
}

#[test]
fn mnist_memory_is_flat_after_warmup() {
    flat_after_warmup("mnist", STEPS);
}

#[test]
fn cifar10_resnet_memory_is_flat_after_warmup() {
    flat_after_warmup("cifar10_resnet", 26);
}

#[test]
fn char_lstm_memory_is_flat_after_warmup() {
    flat_after_warmup("char_lstm", STEPS);
}

#[test]
fn tiny_gpt_memory_is_flat_after_warmup() {
    flat_after_warmup("tiny_gpt", STEPS);
}

#[test]
fn vae_memory_is_flat_after_warmup() {
    flat_after_warmup("vae", STEPS);
}

/// A loop that keeps one small tensor per step alive, as a leak does.
struct Leaky {
    inner: Box<dyn soak::Loop>,
    kept: Vec<Tensor>,
    dev: Device,
}

impl soak::Loop for Leaky {
    fn step(&mut self) {
        self.inner.step();
        self.kept.push(Tensor::zeros(&[16], &self.dev));
    }

    fn describe(&self) -> String {
        format!("{} leaking 64 B a step", self.inner.describe())
    }
}

/// The check can fail: a leak of one 64-byte tensor a step is caught.
#[test]
fn a_tensor_leaked_every_step_fails_the_soak() {
    let dev = Device::cpu();
    let mut lp = Leaky { inner: soak::build("char_lstm", STEPS, &dev), kept: Vec::new(), dev: dev.clone() };
    let result = soak::soak(&mut lp, &dev, (STEPS, WARMUP, 1), None, &mut |_| {});
    let why = result.verdict().expect_err("a leak must not pass");
    assert!(why.contains("buffers_created grew by 30"), "{why}");
    assert!(result.live_growth() >= 30 * 64, "{why}");
}

/// A deadline stops a soak at the step reached and says how far it got; one
/// that passes during warm-up leaves nothing sampled after it.
#[test]
fn a_deadline_stops_the_soak_at_the_step_reached() {
    let dev = Device::cpu();
    let mut lp = soak::build("tiny_gpt", STEPS, &dev);
    let result = soak::soak(&mut *lp, &dev, (STEPS, WARMUP, 1), Some(Instant::now()), &mut |_| {});
    assert_eq!(result.steps_run, 1);
    assert_eq!(result.warm.step, 1);
    assert!(result.after.is_empty());
    let mut seen = Vec::new();
    let deadline = Instant::now() + std::time::Duration::from_secs(3600);
    let result = soak::soak(&mut *lp, &dev, (STEPS, WARMUP, 7), Some(deadline), &mut |s| seen.push(s.step));
    assert_eq!(result.steps_run, STEPS);
    assert_eq!(seen, [10, 17, 24, 31, 38, 40]);
}

//! The host's time to record one eager ResNet-20 training step, for
//! comparing two commits of wgrad's recorder.
//!
//! `cargo bench --bench host_step [-- STEPS]` — on the adapter
//! `WGRAD_DEVICE` picks, with replay off (`Device::set_replay(false)`: every
//! launch recorded afresh). Each step (zero_grad, forward, cross-entropy,
//! backward, SGD) starts with the device idle and is timed until it is
//! submitted; the wait that follows is not timed. Batch 2: the host's work
//! per launch does not depend on the batch, and a small batch keeps the
//! device's share (and its eviction of the host's caches on CPU adapters)
//! small. Prints the best, first-quartile and median step, the submit's
//! share, and the time the submit thread (`gpu/submitter.rs`) spent
//! finishing the step's batch beside the caller (`WGRAD_SUBMIT_THREAD=0`
//! puts that work back into the submit).
//!
//! Then the heap allocations the caller's thread makes per launch, recorded
//! afresh and replayed (a host-independent counter: the recorder's goal is
//! none on the hot path).
//!
//! Host kinds differ several-fold, so compare builds on one host: build each
//! commit's `target/release/deps/host_step-*` binary and run them
//! alternately, a few rounds each (docs/performance.md, "Host cost per
//! launch").

use std::time::Instant;

use wgrad::gpu_core::testing::{thread_allocations, CountingAllocator};
use wgrad::models::{ResNet, Shortcut};
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Optimizer, Sgd, SgdOptions};
use wgrad::prelude::*;

// Counts the heap allocations of the caller's thread (a host-independent figure).
#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn main() {
    let steps: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(80);
    let dev = Device::from_env().expect("a device");
    dev.set_replay(false).expect("replay off");
    let model = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut Init::new(&dev, 0));
    let opts = SgdOptions { momentum: 0.9, weight_decay: 1e-4, ..Default::default() };
    let mut opt = Sgd::with_options(model.parameters(), 0.1, opts);
    let batch = 2;
    let x = Tensor::randn(&[batch, 3, 32, 32], 1, &dev);
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let y = Tensor::from_u32(&labels, &[batch], &dev);
    // Returns the loss and the time the submit took (µs).
    let mut step = || {
        opt.zero_grad();
        let loss = CrossEntropyLoss::default().forward(&model.forward(&x), &y);
        loss.backward();
        opt.step();
        let t = Instant::now();
        dev.flush().expect("submit");
        (loss, t.elapsed().as_secs_f64() * 1e6)
    };
    // Warm-up: pipelines compiled, the pool's order settled.
    for _ in 0..3 {
        step().0.item();
    }
    let before = dev.stats();
    let (mut us, mut submit_us): (Vec<f64>, Vec<f64>) = (0..steps)
        .map(|_| {
            dev.synchronize().expect("device idle");
            let t = Instant::now();
            let (loss, submit) = step();
            let took = t.elapsed().as_secs_f64() * 1e6;
            drop(loss);
            (took, submit)
        })
        .unzip();
    let done = dev.stats() - before;
    us.sort_by(f64::total_cmp);
    submit_us.sort_by(f64::total_cmp);
    let launches = done.dispatches / steps as u64;
    println!(
        "{}: host until submitted, {steps} eager ResNet-20 steps (batch {batch}, {launches} launches each, {} bind groups created after warm-up): best {:.0} us, p25 {:.0} us, median {:.0} us; of which the submit: median {:.0} us; the submit thread's work: {:.0} us a step",
        dev.name(),
        done.bind_groups_created,
        us[0],
        us[us.len() / 4],
        us[us.len() / 2],
        submit_us[submit_us.len() / 2],
        done.host_encode_ns as f64 / 1e3 / steps as f64
    );
    // Allocations per launch, replay off, then on (after it has its plans).
    for replay in [false, true] {
        dev.set_replay(replay).expect("replay switch");
        for _ in 0..3 {
            step().0.item();
        }
        dev.synchronize().expect("device idle");
        let before = dev.stats();
        let n = thread_allocations(|| {
            for _ in 0..5 {
                drop(step());
            }
        });
        let launches = (dev.stats() - before).dispatches.max(1);
        let what = if replay { "replayed" } else { "recorded afresh" };
        println!("heap allocations on the caller's thread, {what}: {:.1} per launch", n as f64 / launches as f64);
    }
}

//! The step profiler seen from autograd: every dispatch of a training step is
//! one profiled launch, forward launches carry their op's name and backward
//! launches `"<op> backward"`, the matmuls declare exactly their FLOPs, and
//! profiling changes neither the results nor the counters.

use crate::common;
use common::rand;
use wgrad_autograd::{no_grad, Device, Tensor};
use wgrad_gpu_core::testing::fresh_gpu_or_skip;
use wgrad_gpu_core::Profile;

const BATCH: usize = 32;
const LAYERS: [(usize, usize); 3] = [(8, 16), (16, 16), (16, 1)];

/// Parameters of a 3-layer MLP and its data.
fn model(dev: &Device) -> (Vec<Tensor>, Tensor, Tensor) {
    let mut params = Vec::new();
    for (i, &(fan_in, fan_out)) in LAYERS.iter().enumerate() {
        params.push(rand(&[fan_in, fan_out], 10 + i as u64, -0.5, 0.5, dev).requires_grad_());
        params.push(rand(&[fan_out], 20 + i as u64, -0.1, 0.1, dev).requires_grad_());
    }
    let x = rand(&[BATCH, LAYERS[0].0], 1, -1.0, 1.0, dev);
    let y = rand(&[BATCH, 1], 2, -1.0, 1.0, dev);
    (params, x, y)
}

/// Forward, MSE, backward, SGD; returns the loss and the updated parameters.
fn step(p: &[Tensor], x: &Tensor, y: &Tensor) -> (f32, Vec<Vec<f32>>) {
    let h1 = (x.matmul(&p[0]) + &p[1]).relu();
    let h2 = (h1.matmul(&p[2]) + &p[3]).tanh();
    let loss = (h2.matmul(&p[4]) + &p[5] - y).square().mean_all();
    loss.backward();
    no_grad(|| {
        for w in p {
            w.assign(&(w - &(w.grad().unwrap() * 0.1)));
            w.zero_grad();
        }
    });
    (loss.item(), p.iter().map(|w| w.to_vec()).collect())
}

/// FLOPs of the forward products and of their gradients (the data `x` needs none).
fn matmul_flops() -> (u64, u64) {
    let fwd: Vec<u64> = LAYERS.iter().map(|&(k, n)| 2 * (BATCH * k * n) as u64).collect();
    let total: u64 = fwd.iter().sum();
    (total, 2 * total - fwd[0])
}

/// The launches and FLOPs of op `name`, alone or merged with others by the
/// fuser (a ReLU's backward merged into a product's is `matmul backward+relu backward`).
fn op(p: &Profile, name: &str) -> (usize, u64) {
    let named = |n: &str| n.split('+').any(|part| part == name);
    let found: Vec<_> = p.by_op().into_iter().filter(|(n, _)| named(n)).map(|(_, t)| (t.launches, t.flops)).collect();
    assert!(!found.is_empty(), "no op {name} in\n{p}");
    found.into_iter().fold((0, 0), |(l, f), (a, b)| (l + a, f + b))
}

fn check(dev: &Device) {
    let (pa, xa, ya) = model(dev);
    let (pb, xb, yb) = model(dev);
    step(&pa, &xa, &ya); // warm-up: pipelines, pool
    step(&pb, &xb, &yb);
    let before = dev.stats();
    let plain = step(&pa, &xa, &ya);
    let plain_stats = dev.stats() - before;
    let before = dev.stats();
    let (profiled, p) = dev.profile(|| step(&pb, &xb, &yb)).unwrap();
    let profiled_stats = dev.stats() - before;
    assert_eq!(plain, profiled, "profiling changes the step's results on {}", dev.name());
    assert_eq!(plain_stats.dispatches, profiled_stats.dispatches, "profiling changes the dispatch count");
    assert_eq!(p.launches.len() as u64, plain_stats.dispatches, "one profiled launch per dispatch\n{p}");

    let (fwd, bwd) = matmul_flops();
    let (matmul, matmul_back) = (op(&p, "matmul"), op(&p, "matmul backward"));
    assert_eq!(matmul, (3, fwd), "{p}");
    assert_eq!(matmul_back.0, 5, "two products per layer but the first\n{p}");
    assert_eq!(matmul_back.1, bwd, "{p}");
    assert_eq!(p.total().flops, fwd + bwd, "only the matmuls declare FLOPs here\n{p}");
    // Forward ops are named by autograd (unary functions by their table row),
    // backward rules get a scope each; a launch the fuser made of several ops
    // is named by all of them (`add+relu`).
    for name in ["relu", "relu backward", "tanh", "tanh backward", "add", "add backward"] {
        let named = |n: &str| n.split('+').any(|part| part == name);
        assert!(p.by_op().iter().any(|(n, t)| named(n) && t.launches > 0), "no {name} in\n{p}");
    }
    assert!(p.total().bytes_allocated > 0 && p.total().bytes_moved > p.total().bytes_allocated, "{p}");

    let json: serde_json::Value = serde_json::from_str(&p.chrome_trace()).unwrap();
    let events = json["traceEvents"].as_array().unwrap();
    assert_eq!(events.len(), p.launches.len());
    let declared: u64 = events.iter().map(|e| e["args"]["flops"].as_u64().unwrap()).sum();
    assert_eq!(declared, fwd + bwd);
}

#[test]
fn a_profiled_step_on_the_cpu_backend() {
    check(&Device::cpu());
}

#[test]
fn a_profiled_step_on_the_gpu() {
    let Some(dev) = fresh_gpu_or_skip("a_profiled_step_on_the_gpu") else { return };
    check(&dev);
}

#[test]
fn a_panic_inside_a_profile_ends_it() {
    let dev = Device::cpu();
    let x = Tensor::from_vec(&[1.0, 2.0], &[2], &dev);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dev.profile(|| {
            let _ = x.exp();
            panic!("inside the profile");
        })
    }));
    assert!(caught.is_err());
    // The next profile starts clean: nothing from the aborted one leaks in.
    let (_, p) = dev.profile(|| x.neg().to_vec()).unwrap();
    assert_eq!(p.launches.len(), 1, "{p}");
    assert!(!wgrad_gpu_core::profile::is_active(&dev), "the profile ended with its region");
}

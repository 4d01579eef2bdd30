//! Convolution layer cost: conv2d 3x3, N=32, C=64->64, 32x32, forward +
//! backward (input and weight gradients), and batch_norm + relu on the same
//! tensor, on the adapter `WGRAD_DEVICE` picks and on the CPU backend in the
//! same run, next to PyTorch CPU (`benches/conv_pytorch.py`, run by this
//! bench when `python3` with torch is available) and with the dispatches
//! each step records.
//!
//! `cargo bench --bench conv [-- --profile]` (`--profile`: one step of each
//! workload on the adapter under the step profiler, traces in `target/`)

use std::time::Instant;

mod common;
#[path = "common/profiling.rs"]
mod profiling;

use wgrad::autograd::{Conv2dOptions, Device, Tensor};

fn time_ms(reps: usize, mut f: impl FnMut() -> f32) -> f64 {
    f(); // warm-up: pipelines compiled, pool filled
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    t.elapsed().as_secs_f64() * 1e3 / reps as f64
}

/// (ms, dispatches) per step of each workload: conv, then batch norm + relu.
fn run(dev: &Device, reps: usize) -> ((f64, u64), (f64, u64)) {
    let x = Tensor::randn(&[32, 64, 32, 32], 1, dev).detach().requires_grad_();
    let w = Tensor::randn(&[64, 64, 3, 3], 2, dev).mul_scalar(0.05).detach().requires_grad_();
    let opts = Conv2dOptions::new().padding(1);
    // The output gradient is given (no loss reduction in the timing); each
    // step ends with a device synchronisation.
    let gy = Tensor::ones(&[32, 64, 32, 32], dev);
    let d0 = dev.stats().dispatches;
    let mut conv_step = || {
        x.conv2d(&w, None, &opts).backward_with(&gy);
        dev.synchronize().unwrap();
        x.zero_grad();
        w.zero_grad();
        0.0
    };
    let conv = time_ms(reps, &mut conv_step);
    let conv_launches = (dev.stats().dispatches - d0) / (reps as u64 + 1);
    profiling::maybe_profile(dev, "conv", conv_step);
    let (rm, rv) = (Tensor::zeros(&[64], dev), Tensor::ones(&[64], dev));
    let (gamma, beta) = (Tensor::ones(&[64], dev).requires_grad_(), Tensor::zeros(&[64], dev).requires_grad_());
    let d0 = dev.stats().dispatches;
    let mut bn_step = || {
        // As ResNet writes it: the ReLU merges into the normalisation's store.
        x.batch_norm(Some(&rm), Some(&rv), Some(&gamma), Some(&beta), true, 0.1, 1e-5).relu().backward_with(&gy);
        dev.synchronize().unwrap();
        x.zero_grad();
        0.0
    };
    let bn = time_ms(reps, &mut bn_step);
    let bn_launches = (dev.stats().dispatches - d0) / (reps as u64 + 1);
    profiling::maybe_profile(dev, "batch_norm_relu", bn_step);
    ((conv, conv_launches), (bn, bn_launches))
}

/// The convolutions timed op by op: ResNet-20's three stages at batch 32
/// and the bench's own 64-channel layer (`name`, channels, side).
const SHAPES: [(&str, usize, usize); 4] = [
    ("resnet20 16@32x32", 16, 32),
    ("resnet20 32@16x16", 32, 16),
    ("resnet20 64@8x8", 64, 8),
    ("bench 64@32x32", 64, 32),
];

/// Milliseconds of each implicit-GEMM op of a 3x3, padding 1, batch 32
/// convolution with `c` channels in and out on `side` x `side` images
/// (forward, input gradient, weight gradient), each ending with a
/// synchronisation.
fn parts(dev: &Device, reps: usize, c: usize, side: usize) -> [f64; 3] {
    use wgrad::gpu_core::ops::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad, ConvGeometry, ConvOptions};
    let g = ConvGeometry {
        pad_top: 1,
        pad_bottom: 1,
        pad_left: 1,
        pad_right: 1,
        ..ConvGeometry::new(32, c, (side, side), (3, 3))
    };
    let buf = |t: Tensor| t.buffer_and_layout().0;
    let x = buf(Tensor::randn(&[32, c, side, side], 1, dev));
    let w = buf(Tensor::randn(&[c, c, 3, 3], 2, dev));
    let gy = buf(Tensor::randn(&[32, c, side, side], 3, dev));
    let t = |f: &dyn Fn()| {
        time_ms(reps, || {
            f();
            dev.synchronize().unwrap();
            0.0
        })
    };
    [
        t(&|| drop(conv2d(&x, &w, c, &g, &ConvOptions::default()).unwrap())),
        t(&|| drop(conv2d_input_grad(&gy, &w, c, &g, &ConvOptions::default()).unwrap())),
        t(&|| drop(conv2d_weight_grad(&gy, &x, c, &g, &ConvOptions::default()).unwrap())),
    ]
}

fn main() {
    let gpu = Device::from_env().expect("open WGRAD_DEVICE");
    let cpu = Device::cpu();
    let (gc, gb) = run(&gpu, 3);
    let (cc, cb) = run(&cpu, 3);
    let torch = common::pytorch("conv_pytorch.py", &[]);
    if let Err(why) = &torch {
        println!("pytorch: not measured ({why})");
    }
    println!("device: {}", gpu.name());
    println!(
        "{:<52} {:>10} {:>11} {:>10} {:>10} {:>10} {:>10}",
        "workload (ms per step)", "gpu", "dispatches", "cpu", "pytorch", "gpu/torch", "cpu/torch"
    );
    for (name, key, g, c) in [
        ("conv2d 3x3 N=32 C=64->64 32x32, fwd + bwd (dx, dw)", "conv", gc, cc),
        ("batch_norm + relu, same tensor, fwd + bwd (train)", "batch_norm_relu", gb, cb),
    ] {
        let theirs = common::lookup(&torch, key);
        println!(
            "{name:<52} {:>10.1} {:>11} {:>10.1} {:>10} {:>10} {:>10}",
            g.0,
            g.1,
            c.0,
            common::show(theirs),
            common::ratio(g.0, theirs),
            common::ratio(c.0, theirs)
        );
    }
    // Op by op, on both devices: which shapes and which of the three
    // products fall behind PyTorch's.
    println!(
        "\nconv ops alone, ms (GFLOP/s)          {:>26} {:>26} {:>26}",
        "forward", "input gradient", "weight gradient"
    );
    for (name, c, side) in SHAPES {
        let flop = 2.0 * (32 * c * c * 9 * side * side) as f64;
        let cell = |ms: f64| format!("{ms:.2} ({:.0})", flop / ms / 1e6);
        let theirs = |part: &str| common::lookup(&torch, &format!("{part} {c}@{side}")).map_or("-".into(), cell);
        for (dev_name, dev) in [("gpu", &gpu), ("cpu", &cpu)] {
            let p = parts(dev, 5, c, side);
            println!("{name:<20} {dev_name:<8} {:>26} {:>26} {:>26}", cell(p[0]), cell(p[1]), cell(p[2]));
        }
        println!(
            "{name:<20} {:<8} {:>26} {:>26} {:>26}",
            "pytorch",
            theirs("forward"),
            theirs("input_grad"),
            theirs("weight_grad")
        );
    }
}

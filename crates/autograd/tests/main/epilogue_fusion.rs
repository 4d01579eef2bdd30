//! Activations and residual adds written as plain ops after a product
//! (`x.linear(w, b).gelu()`, `r + x.linear(w, b)`, `x.conv2d(..).relu()`)
//! join the product's store on a GPU (the fuser's tails, `gpu-core`'s
//! `gpu/tails.rs`): one forward launch, the values and gradients of a GPU
//! that does not fuse and of the CPU backends, finite-difference
//! gradients, and only the values a gradient reads kept in memory.

use crate::common;
use common::*;
use wgrad_autograd::{no_grad, Conv2dOptions, Device, Tensor, UnaryOp};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};

/// Every backend, and a GPU that does not fuse (first: the reference).
fn devices(test: &str) -> Vec<Device> {
    let mut devs = backends(test);
    if let Some(plain) = fresh_gpu_or_skip(test) {
        plain.set_fusion(false).unwrap();
        devs.insert(0, plain);
    }
    devs
}

/// The values of `f`'s result and the gradients of `inputs` (made by
/// `make` on `dev`) after a backward from the result times fixed weights.
fn run(dev: &Device, make: &dyn Fn(&Device) -> Vec<Tensor>, f: &dyn Fn(&[Tensor]) -> Tensor) -> Vec<Vec<f32>> {
    let inputs: Vec<Tensor> = make(dev).into_iter().map(Tensor::requires_grad_).collect();
    let y = f(&inputs);
    let weights = rand(&y.shape(), 9, 0.5, 1.5, dev);
    (&y * &weights).sum_all().backward();
    let mut out = vec![y.to_vec()];
    out.extend(inputs.iter().map(|t| t.grad().expect("a gradient").to_vec()));
    out
}

/// `f` gives the same values and gradients on every device.
fn same_everywhere(test: &str, what: &str, make: &dyn Fn(&Device) -> Vec<Tensor>, f: &dyn Fn(&[Tensor]) -> Tensor) {
    let devs = devices(test);
    let want = run(&devs[0], make, f);
    for dev in &devs[1..] {
        for (k, (got, want)) in run(dev, make, f).iter().zip(&want).enumerate() {
            let what =
                format!("{what} on {}: {}", dev.name(), if k == 0 { "values".into() } else { format!("gradient {k}") });
            assert_close(&what, got, want, 1e-5, 1e-6);
        }
    }
}

/// An input `[8, 16]` and a layer's weight `[12, 16]` and bias.
fn layer(dev: &Device) -> (Tensor, Tensor, Tensor) {
    (rand(&[8, 16], 1, -1.0, 1.0, dev), rand(&[12, 16], 2, -1.0, 1.0, dev), rand(&[12], 3, -1.0, 1.0, dev))
}

fn linear_inputs(xs: &[usize]) -> impl Fn(&Device) -> Vec<Tensor> + '_ {
    move |dev| vec![rand(xs, 1, -1.5, 1.5, dev), rand(&[11, 9], 2, -0.5, 0.5, dev), rand(&[11], 3, -0.5, 0.5, dev)]
}

#[test]
fn activations_after_a_linear_join_its_store_in_values_and_gradients() {
    let test = "activations_after_a_linear_join_its_store_in_values_and_gradients";
    let ops = [UnaryOp::Relu, UnaryOp::Gelu, UnaryOp::Silu, UnaryOp::Tanh, UnaryOp::LeakyRelu(0.1), UnaryOp::GeluTanh];
    for (i, xs) in [vec![7, 9], vec![2, 5, 9]].iter().enumerate() {
        for op in ops.iter().copied().skip(i).step_by(2) {
            let f = move |t: &[Tensor]| t[0].linear(&t[1], Some(&t[2])).unary(op);
            same_everywhere(test, &format!("{op:?}(linear) {xs:?}"), &linear_inputs(xs), &f);
        }
    }
}

#[test]
fn residuals_after_a_linear_join_its_store_in_values_and_gradients() {
    let test = "residuals_after_a_linear_join_its_store_in_values_and_gradients";
    for xs in [vec![7, 9], vec![2, 5, 9]] {
        let out: Vec<usize> = xs[..xs.len() - 1].iter().copied().chain([11]).collect();
        let make = |dev: &Device| {
            let mut t = linear_inputs(&xs)(dev);
            t.push(rand(&out, 4, -1.0, 1.0, dev));
            t
        };
        same_everywhere(test, &format!("r + linear {xs:?}"), &make, &|t| &t[3] + &t[0].linear(&t[1], Some(&t[2])));
        same_everywhere(test, &format!("linear + r {xs:?}"), &make, &|t| &t[0].linear(&t[1], Some(&t[2])) + &t[3]);
        // A residual that broadcasts stays an add of its own.
        let make_row = |dev: &Device| {
            let mut t = linear_inputs(&xs)(dev);
            t.push(rand(&[11], 4, -1.0, 1.0, dev));
            t
        };
        same_everywhere(test, &format!("row + linear {xs:?}"), &make_row, &|t| {
            &t[3] + &t[0].linear(&t[1], Some(&t[2]))
        });
    }
}

#[test]
fn a_relu_after_a_conv2d_joins_its_store_in_values_and_gradients() {
    let test = "a_relu_after_a_conv2d_joins_its_store_in_values_and_gradients";
    // Odd sizes, stride 2 with padding, groups.
    for (xs, ws, opts) in [
        ([2, 3, 9, 7], [5, 3, 3, 3], Conv2dOptions::new().padding(1)),
        ([3, 4, 8, 9], [6, 2, 3, 2], Conv2dOptions::new().stride(2).padding(1).groups(2)),
    ] {
        let make = |dev: &Device| {
            vec![rand(&xs, 1, -1.0, 1.0, dev), rand(&ws, 2, -0.5, 0.5, dev), rand(&[ws[0]], 3, -0.5, 0.5, dev)]
        };
        same_everywhere(test, &format!("relu(conv2d) {xs:?}"), &make, &|t| {
            t[0].conv2d(&t[1], Some(&t[2]), &opts).relu()
        });
    }
}

#[test]
fn fused_epilogues_match_finite_differences() {
    // Inputs on a grid keep the pre-activations off the ReLU's kink.
    gradcheck_inputs(
        "relu(linear)",
        |dev| vec![grid(&[4, 5], 1, 0.05, dev), grid(&[3, 5], 2, 0.0, dev), grid(&[3], 3, 0.0, dev)],
        |t| t[0].linear(&t[1], Some(&t[2])).relu(),
    );
    gradcheck("gelu(linear) + r", &[&[4, 5], &[3, 5], &[3], &[4, 3]], |t| {
        &t[3] + &t[0].linear(&t[1], Some(&t[2])).gelu()
    });
}

#[test]
fn one_forward_launch_keeping_only_what_a_gradient_reads() {
    let Some(dev) = fresh_gpu_or_skip("one_forward_launch_keeping_only_what_a_gradient_reads") else {
        return;
    };
    let (x, w, b) = layer(&dev);
    let r = rand(&[8, 12], 4, -1.0, 1.0, &dev);
    let conv_x = rand(&[2, 3, 6, 5], 5, -1.0, 1.0, &dev);
    let conv_w = rand(&[4, 3, 3, 3], 6, -1.0, 1.0, &dev);
    let opts = Conv2dOptions::new().padding(1);
    drop((r.to_vec(), conv_x.to_vec()));
    let launches = |f: &dyn Fn() -> Tensor| {
        dev.synchronize().unwrap();
        let before = dev.stats().dispatches;
        drop(f().to_vec());
        dev.stats().dispatches - before
    };
    assert_eq!(launches(&|| x.linear(&w, Some(&b)).relu()), 1, "relu(linear)");
    assert_eq!(launches(&|| x.linear(&w, Some(&b)).gelu()), 1, "gelu(linear)");
    assert_eq!(launches(&|| &r + &x.linear(&w, Some(&b))), 1, "r + linear");
    assert_eq!(launches(&|| conv_x.conv2d(&conv_w, None, &opts).relu()), 1, "relu(conv2d)");
    // Memory held with the result: under no_grad the result alone; with a
    // weight that needs a gradient, a GELU's input too (its derivative
    // reads it), a ReLU's not (its derivative reads its output).
    let wg = w.clone().requires_grad_();
    let held = |f: &dyn Fn() -> Tensor| bytes_held(&dev, f).1;
    let alone = held(&|| no_grad(|| x.linear(&wg, Some(&b)).gelu()));
    assert!(alone >= 8 * 12 * 4, "under no_grad, the result alone: {alone} bytes");
    assert_eq!(held(&|| x.linear(&wg, Some(&b)).gelu()), 2 * alone, "gelu: the result and its input");
    assert_eq!(held(&|| x.linear(&wg, Some(&b)).relu()), alone, "relu: the result alone");
    assert_eq!(held(&|| &r + &x.linear(&wg, Some(&b))), alone, "r + linear: the result alone");
}

#[test]
fn a_merged_epilogue_is_one_profiled_launch_named_by_both_ops() {
    let Some(dev) = fresh_gpu_or_skip("a_merged_epilogue_is_one_profiled_launch_named_by_both_ops") else {
        return;
    };
    let (x, w, b) = layer(&dev);
    drop(x.linear(&w, Some(&b)).relu().to_vec()); // warm-up
    let (y, p) = dev.profile(|| x.linear(&w, Some(&b)).relu().to_vec()).unwrap();
    assert_eq!(y, x.linear(&w, Some(&b)).relu().to_vec());
    assert_eq!(p.launches.len(), 1, "{p}");
    let by_op = p.by_op();
    assert!(by_op.iter().any(|(n, _)| n.split('+').any(|o| o == "linear") && n.contains("relu")), "{p}");
}

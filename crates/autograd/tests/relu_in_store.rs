//! `Tensor::linear_relu` and `Tensor::conv2d_relu`: the ReLU applied in the
//! product's store. The same values and gradients as `linear(..).relu()` /
//! `conv2d(..).relu()` on every backend (bit for bit: the same f32 sums
//! clamped at the same place), finite-difference gradients, and one launch
//! where the two-op form records two.

mod common;
use common::*;
use wgrad_autograd::{autocast, Conv2dOptions, DType, Tensor};
use wgrad_gpu_core::testing::fresh_gpu_or_skip;

#[test]
fn linear_relu_is_linear_then_relu_in_values_and_gradients() {
    for dev in backends("linear_relu_is_linear_then_relu_in_values_and_gradients") {
        for (xs, bias) in [(vec![7, 9], true), (vec![2, 5, 9], true), (vec![6, 9], false)] {
            let run = |fused: bool| {
                let x = rand(&xs, 1, -1.0, 1.0, &dev).requires_grad_();
                let w = rand(&[11, 9], 2, -0.5, 0.5, &dev).requires_grad_();
                let b = rand(&[11], 3, -0.5, 0.5, &dev).requires_grad_();
                let bias = bias.then_some(&b);
                let y = if fused { x.linear_relu(&w, bias) } else { x.linear(&w, bias).relu() };
                (y.square().sum_all()).backward();
                let grad = |t: &Tensor| t.grad().map(|g| g.to_vec());
                (y.to_vec(), grad(&x), grad(&w), grad(&b))
            };
            let (fused, plain) = (run(true), run(false));
            let what = format!("{xs:?} bias={bias} on {}", dev.name());
            assert!(fused.0.contains(&0.0) && fused.0.iter().any(|&v| v > 0.0), "{what}: both signs");
            assert_eq!(fused, plain, "{what}");
        }
    }
}

#[test]
fn linear_relu_gradients_match_finite_differences() {
    // Inputs on a grid keep the pre-activations off the ReLU's kink.
    gradcheck_inputs(
        "linear_relu",
        |dev| vec![grid(&[4, 5], 1, 0.05, dev), grid(&[3, 5], 2, 0.0, dev), grid(&[3], 3, 0.0, dev)],
        |t| t[0].linear_relu(&t[1], Some(&t[2])),
    );
}

#[test]
fn fused_linear_relu_is_one_launch() {
    let Some(dev) = fresh_gpu_or_skip("fused_linear_relu_is_one_launch") else { return };
    let x = rand(&[8, 16], 1, -1.0, 1.0, &dev);
    let (w, b) = (rand(&[12, 16], 2, -1.0, 1.0, &dev), rand(&[12], 3, -1.0, 1.0, &dev));
    let launches = |f: &dyn Fn() -> Tensor| {
        let before = dev.stats().dispatches;
        drop(f().to_vec());
        dev.stats().dispatches - before
    };
    assert_eq!(launches(&|| x.linear_relu(&w, Some(&b))), 1);
    assert_eq!(launches(&|| x.linear(&w, Some(&b)).relu()), 2);
    // Under autocast the two-op path runs (f16 result, like linear's).
    assert_eq!(autocast(|| x.linear_relu(&w, Some(&b))).dtype(), DType::F16);
}

#[test]
fn conv2d_relu_is_conv2d_then_relu_in_values_and_gradients() {
    for dev in backends("conv2d_relu_is_conv2d_then_relu_in_values_and_gradients") {
        // Odd sizes, stride 2 with padding, groups, with and without a bias.
        for (xs, ws, opts, bias) in [
            ([2, 3, 9, 7], [5, 3, 3, 3], Conv2dOptions::new().padding(1), true),
            ([3, 4, 8, 9], [6, 2, 3, 2], Conv2dOptions::new().stride(2).padding(1).groups(2), false),
        ] {
            let run = |fused: bool| {
                let x = rand(&xs, 1, -1.0, 1.0, &dev).requires_grad_();
                let w = rand(&ws, 2, -0.5, 0.5, &dev).requires_grad_();
                let b = rand(&[ws[0]], 3, -0.5, 0.5, &dev).requires_grad_();
                let bias = bias.then_some(&b);
                let y = if fused { x.conv2d_relu(&w, bias, &opts) } else { x.conv2d(&w, bias, &opts).relu() };
                (y.square().sum_all()).backward();
                let grad = |t: &Tensor| t.grad().map(|g| g.to_vec());
                (y.to_vec(), grad(&x), grad(&w), grad(&b))
            };
            let (fused, plain) = (run(true), run(false));
            let what = format!("{xs:?} * {ws:?} bias={bias} on {}", dev.name());
            assert!(fused.0.contains(&0.0) && fused.0.iter().any(|&v| v > 0.0), "{what}: both signs");
            assert_eq!(fused, plain, "{what}");
        }
    }
}

#[test]
fn conv2d_relu_gradients_match_finite_differences() {
    let opts = Conv2dOptions::new().padding(1);
    gradcheck_inputs(
        "conv2d_relu",
        |dev| vec![grid(&[2, 2, 4, 3], 1, 0.05, dev), grid(&[3, 2, 3, 3], 2, 0.0, dev), grid(&[3], 3, 0.0, dev)],
        |t| t[0].conv2d_relu(&t[1], Some(&t[2]), &opts),
    );
}

#[test]
fn fused_conv2d_relu_is_one_launch() {
    let Some(dev) = fresh_gpu_or_skip("fused_conv2d_relu_is_one_launch") else { return };
    let x = rand(&[2, 3, 8, 8], 1, -1.0, 1.0, &dev);
    let (w, b) = (rand(&[4, 3, 3, 3], 2, -1.0, 1.0, &dev), rand(&[4], 3, -1.0, 1.0, &dev));
    let opts = Conv2dOptions::new().padding(1);
    let launches = |f: &dyn Fn() -> Tensor| {
        let before = dev.stats().dispatches;
        drop(f().to_vec());
        dev.stats().dispatches - before
    };
    assert_eq!(launches(&|| x.conv2d_relu(&w, Some(&b), &opts)), 1);
    assert_eq!(launches(&|| x.conv2d(&w, Some(&b), &opts).relu()), 2);
    assert_eq!(autocast(|| x.conv2d_relu(&w, Some(&b), &opts)).dtype(), DType::F16);
}

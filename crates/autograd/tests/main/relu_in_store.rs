//! ReLU fused into a neighbour: `Tensor::linear_relu` and
//! `Tensor::conv2d_relu` apply it in the product's store, and
//! `Tensor::relu_max_pool2d` in the pooling (its argmax carries ReLU's
//! derivative). The same values and gradients as the two ops on every
//! backend (bit for bit: the same f32 sums clamped at the same place),
//! finite-difference gradients, and one launch where the two-op form
//! records two.

use crate::common;
use common::*;
use wgrad_autograd::{autocast, Conv2dOptions, DType, Device, Tensor};
use wgrad_gpu_core::testing::{fresh_gpu_or_skip, Rng};

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

/// Data with ties, zeros, negatives and, with `nan`, a NaN now and then:
/// every rule of the max pooling's scan meets the ReLU.
fn pool_data(shape: &[usize], seed: u64, nan: bool, dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = Rng::new(seed)
        .vec(n, -2.0, 2.0)
        .iter()
        .enumerate()
        .map(|(i, x)| if nan && i % 53 == 7 { f32::NAN } else { (x * 2.0).round() / 2.0 })
        .collect();
    Tensor::from_vec(&v, shape, dev)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::F32).to_vec().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn relu_max_pool2d_is_relu_then_max_pool2d_in_values_and_gradients() {
    type Case = (&'static [usize], (usize, usize), (usize, usize), (usize, usize), (usize, usize));
    let cases: &[Case] = &[
        (&[2, 3, 8, 8], (2, 2), (2, 2), (0, 0), (1, 1)), // MNIST's 2x2 windows
        (&[2, 2, 7, 9], (3, 3), (2, 2), (1, 1), (1, 1)), // padding, odd sizes
        (&[1, 2, 6, 5], (3, 3), (1, 1), (1, 1), (1, 1)), // overlapping windows
        (&[1, 2, 9, 8], (3, 2), (1, 2), (1, 0), (2, 2)), // dilation
        (&[3, 11, 10], (2, 2), (2, 2), (0, 0), (1, 1)),  // unbatched, a row in no window
    ];
    for dev in backends("relu_max_pool2d_is_relu_then_max_pool2d_in_values_and_gradients") {
        for (i, &(shape, k, s, p, d)) in cases.iter().enumerate() {
            for (dtype, nan) in [(DType::F32, false), (DType::F32, true), (DType::F16, false)] {
                let run = |fused: bool| {
                    // An F32 leaf; the F16 case pools its f16 cast (the f16 kernels both ways).
                    let x = pool_data(shape, 10 + i as u64, nan, &dev).requires_grad_();
                    let h = x.to_dtype(dtype);
                    let y = if fused { h.relu_max_pool2d(k, s, p, d) } else { h.relu().max_pool2d(k, s, p, d) };
                    assert_eq!(y.dtype(), dtype);
                    // Distinct upstream gradients, so a misrouted one shows.
                    let c = rand(&y.shape(), 20 + i as u64, 0.5, 1.5, &dev).to_dtype(dtype);
                    (&y * &c).sum_all().backward();
                    (bits(&y), bits(&x.grad().unwrap()), y.to_dtype(DType::F32).to_vec())
                };
                let (fused, plain) = (run(true), run(false));
                let what = format!("{shape:?} k{k:?} s{s:?} p{p:?} d{d:?} {dtype:?} nan={nan} on {}", dev.name());
                assert!(fused.2.contains(&0.0) && fused.2.iter().any(|&v| v > 0.0), "{what}: both kinds of window");
                assert_eq!(fused.0, plain.0, "{what}: values");
                assert_eq!(fused.1, plain.1, "{what}: input gradient");
            }
        }
    }
}

#[test]
fn relu_max_pool2d_gradients_match_finite_differences() {
    // Distinct values on a grid shifted off zero (no ties, no kinks), most
    // of them negative: some windows have no positive element.
    for (k, s, p) in [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1))] {
        gradcheck_inputs(
            &format!("relu_max_pool2d k{k:?} s{s:?} p{p:?}"),
            |dev| vec![grid(&[2, 2, 5, 6], 7, -2.55, dev)],
            move |t| t[0].relu_max_pool2d(k, s, p, (1, 1)),
        );
    }
}

#[test]
fn fused_relu_max_pool2d_is_one_launch_each_way() {
    let Some(dev) = fresh_gpu_or_skip("fused_relu_max_pool2d_is_one_launch_each_way") else { return };
    let x = rand(&[2, 3, 8, 8], 1, -1.0, 1.0, &dev).requires_grad_();
    let launches = |f: &dyn Fn() -> Tensor, backward: bool| {
        let before = dev.stats().dispatches;
        let y = f();
        drop(y.to_vec());
        let forward = dev.stats().dispatches - before;
        if backward {
            y.sum_all().backward();
            drop(x.grad().unwrap().to_vec());
        }
        (forward, dev.stats().dispatches - before - forward)
    };
    let pool = |t: &Tensor| t.max_pool2d((2, 2), (2, 2), (0, 0), (1, 1));
    let (fused, plain) =
        (launches(&|| x.relu_max_pool2d((2, 2), (2, 2), (0, 0), (1, 1)), true), launches(&|| pool(&x.relu()), true));
    assert_eq!(fused.0 + 1, plain.0, "forward: fused {fused:?}, two ops {plain:?}");
    assert_eq!(fused.1 + 1, plain.1, "backward: fused {fused:?}, two ops {plain:?}");
}

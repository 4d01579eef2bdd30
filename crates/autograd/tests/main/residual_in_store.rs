//! `Tensor::linear_residual`: `residual + x.linear(w, b)` with the residual
//! added in the product's store. The same values and gradients as the two
//! ops on every backend (bit for bit: the same f32 sums, the same adds),
//! finite-difference gradients, one launch where the two ops record two,
//! and the two-op path where the store cannot take the residual.

use crate::common;
use common::*;
use wgrad_autograd::{autocast, DType, Tensor};
use wgrad_gpu_core::testing::fresh_gpu_or_skip;

#[test]
fn linear_residual_is_linear_then_add_in_values_and_gradients() {
    for dev in backends("linear_residual_is_linear_then_add_in_values_and_gradients") {
        for (xs, bias) in [(vec![7, 9], true), (vec![2, 5, 9], true), (vec![6, 9], false)] {
            let mut ys = xs.clone();
            *ys.last_mut().unwrap() = 11;
            let run = |fused: bool| {
                let x = rand(&xs, 1, -1.0, 1.0, &dev).requires_grad_();
                let w = rand(&[11, 9], 2, -0.5, 0.5, &dev).requires_grad_();
                let b = rand(&[11], 3, -0.5, 0.5, &dev).requires_grad_();
                let r = rand(&ys, 4, -2.0, 2.0, &dev).requires_grad_();
                let bias = bias.then_some(&b);
                let y = if fused { x.linear_residual(&w, bias, &r) } else { &r + &x.linear(&w, bias) };
                (y.square().sum_all()).backward();
                let grad = |t: &Tensor| t.grad().map(|g| g.to_vec());
                (y.to_vec(), grad(&x), grad(&w), grad(&b), grad(&r))
            };
            let (fused, plain) = (run(true), run(false));
            assert!(fused.4.is_some(), "the residual gets a gradient");
            assert_eq!(fused, plain, "{xs:?} bias={bias} on {}", dev.name());
        }
    }
}

#[test]
fn linear_residual_gradients_match_finite_differences() {
    gradcheck_inputs(
        "linear_residual",
        |dev| {
            vec![
                rand(&[2, 3, 5], 1, -1.0, 1.0, dev),
                rand(&[4, 5], 2, -1.0, 1.0, dev),
                rand(&[4], 3, -1.0, 1.0, dev),
                rand(&[2, 3, 4], 4, -1.0, 1.0, dev),
            ]
        },
        |t| t[0].linear_residual(&t[1], Some(&t[2]), &t[3]),
    );
}

#[test]
fn fused_linear_residual_is_one_launch() {
    let Some(dev) = fresh_gpu_or_skip("fused_linear_residual_is_one_launch") else { return };
    let x = rand(&[8, 16], 1, -1.0, 1.0, &dev);
    let (w, b) = (rand(&[12, 16], 2, -1.0, 1.0, &dev), rand(&[12], 3, -1.0, 1.0, &dev));
    let r = rand(&[8, 12], 4, -1.0, 1.0, &dev);
    drop(r.to_vec());
    let launches = |f: &dyn Fn() -> Tensor| {
        let before = dev.stats().dispatches;
        drop(f().to_vec());
        dev.stats().dispatches - before
    };
    assert_eq!(launches(&|| x.linear_residual(&w, Some(&b), &r)), 1);
    assert_eq!(launches(&|| &r + &x.linear(&w, Some(&b))), 2);
}

#[test]
fn residuals_the_store_cannot_take_run_as_two_ops() {
    for dev in backends("residuals_the_store_cannot_take_run_as_two_ops") {
        let x = rand(&[4, 6], 1, -1.0, 1.0, &dev);
        let (w, b) = (rand(&[5, 6], 2, -1.0, 1.0, &dev), rand(&[5], 3, -1.0, 1.0, &dev));
        // A residual that broadcasts (one row for every row of the output).
        let row = rand(&[1, 5], 4, -1.0, 1.0, &dev);
        assert_eq!(x.linear_residual(&w, Some(&b), &row).to_vec(), (&row + &x.linear(&w, Some(&b))).to_vec());
        // Under autocast the product is f16 and the add promotes, as `+` does.
        let r = rand(&[4, 5], 5, -1.0, 1.0, &dev);
        let fused = autocast(|| x.linear_residual(&w, Some(&b), &r));
        let plain = autocast(|| &r + &x.linear(&w, Some(&b)));
        assert_eq!(fused.dtype(), plain.dtype());
        assert_eq!(fused.to_vec(), plain.to_vec());
        assert_eq!(x.linear(&w, None).dtype(), DType::F32);
    }
}

//! `Tensor::linear_relu`: the ReLU applied in the product's store. The same
//! values and gradients as `linear(..).relu()` on every backend (bit for
//! bit: the same f32 sums clamped at the same place), finite-difference
//! gradients, and one launch where the two-op form records two.

mod common;
use common::*;
use wgrad_autograd::{autocast, DType, Tensor};
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

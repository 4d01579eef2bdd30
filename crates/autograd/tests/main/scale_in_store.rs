//! `Tensor::matmul_scaled`: `scale · (a @ b)` with the scale applied to the
//! f32 sums in the product's store, its gradients scaled products too.
//! The same values and gradients as `matmul` then `mul_scalar` on every
//! backend (within an f32 rounding: one rounding instead of two),
//! finite-difference gradients through broadcast batches and 1-D operands,
//! and one launch where the two-op form records two, forward and backward.

use crate::common;
use common::*;
use wgrad_autograd::Tensor;
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};

#[test]
fn matmul_scaled_is_matmul_then_mul_scalar() {
    for dev in backends("matmul_scaled_is_matmul_then_mul_scalar") {
        // Plain, batched with a broadcast operand, 1-D on the right.
        for (sa, sb) in [(vec![7, 9], vec![9, 5]), (vec![3, 4, 6], vec![6, 10]), (vec![2, 5, 8], vec![8])] {
            let run = |fused: bool| {
                let a = rand(&sa, 1, -1.0, 1.0, &dev).requires_grad_();
                let b = rand(&sb, 2, -1.0, 1.0, &dev).requires_grad_();
                let y = if fused { a.matmul_scaled(&b, -0.35) } else { a.matmul(&b).mul_scalar(-0.35) };
                y.square().sum_all().backward();
                (y.to_vec(), a.grad().unwrap().to_vec(), b.grad().unwrap().to_vec())
            };
            let (fused, plain) = (run(true), run(false));
            let what = format!("{sa:?} @ {sb:?} on {}", dev.name());
            assert_close(&format!("{what}: values"), &fused.0, &plain.0, 1e-6, 1e-6);
            assert_close(&format!("{what}: grad a"), &fused.1, &plain.1, 1e-5, 1e-6);
            assert_close(&format!("{what}: grad b"), &fused.2, &plain.2, 1e-5, 1e-6);
        }
    }
}

#[test]
fn matmul_scaled_gradients_match_finite_differences() {
    gradcheck_inputs(
        "matmul_scaled",
        |dev| vec![rand(&[2, 3, 4], 1, -1.0, 1.0, dev), rand(&[4, 5], 2, -1.0, 1.0, dev)],
        |t| t[0].matmul_scaled(&t[1], 0.6),
    );
}

#[test]
fn scaled_product_is_one_launch_forward_and_backward() {
    let Some(dev) = fresh_gpu_or_skip("scaled_product_is_one_launch_forward_and_backward") else { return };
    let launches = |f: &dyn Fn() -> Tensor| {
        let before = dev.stats().dispatches;
        drop(f().to_vec());
        dev.stats().dispatches - before
    };
    let a = rand(&[8, 16], 1, -1.0, 1.0, &dev);
    let b = rand(&[16, 12], 2, -1.0, 1.0, &dev);
    assert_eq!(launches(&|| a.matmul_scaled(&b, 0.125)), 1);
    // The fuser merges a scale written as its own op into the store too
    // (an affine op of the unary table), forward; its backward would scale
    // the gradient in a launch of its own.
    assert_eq!(launches(&|| a.matmul(&b).mul_scalar(0.125)), 1);
    // Backward of a scaled product whose output gradient is given: two
    // gradient products, no scaling launches.
    let (a, b) = (a.requires_grad_(), b.requires_grad_());
    let y = a.matmul_scaled(&b, 0.125);
    let g = rand(&[8, 12], 3, -1.0, 1.0, &dev);
    drop(y.to_vec());
    drop(g.to_vec());
    let before = dev.stats().dispatches;
    y.backward_with(&g);
    drop(a.grad().unwrap().to_vec());
    drop(b.grad().unwrap().to_vec());
    assert_eq!(dev.stats().dispatches - before, 2, "dA and dB, each one scaled product");
}

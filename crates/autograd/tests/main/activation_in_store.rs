//! Any op of the unary table in a Linear's store:
//! `Tensor::linear_activation` (a feed-forward block's GELU) against
//! `linear` then the op, in values and gradients on every backend;
//! finite-difference gradients; one forward launch where the two ops take
//! two, the values before the op kept only when a gradient needs them.

use crate::common;
use common::*;
use wgrad_autograd::{autocast, no_grad, DType, Tensor, UnaryOp};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};

#[test]
fn linear_activation_is_linear_then_the_op_in_values_and_gradients() {
    let ops = [UnaryOp::Gelu, UnaryOp::Silu, UnaryOp::Tanh, UnaryOp::LeakyRelu(0.1), UnaryOp::GeluTanh];
    for dev in backends("linear_activation_is_linear_then_the_op_in_values_and_gradients") {
        for (i, (xs, bias)) in [(vec![7, 9], true), (vec![2, 5, 9], true), (vec![6, 9], false)].into_iter().enumerate()
        {
            for op in ops.iter().copied().skip(i).step_by(2) {
                let run = |fused: bool| {
                    let x = rand(&xs, 1, -1.5, 1.5, &dev).requires_grad_();
                    let w = rand(&[11, 9], 2, -0.5, 0.5, &dev).requires_grad_();
                    let b = rand(&[11], 3, -0.5, 0.5, &dev).requires_grad_();
                    let bias = bias.then_some(&b);
                    let y = if fused { x.linear_activation(&w, bias, op) } else { x.linear(&w, bias).unary(op) };
                    // Distinct upstream gradients, so a misrouted one shows.
                    let c = rand(&y.shape(), 4, 0.5, 1.5, &dev);
                    (&y * &c).sum_all().backward();
                    let grad = |t: &Tensor| t.grad().map_or_else(Vec::new, |g| g.to_vec());
                    [y.to_vec(), grad(&x), grad(&w), grad(&b)]
                };
                let (fused, plain) = (run(true), run(false));
                for (k, what) in ["values", "input gradient", "weight gradient", "bias gradient"].iter().enumerate() {
                    let what = format!("{op:?} {xs:?} bias={bias} on {}: {what}", dev.name());
                    assert_eq!(fused[k].len(), plain[k].len(), "{what}");
                    assert_close(&what, &fused[k], &plain[k], 1e-5, 1e-6);
                }
            }
        }
    }
}

#[test]
fn linear_activation_gradients_match_finite_differences() {
    for op in [UnaryOp::Gelu, UnaryOp::Tanh] {
        gradcheck(&format!("linear_activation {op:?}"), &[&[4, 5], &[3, 5], &[3]], |t| {
            t[0].linear_activation(&t[1], Some(&t[2]), op)
        });
    }
}

#[test]
fn fused_linear_activation_is_one_launch_and_keeps_what_its_gradient_needs() {
    let Some(dev) = fresh_gpu_or_skip("fused_linear_activation_is_one_launch_and_keeps_what_its_gradient_needs") else {
        return;
    };
    let x = rand(&[8, 16], 1, -1.0, 1.0, &dev);
    let (w, b) = (rand(&[12, 16], 2, -1.0, 1.0, &dev), rand(&[12], 3, -1.0, 1.0, &dev));
    let launches = |f: &dyn Fn() -> Tensor| {
        dev.synchronize().unwrap();
        let before = dev.stats().dispatches;
        drop(f().to_vec());
        dev.stats().dispatches - before
    };
    let gelu = UnaryOp::Gelu;
    assert_eq!(launches(&|| x.linear_activation(&w, Some(&b), gelu)), 1);
    assert_eq!(launches(&|| x.linear(&w, Some(&b)).gelu()), 2);
    // With a weight that needs a gradient the values before the op stay
    // alive with the result (its graph node holds them); under no_grad
    // they are never stored.
    let wg = w.clone().requires_grad_();
    let held = |f: &dyn Fn() -> Tensor| {
        dev.synchronize().unwrap();
        let before = dev.stats().bytes_live;
        let y = f();
        dev.synchronize().unwrap();
        let bytes = dev.stats().bytes_live - before;
        (y, bytes)
    };
    // (Buffers come from a pool in rounded sizes: compare with the result's.)
    let (y, skipped) = held(&|| no_grad(|| x.linear_activation(&wg, Some(&b), gelu)));
    assert!(skipped >= 8 * 12 * 4, "under no_grad, the result alone: {skipped} bytes");
    drop(y);
    let (y, kept) = held(&|| x.linear_activation(&wg, Some(&b), gelu));
    assert_eq!(kept, 2 * skipped, "the result and the values before the op");
    drop(y);
    // Under autocast the two-op path runs (f16 result, like linear's).
    assert_eq!(autocast(|| x.linear_activation(&w, Some(&b), gelu)).dtype(), DType::F16);
}

//! A graph node keeps only what its backward rule reads (`graph::Saves`;
//! a unary op's, what its derivative's row names): the intermediates of
//! `relu(a * b + c)` that no rule reads are freed with the forward pass, so
//! the fuser writes only the result, as under `no_grad`; the gradients are
//! those of the CPU reference.

use crate::common;
use common::*;
use wgrad_autograd::{no_grad, Device, Tensor};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};

/// `relu(a * b + c)` and the gradients of its sum times fixed weights.
fn chain(dev: &Device) -> (Tensor, Vec<Vec<f32>>) {
    let shape = [64, 64];
    let a = rand(&shape, 1, -1.0, 1.0, dev).requires_grad_();
    let b = rand(&shape, 2, -1.0, 1.0, dev).requires_grad_();
    let c = rand(&shape, 3, -0.5, 0.5, dev).requires_grad_();
    let y = (&(&a * &b) + &c).relu();
    let weights = rand(&shape, 4, 0.5, 1.5, dev);
    (&y * &weights).sum_all().backward();
    let grads = [&a, &b, &c].iter().map(|t| t.grad().expect("a gradient").to_vec()).collect();
    (y, grads)
}

#[test]
fn intermediates_no_rule_reads_are_not_kept() {
    let Some(dev) = fresh_gpu_or_skip("intermediates_no_rule_reads_are_not_kept") else {
        return;
    };
    let shape = [64, 64];
    let a = rand(&shape, 1, -1.0, 1.0, &dev).requires_grad_();
    let b = rand(&shape, 2, -1.0, 1.0, &dev);
    let c = rand(&shape, 3, -0.5, 0.5, &dev);
    let (y, alone) = bytes_held(&dev, || no_grad(|| (&(&a * &b) + &c).relu()));
    assert!(alone >= 64 * 64 * 4, "under no_grad, the result alone: {alone} bytes");
    drop(y);
    // The product's rule reads a and b (held by the caller anyway), the
    // add's nothing, the ReLU's its output: a * b and a * b + c are not
    // kept, so they are never stored (it was three results' bytes).
    let (y, kept) = bytes_held(&dev, || (&(&a * &b) + &c).relu());
    assert_eq!(kept, alone, "with a gradient to come, still the result alone");
    // A unary rule keeps what its derivative reads: an affine map nothing
    // but its input (a leaf here), tanh and exp their outputs. Of
    // `exp(tanh(2a + c))` the tanh's and the exp's results stay (it was
    // four results' bytes: every rule kept its input and its output).
    let chain = || (&a.mul_scalar(2.0) + &c).tanh().exp();
    let (z, alone) = bytes_held(&dev, || no_grad(chain));
    drop(z);
    let (z, kept) = bytes_held(&dev, chain);
    assert_eq!(kept, 2 * alone, "exp(tanh(2a + c)): the tanh's and the exp's results");
    drop(z);
    // The gradient reaches a through the ReLU's output.
    y.sum_all().backward();
    let want: Vec<f32> = {
        let (av, bv, cv) = (a.to_vec(), b.to_vec(), c.to_vec());
        (0..av.len()).map(|i| if av[i] * bv[i] + cv[i] > 0.0 { bv[i] } else { 0.0 }).collect()
    };
    assert_eq!(a.grad().unwrap().to_vec(), want);
}

#[test]
fn gradients_through_freed_intermediates_match_the_reference() {
    let reference = chain(&Device::cpu_reference());
    for dev in backends("gradients_through_freed_intermediates_match_the_reference") {
        let (y, grads) = chain(&dev);
        assert_close(&format!("values on {}", dev.name()), &y.to_vec(), &reference.0.to_vec(), 1e-6, 1e-6);
        for (k, (g, want)) in grads.iter().zip(&reference.1).enumerate() {
            assert_close(&format!("gradient {k} on {}", dev.name()), g, want, 1e-6, 1e-6);
        }
    }
}

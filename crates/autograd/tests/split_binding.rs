//! A Linear layer's forward and backward on a GPU whose binding limit is
//! lowered to 4 KiB (`Device::set_max_binding_bytes`): the input, output
//! and gradients are past it, so the products split (rows, split-K) and
//! the bias gradient's sum splits; every value matches the unsplit GPU and
//! the CPU backend.

mod common;
use common::rand;
use wgrad_autograd::Device;
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip, gpu_or_skip};

/// y = x Wᵀ + b for x [3, 20, 24], W [30, 24]: y, then the gradients of
/// x, W and b for an upstream gradient of y, and the launches taken.
fn linear_step(dev: &Device) -> (Vec<Vec<f32>>, u64) {
    let x = rand(&[3, 20, 24], 1, -1.0, 1.0, dev).requires_grad_();
    let w = rand(&[30, 24], 2, -1.0, 1.0, dev).requires_grad_();
    let b = rand(&[30], 3, -1.0, 1.0, dev).requires_grad_();
    let gy = rand(&[3, 20, 30], 4, -1.0, 1.0, dev);
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let y = x.linear(&w, Some(&b));
    y.backward_with(&gy);
    dev.flush().unwrap();
    let launches = dev.stats().dispatches - before;
    let values = [&y, &x.grad().unwrap(), &w.grad().unwrap(), &b.grad().unwrap()].map(|t| t.to_vec());
    (values.to_vec(), launches)
}

#[test]
fn linear_forward_and_backward_split_past_the_binding_limit() {
    let Some(small) = fresh_gpu_or_skip("linear_forward_and_backward_split_past_the_binding_limit") else { return };
    small.set_max_binding_bytes(Some(4096)).unwrap();
    let whole = gpu_or_skip("linear split").unwrap();
    let (split, launches) = linear_step(&small);
    let (unsplit, _) = linear_step(&whole);
    let (cpu, _) = linear_step(&Device::cpu());
    // Unsplit: the forward product, two gradient products, the bias sum.
    assert!(launches > 4, "{launches} launches: nothing split");
    for (i, what) in ["y", "dx", "dW", "db"].iter().enumerate() {
        assert_close(&format!("{what} vs unsplit"), &split[i], &unsplit[i], 1e-5, 1e-4);
        assert_close(&format!("{what} vs CPU"), &split[i], &cpu[i], 1e-5, 1e-4);
    }
}

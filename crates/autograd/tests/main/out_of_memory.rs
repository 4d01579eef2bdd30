//! Out of memory is a typed error a program catches and recovers from: the
//! budget check refuses an allocation before anything is written, `try_run`
//! returns the error, the failed step's buffers are released, and a smaller
//! step on the same device gives the same numbers as on a fresh one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use wgrad_autograd::{try_run, Device, Error, Tensor};
use wgrad_gpu_core::testing::{fresh_backends, fresh_gpu_or_skip};

/// One step of a two-layer MLP on `batch` rows; returns (loss, grad of w1).
fn step(batch: usize, w1: &Tensor, w2: &Tensor, dev: &Device) -> (f32, Vec<f32>) {
    let x = Tensor::randn(&[batch, 64], 3, dev);
    let loss = x.matmul(w1).relu().matmul(w2).square().mean_all();
    loss.backward();
    let g = w1.grad().unwrap().to_vec();
    w1.zero_grad();
    (loss.item(), g)
}

fn params(dev: &Device) -> (Tensor, Tensor) {
    (Tensor::randn(&[64, 256], 1, dev).requires_grad_(), Tensor::randn(&[256, 8], 2, dev).requires_grad_())
}

#[test]
fn a_step_past_the_budget_fails_cleanly_and_a_smaller_one_runs() {
    for dev in fresh_backends("a_step_past_the_budget_fails_cleanly_and_a_smaller_one_runs") {
        let (w1, w2) = params(&dev);
        let held = dev.stats().bytes_live;
        // 8 MiB: the 16,384-row step needs 16 MiB for one activation.
        dev.set_memory_budget(Some(held + (8 << 20)));
        let err = try_run(|| step(16_384, &w1, &w2, &dev)).expect_err("over the budget");
        match &err {
            Error::OutOfMemory { requested, .. } => assert!(*requested >= 16 << 20, "{err}"),
            other => panic!("{}: expected out of memory, got {other}", dev.name()),
        }
        assert!(err.to_string().contains("memory budget"), "{err}");
        dev.flush().unwrap();
        assert_eq!(dev.stats().bytes_live, held, "{}: the failed step's buffers are released", dev.name());

        let small = try_run(|| step(32, &w1, &w2, &dev)).expect("fits");
        let fresh = if dev.is_gpu() { Device::gpu().unwrap() } else { Device::cpu() };
        let (f1, f2) = params(&fresh);
        assert_eq!(small, step(32, &f1, &f2, &fresh), "{}: as on a fresh device", dev.name());
    }
}

#[test]
fn panics_that_are_not_wgrad_errors_go_on() {
    let caught = catch_unwind(AssertUnwindSafe(|| try_run(|| panic!("a bug in user code"))));
    let payload = caught.expect_err("try_run must not swallow other panics");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"a bug in user code"));
}

#[test]
fn a_bad_index_reported_at_the_readback_is_an_error_too() {
    let Some(dev) = fresh_gpu_or_skip("a_bad_index_reported_at_the_readback_is_an_error_too") else { return };
    let table = Tensor::randn(&[5, 4], 2, &dev);
    let ids = Tensor::from_u32(&[9], &[1], &dev);
    let r = try_run(|| ids.embedding(&table, None).sum_all().item());
    assert!(matches!(r, Err(Error::IndexOutOfRange { index: 9, size: 5, .. })), "{r:?}");
    assert!(try_run(|| Tensor::ones(&[3], &dev).sum_all().item()).unwrap() == 3.0);
}

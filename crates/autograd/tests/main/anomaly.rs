//! Anomaly detection names the op where a NaN or infinity is born, forward
//! or backward, on every backend, and stays quiet for values that enter as
//! data (masks) or when it is off.

use crate::common;
use common::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use wgrad_autograd::{detect_anomaly, is_anomaly_enabled, AnomalyGuard, Tensor};

/// The panic message of `f`, or `None` when it returns.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    let err = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(err.downcast_ref::<String>().cloned().unwrap_or_else(|| err.downcast_ref::<&str>().unwrap().to_string()))
}

#[test]
fn a_forward_nan_names_its_op() {
    for dev in backends("a_forward_nan_names_its_op") {
        let x = Tensor::from_vec(&[4.0, -1.0, 9.0], &[3], &dev).requires_grad_();
        let msg = panic_message(|| detect_anomaly(|| drop((&x * 2.0).sqrt().sum_all()))).expect("sqrt(-2) is NaN");
        assert!(msg.contains("`sqrt` (forward) produced NaN"), "{}: {msg}", dev.name());
        assert!(msg.contains("flat index 1 of shape [3]"), "{}: {msg}", dev.name());
    }
}

#[test]
fn a_backward_infinity_names_the_forward_op() {
    for dev in backends("a_backward_infinity_names_the_forward_op") {
        // sqrt(0) = 0 is fine; its derivative 1 / (2·sqrt(0)) is not.
        let x = Tensor::from_vec(&[0.0, 1.0], &[2], &dev).requires_grad_();
        let y = detect_anomaly(|| x.sqrt().sum_all());
        assert_eq!(y.item(), 1.0);
        let msg = panic_message(|| detect_anomaly(|| y.backward())).expect("the gradient at 0 is infinite");
        assert!(
            msg.contains("the backward of `sqrt` (the gradient of its input 0) produced Inf"),
            "{}: {msg}",
            dev.name()
        );
    }
}

#[test]
fn infinities_that_enter_as_data_are_not_anomalies() {
    for dev in backends("infinities_that_enter_as_data_are_not_anomalies") {
        let scores = Tensor::from_vec(&[0.5, 1.0, -2.0, 3.0], &[2, 2], &dev).requires_grad_();
        let mask = Tensor::from_vec(&[0.0, f32::NEG_INFINITY, 0.0, 0.0], &[2, 2], &dev);
        let probs = detect_anomaly(|| {
            let p = (&scores + &mask).softmax(-1);
            (&p * &p).sum_all().backward();
            p
        });
        assert_eq!(probs.to_vec()[..2], [1.0, 0.0], "{}", dev.name());
        assert!(scores.grad().unwrap().to_vec().iter().all(|g| g.is_finite()));
    }
}

#[test]
fn detection_is_off_by_default_and_guards_nest() {
    assert!(!is_anomaly_enabled(), "tests run without {}", wgrad_autograd::anomaly::ENV_VAR);
    for dev in backends("detection_is_off_by_default_and_guards_nest") {
        let x = Tensor::from_vec(&[-1.0], &[1], &dev);
        assert!(x.sqrt().item().is_nan(), "off: the NaN goes through");
        detect_anomaly(|| {
            assert!(is_anomaly_enabled());
            {
                let _off = AnomalyGuard::new(false);
                assert!(x.sqrt().item().is_nan(), "switched off inside");
            }
            assert!(panic_message(|| drop(x.sqrt())).is_some(), "on again after the inner guard");
        });
        assert!(!is_anomaly_enabled());
    }
}

#[test]
fn a_kernel_inside_a_backward_pass_is_named_with_its_forward_op() {
    for dev in backends("a_kernel_inside_a_backward_pass_is_named_with_its_forward_op") {
        // Each path's gradient is 3e38; their sum, formed while
        // backpropagating, overflows.
        let x = Tensor::from_vec(&[1e-30, 2e-30], &[2], &dev).requires_grad_();
        let loss = detect_anomaly(|| (&x * 3e38).sum_all() + (&x * 3e38).sum_all());
        let msg = panic_message(|| detect_anomaly(|| loss.backward())).expect("3e38 + 3e38 overflows");
        assert!(msg.contains("`add` (in the backward of `"), "{}: {msg}", dev.name());
        assert!(msg.contains("produced Inf"), "{}: {msg}", dev.name());
    }
}

//! Class ids and indices past their dimension are errors that name the op,
//! the value and the valid range (PyTorch's device-side asserts): a panic
//! from the op on the CPU backend, an error from the next readback on a GPU,
//! after which the device works on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use wgrad_autograd::{CrossEntropyOptions, Device, Error, Reduction, Tensor};
use wgrad_gpu_core::testing::fresh_backends;

/// The error `f`'s result reports: from the op itself (CPU: a panic) or
/// from reading the result (GPU).
fn reported(dev: &Device, f: impl FnOnce() -> Tensor) -> String {
    if dev.is_gpu() {
        let y = f();
        match y.try_to_vec() {
            Err(e @ Error::IndexOutOfRange { .. }) => e.to_string(),
            other => panic!("expected an index error from the readback, got {other:?}"),
        }
    } else {
        let err = catch_unwind(AssertUnwindSafe(|| drop(f()))).expect_err("the op must refuse the index");
        err.downcast_ref::<String>().expect("a formatted message").clone()
    }
}

#[test]
fn bad_class_ids_and_embedding_ids_name_the_op_value_and_range() {
    // A GPU of its own: the error it records must not reach other tests' reads.
    for dev in fresh_backends("bad_class_ids_and_embedding_ids_name_the_op_value_and_range") {
        let logits = Tensor::randn(&[3, 10], 1, &dev).requires_grad_();
        let target = Tensor::from_u32(&[1, 12, 0], &[3], &dev);
        let msg = reported(&dev, || logits.cross_entropy(&target, &CrossEntropyOptions::default()));
        assert!(msg.contains("cross_entropy: index 12 is out of range for a dimension of size 10"), "{msg}");

        let log_probs = logits.log_softmax(1);
        let msg = reported(&dev, || log_probs.nll_loss(&target, None, None, Reduction::Mean));
        assert!(msg.contains("nll_loss: index 12 is out of range for a dimension of size 10"), "{msg}");

        let table = Tensor::randn(&[5, 4], 2, &dev);
        let ids = Tensor::from_u32(&[4, 0, 7], &[3], &dev);
        let msg = reported(&dev, || ids.embedding(&table, None));
        assert!(msg.contains("index 7 is out of range for a dimension of size 5 (valid indices are 0..5)"), "{msg}");

        // PyTorch's ignore index (-100, past every class) is not an error,
        // and after the reports the device computes on.
        let ignored = Tensor::from_u32(&[1, -100i32 as u32, 0], &[3], &dev);
        let opts = CrossEntropyOptions { ignore_index: Some(-100i32 as u32), ..Default::default() };
        let ce = logits.cross_entropy(&ignored, &opts);
        let nll = log_probs.nll_loss(&ignored, None, Some(-100i32 as u32), Reduction::Mean);
        assert!((ce.item() - nll.item()).abs() < 1e-5, "{}", dev.name());
        ce.backward();
        assert!(logits.grad().unwrap().to_vec().iter().all(|g| g.is_finite()));
    }
}

//! `normalize` and `cosine_similarity`: finite-difference gradients (p = 1,
//! 2, 3; broadcast operands), on the CPU backend and the GPU; bad arguments
//! panic naming the op.

use crate::common;
use common::*;
use wgrad_autograd::Tensor;

#[test]
fn normalize_and_cosine_similarity_gradients() {
    for (p, dim) in [(2.0, 1), (2.0, -1), (3.0, 0)] {
        gradcheck(&format!("normalize p {p} dim {dim}"), &[&[3, 4]], move |x| x[0].normalize(p, dim, 1e-12));
    }
    // p = 1 away from 0, where |x| has no derivative.
    gradcheck_inputs("normalize p 1", |dev| vec![grid(&[2, 5], 80, 0.05, dev)], |x| x[0].normalize(1.0, 1, 1e-12));
    gradcheck("cosine_similarity", &[&[3, 5], &[3, 5]], |x| x[0].cosine_similarity(&x[1], 1, 1e-8));
    gradcheck("cosine_similarity broadcast", &[&[4, 3], &[1, 3]], |x| x[0].cosine_similarity(&x[1], -1, 1e-8));
}

#[test]
fn bad_arguments_panic_naming_the_op() {
    let x = Tensor::zeros(&[2, 3], &wgrad_autograd::Device::cpu());
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(x.normalize(0.0, 1, 1e-12))))
        .expect_err("a panic");
    let e = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(e.contains("normalize") && e.contains("positive"), "{e}");
}

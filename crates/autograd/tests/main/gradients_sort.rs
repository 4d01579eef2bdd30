//! `sort` and `topk` values: finite-difference gradients (distinct values,
//! so a small step never reorders them), on the CPU backend and the GPU;
//! F16 values sorted exactly; `argsort` is not differentiable; bad
//! arguments panic naming the op.

use crate::common;
use common::*;
use wgrad_autograd::{DType, Tensor};

#[test]
fn sort_and_topk_gradients() {
    for (dim, descending) in [(-1, false), (0, true), (1, true)] {
        gradcheck_inputs(
            &format!("sort dim {dim} descending {descending}"),
            |dev| vec![grid(&[3, 5, 4], 70, 0.0, dev)],
            move |x| x[0].sort(dim, descending).0,
        );
    }
    for (k, dim, largest) in [(2, -1, true), (3, 0, false), (5, 1, true)] {
        gradcheck_inputs(
            &format!("topk {k} dim {dim} largest {largest}"),
            |dev| vec![grid(&[4, 5], 71, 0.0, dev)],
            move |x| x[0].topk(k, dim, largest).0,
        );
    }
}

#[test]
fn f16_values_sort_exactly() {
    for dev in backends("sort f16") {
        let v: Vec<f32> = (0..30).map(|i| half::f16::from_f32((i as f32 * 1.37).sin() * 9.0).to_f32()).collect();
        let x = Tensor::from_vec(&v, &[3, 10], &dev);
        let (v32, i32_) = x.sort(1, true);
        let (v16, i16_) = x.to_dtype(DType::F16).sort(1, true);
        assert_eq!(v16.dtype(), DType::F16);
        assert_eq!(v16.to_dtype(DType::F32).to_vec(), v32.to_vec(), "{}", dev.name());
        assert_eq!(i16_.to_vec_u32(), i32_.to_vec_u32(), "{}", dev.name());
        let (t16, _) = x.to_dtype(DType::F16).topk(4, -1, false);
        assert_eq!(t16.to_dtype(DType::F32).to_vec(), x.topk(4, -1, false).0.to_vec(), "{}", dev.name());
    }
}

#[test]
fn argsort_is_not_differentiable_and_bad_arguments_panic() {
    let dev = wgrad_autograd::Device::cpu();
    let x = Tensor::from_vec(&[3.0, 1.0, 2.0], &[3], &dev).requires_grad_();
    assert!(!x.argsort(0, false).requires_grad());
    let msg = |f: &dyn Fn()| {
        let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("a panic");
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    let e = msg(&|| drop(x.topk(4, 0, true)));
    assert!(e.contains("topk") && e.contains("k (4)"), "{e}");
    let e = msg(&|| drop(x.sort(1, false)));
    assert!(e.contains("argsort"), "{e}");
}

//! `Tensor::cumsum`: finite-difference gradients along every dim (negative
//! ones, a transposed view), on the CPU backend and the GPU; F16 input
//! summed in f32 and rounded once; bad dims panic naming the op.

use crate::common;
use common::*;
use half::f16;
use wgrad_autograd::{DType, Tensor};

#[test]
fn cumsum_gradients() {
    for dim in [0, 1, 2, -1, -3] {
        gradcheck(&format!("cumsum dim {dim}"), &[&[3, 4, 5]], move |x| x[0].cumsum(dim));
    }
    gradcheck("cumsum of a transposed view", &[&[4, 3]], |x| x[0].transpose(0, 1).cumsum(1));
    gradcheck("cumsum 1-D", &[&[9]], |x| x[0].cumsum(0));
}

#[test]
fn f16_input_is_summed_in_f32_and_rounded_once() {
    for dev in backends("cumsum f16") {
        let v: Vec<f32> = (0..24).map(|i| f16::from_f32((i as f32 * 0.61).cos() * 7.0).to_f32()).collect();
        let y32 = Tensor::from_vec(&v, &[4, 6], &dev).cumsum(1);
        let y16 = Tensor::from_vec(&v, &[4, 6], &dev).to_dtype(DType::F16).cumsum(1);
        assert_eq!(y16.dtype(), DType::F16);
        let want: Vec<f32> = y32.to_vec().iter().map(|&v| f16::from_f32(v).to_f32()).collect();
        assert_eq!(y16.to_dtype(DType::F32).to_vec(), want, "{}", dev.name());
    }
}

#[test]
fn a_bad_dim_panics_naming_the_op() {
    let x = Tensor::zeros(&[2, 3], &wgrad_autograd::Device::cpu());
    let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(x.cumsum(2)))).expect_err("a panic");
    let e = e.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(e.contains("cumsum"), "{e}");
}

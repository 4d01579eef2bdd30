//! Integer tensors as PyTorch users write them: casts between U32, F32 and
//! F16, comparisons of class ids giving F32 masks, and accuracy as the mean
//! of a mask, on every backend.

use crate::common;
use common::*;
use wgrad_autograd::{BinaryOp, DType, Tensor};

#[test]
fn accuracy_is_the_mean_of_a_comparison_of_class_ids() {
    for dev in backends("accuracy_is_the_mean_of_a_comparison_of_class_ids") {
        let logits = Tensor::from_vec(&[0.1, 2.0, -1.0, 3.0, 0.0, 0.5, -2.0, -1.0, 4.0, 1.0, 1.5, 0.2], &[4, 3], &dev);
        let labels = Tensor::from_u32(&[1, 2, 2, 1], &[4], &dev);
        let pred = logits.argmax(1, false);
        assert_eq!(pred.to_vec_u32(), [1, 0, 2, 1]);
        let correct = pred.eq(&labels);
        assert_eq!(correct.dtype(), DType::F32);
        assert_eq!(correct.to_vec(), [1.0, 0.0, 1.0, 1.0], "{}", dev.name());
        assert_eq!(correct.mean_all().item(), 0.75, "{}", dev.name());
        // Mixed operands and other comparisons widen the same way.
        assert_eq!(pred.gt(&Tensor::from_vec(&[0.5], &[1], &dev)).to_vec(), [1.0, 0.0, 1.0, 1.0]);
        assert_eq!(labels.float().sum_all().item(), 6.0);
    }
}

#[test]
fn casts_between_u32_and_floats_follow_rusts_as() {
    for dev in backends("casts_between_u32_and_floats_follow_rusts_as") {
        let x = Tensor::from_vec(&[-1.5, 0.0, 0.9, 2.5, 7.99, 5e9, f32::NAN], &[7], &dev);
        let u = x.to_dtype(DType::U32);
        assert_eq!(u.dtype(), DType::U32);
        assert_eq!(u.to_vec_u32(), [0, 0, 0, 2, 7, u32::MAX, 0], "{}", dev.name());
        let ids = Tensor::from_u32(&[0, 3, 16_777_217, u32::MAX], &[2, 2], &dev);
        assert_eq!(ids.to_dtype(DType::F32).to_vec(), [0.0, 3.0, 16_777_216.0, 4_294_967_296.0]);
        // Through f16: 2049 is not an f16 and rounds to even (2048).
        let h = Tensor::from_u32(&[1, 2049, 70_000], &[3], &dev).to_dtype(DType::F16);
        assert_eq!(h.dtype(), DType::F16);
        assert_eq!(h.to_vec(), [1.0, 2048.0, f32::INFINITY]);
        assert_eq!(h.to_dtype(DType::U32).to_vec_u32(), [1, 2048, u32::MAX]);
        // A strided view casts its own elements.
        assert_eq!(ids.t().to_dtype(DType::F32).to_vec(), [0.0, 16_777_216.0, 3.0, 4_294_967_296.0]);
    }
}

#[test]
fn integer_results_have_no_gradient_and_arithmetic_asks_for_float() {
    for dev in backends("integer_results_have_no_gradient_and_arithmetic_asks_for_float") {
        let x = rand(&[3, 4], 1, -5.0, 5.0, &dev).requires_grad_();
        let u = x.to_dtype(DType::U32);
        assert!(!u.requires_grad());
        assert!(!u.to_dtype(DType::F32).requires_grad());
        let err = u.try_binary(BinaryOp::Add, &u).unwrap_err().to_string();
        assert!(err.contains("got U32 (convert with .float())"), "{err}");
        let sum = (&u.float() + &x).sum_all();
        sum.backward();
        assert_eq!(x.grad().unwrap().to_vec(), vec![1.0; 12], "the cast is a constant");
    }
}

//! Elementwise ops on f16 tensors: F16 in, F16 out (PyTorch's dtype),
//! computed in f32 and rounded once; gradients F16; f16 with f32 promotes
//! to f32; under autocast the policy's f32 ops (exp, log) widen. Dropout
//! on f16 keeps f16 with the f32 input's mask. On a GPU the widen, the op
//! and the rounding are one fused kernel.

use crate::common;
use common::*;
use wgrad_autograd::{autocast, DType, Generator, Tensor};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};

/// A named tensor function.
type Case = (&'static str, Box<dyn Fn(&Tensor) -> Tensor>);

/// `t` rounded to f16 and back.
fn round16(t: &Tensor) -> Tensor {
    t.detach().to_dtype(DType::F16).to_dtype(DType::F32)
}

#[test]
fn unary_ops_on_f16_round_the_f32_result_once() {
    for dev in backends("unary_ops_on_f16_round_the_f32_result_once") {
        let x = rand(&[3, 37], 30, -4.0, 4.0, &dev);
        let h = x.to_dtype(DType::F16);
        let ops: [Case; 6] = [
            ("relu", Box::new(|t| t.relu())),
            ("tanh", Box::new(|t| t.tanh())),
            ("sigmoid", Box::new(|t| t.sigmoid())),
            ("gelu", Box::new(|t| t.gelu())),
            ("exp", Box::new(|t| t.exp())),
            ("affine", Box::new(|t| t.affine(3.0, -1.0))),
        ];
        for (what, f) in ops {
            let y = f(&h);
            assert_eq!(y.dtype(), DType::F16, "{what} keeps f16");
            let want = round16(&f(&round16(&x)));
            assert_close(&format!("{what} on {}", dev.name()), &y.to_vec(), &want.to_vec(), 1e-3, 1e-6);
        }
        // The policy's f32 ops widen under autocast.
        autocast(|| assert_eq!(h.exp().dtype(), DType::F32, "exp widens under autocast"));
        autocast(|| assert_eq!(h.relu().dtype(), DType::F16, "relu stays f16 under autocast"));
    }
}

#[test]
fn unary_gradients_on_f16_follow_the_f32_rule() {
    for dev in backends("unary_gradients_on_f16_follow_the_f32_rule") {
        let a = rand(&[5, 9], 31, -3.0, 3.0, &dev).requires_grad_();
        let w = rand(&[5, 9], 32, -1.0, 1.0, &dev);
        let y = a.to_dtype(DType::F16).tanh();
        (&y.to_dtype(DType::F32) * &w).sum_all().backward();
        // dtanh = 1 - y², with y the f16 output and the f16-rounded gradient.
        let yr = round16(&round16(&a).tanh());
        let want = round16(&(&round16(&w) * &(&Tensor::ones(&[5, 9], &dev) - &(&yr * &yr))));
        assert_close(&format!("on {}", dev.name()), &a.grad().unwrap().to_vec(), &want.to_vec(), 2e-3, 1e-5);
    }
}

#[test]
fn binary_ops_on_f16_broadcast_and_pass_f16_gradients() {
    for dev in backends("binary_ops_on_f16_broadcast_and_pass_f16_gradients") {
        let a = rand(&[4, 7], 33, -2.0, 2.0, &dev).requires_grad_();
        let b = rand(&[1, 7], 34, 0.5, 2.0, &dev).requires_grad_();
        for (what, op) in [("add", 0), ("mul", 1), ("div", 2), ("maximum", 3)] {
            let (ah, bh) = (a.to_dtype(DType::F16), b.to_dtype(DType::F16));
            let f = |x: &Tensor, y: &Tensor| match op {
                0 => x + y,
                1 => x * y,
                2 => x / y,
                _ => x.maximum(y),
            };
            let z = f(&ah, &bh.t().t());
            assert_eq!(z.dtype(), DType::F16, "{what}");
            let want = round16(&f(&round16(&a), &round16(&b)));
            assert_close(&format!("{what} on {}", dev.name()), &z.to_vec(), &want.to_vec(), 1e-3, 1e-6);
            z.to_dtype(DType::F32).sum_all().backward();
            let (ar, br) = (round16(&a).requires_grad_(), round16(&b).requires_grad_());
            f(&ar, &br).sum_all().backward();
            for (got, reference, which) in [(&a, &ar, "a"), (&b, &br, "b")] {
                let (g, r) = (got.grad().unwrap().to_vec(), reference.grad().unwrap().to_vec());
                assert_close(&format!("{what} d{which} on {}", dev.name()), &g, &r, 4e-3, 1e-3);
            }
            a.zero_grad();
            b.zero_grad();
        }
        // f16 with f32 promotes to f32.
        assert_eq!((&a.to_dtype(DType::F16) + &b).dtype(), DType::F32);
    }
}

/// On a GPU, `relu(x16)` and `a16 * b16` are one dispatch each: the widen,
/// the op and the rounding fuse. (A device of its own: the other tests'
/// dispatches would count on a shared one.)
#[test]
fn f16_elementwise_ops_are_one_fused_dispatch() {
    let Some(dev) = fresh_gpu_or_skip("f16_elementwise_ops_are_one_fused_dispatch") else { return };
    let (a, b) = (rand(&[33, 31], 35, -2.0, 2.0, &dev), rand(&[33, 31], 36, -2.0, 2.0, &dev));
    let (ah, bh) = (a.to_dtype(DType::F16), b.to_dtype(DType::F16));
    let cases: [Case; 2] = [("relu", Box::new(|t| t.relu())), ("mul", Box::new(move |t| t * &bh))];
    for (what, f) in cases {
        dev.flush().unwrap();
        let before = dev.stats().dispatches;
        let y = f(&ah);
        dev.flush().unwrap();
        assert_eq!(dev.stats().dispatches - before, 1, "{what}");
        assert_eq!(y.dtype(), DType::F16);
    }
}

/// F16 dropout: the F32 input's mask (same generator state), the kept
/// values `x / (1 − p)` computed in f32 and rounded once, F16 output and an
/// F16 gradient (the same mask and scale, rounded); the generator advances
/// as for F32.
#[test]
fn dropout_on_f16_keeps_f16_with_the_same_mask() {
    for dev in backends("dropout_on_f16_keeps_f16_with_the_same_mask") {
        let x = rand(&[5, 29], 40, -3.0, 3.0, &dev).requires_grad_();
        let p = 0.3;
        let (mut g32, mut g16) = (Generator { seed: 9, offset: 4 }, Generator { seed: 9, offset: 4 });
        let y32 = round16(&x).dropout(p, true, &mut g32);
        let y16 = x.to_dtype(DType::F16).dropout(p, true, &mut g16);
        assert_eq!(g16.offset, g32.offset, "the generator advances alike");
        assert_eq!(y16.dtype(), DType::F16);
        assert_eq!(y16.to_vec(), round16(&y32).to_vec(), "{}: round(x · mask / (1 − p))", dev.name());
        let gy = rand(&[5, 29], 41, -1.0, 1.0, &dev);
        y16.backward_with(&gy.to_dtype(DType::F16));
        let mask: Vec<f32> = y32.to_vec().iter().map(|&v| if v == 0.0 { 0.0 } else { 1.0 / (1.0 - p) }).collect();
        let want: Vec<f32> = round16(&gy).to_vec().iter().zip(&mask).map(|(g, m)| g * m).collect();
        let want = round16(&Tensor::from_vec(&want, &[5, 29], &dev)).to_vec();
        assert_eq!(x.grad().unwrap().to_vec(), want, "{}: gradient", dev.name());
        // Eval mode and p = 0 are the identity, p = 1 zeros, all F16.
        let h = x.detach().to_dtype(DType::F16);
        assert_eq!(h.dropout(0.5, false, &mut g16).dtype(), DType::F16);
        let zeros = h.dropout(1.0, true, &mut g16);
        assert_eq!((zeros.dtype(), zeros.to_vec()), (DType::F16, vec![0.0; 5 * 29]));
    }
}

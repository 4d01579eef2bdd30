//! Autocast: which ops cast, what they compute, where gradients go, on every
//! backend. Each expected value is built outside autocast from explicit
//! casts, so a missing or extra rounding shows.

use crate::common;
use common::*;
use wgrad_autograd::{autocast, AutocastGuard, Conv2dOptions, DType, Tensor};
use wgrad_gpu_core::ops::matmul::MatmulKernel;
use wgrad_gpu_core::testing::assert_close;

/// `t` rounded to f16 and back (the value an f16 operand carries).
fn round16(t: &Tensor) -> Tensor {
    t.detach().to_dtype(DType::F16).to_dtype(DType::F32)
}

#[test]
fn matmul_casts_its_operands_and_returns_f16() {
    for dev in backends("matmul_casts_its_operands_and_returns_f16") {
        let x = rand(&[5, 37], 1, -3.0, 3.0, &dev);
        let w = rand(&[37, 6], 2, -1.0, 1.0, &dev).requires_grad_();
        let g = rand(&[5, 6], 3, -1e-3, 1e-3, &dev);
        let y = autocast(|| x.matmul(&w));
        // PyTorch's dtype: f32 sums of the f16-rounded operands, rounded once.
        assert_eq!(y.dtype(), DType::F16, "{}", dev.name());
        let want = round16(&round16(&x).matmul(&round16(&w)));
        assert_close(&format!("forward on {}", dev.name()), &y.to_vec(), &want.to_vec(), 0.0, 0.0);
        y.backward_with(&g);
        let gw = w.grad().unwrap();
        assert_eq!(gw.dtype(), DType::F32, "master weight gradient");
        // The f16 operand's gradient: xᵀ (f16) @ g (rounded to f16), rounded to f16.
        let want = round16(&round16(&x).t().matmul(&round16(&g)));
        assert_close(&format!("grad on {}", dev.name()), &gw.to_vec(), &want.to_vec(), 0.0, 0.0);
        // Not the f32 gradient: the rounding is really there.
        let f32_grad = x.t().matmul(&g).to_vec();
        assert!(gw.to_vec().iter().zip(&f32_grad).any(|(a, b)| a != b), "{}: no f16 rounding", dev.name());
    }
}

/// `Tensor::linear` (and so `nn::Linear`) under autocast: x @ Wᵀ + b with
/// the f32 bias added to the f32 sums and one rounding, returning f16;
/// gradients in the operands' dtype (the f32 leaves get f32 ones), each the
/// f32 computation on the f16 values rounded once. Batched input, an odd
/// feature count (the fallback store) and an even one.
#[test]
fn linear_under_autocast_returns_f16_with_rounded_gradients() {
    for dev in backends("linear_under_autocast_returns_f16_with_rounded_gradients") {
        for out in [6, 7] {
            let x = rand(&[2, 5, 37], 30, -3.0, 3.0, &dev).requires_grad_();
            let w = rand(&[out, 37], 31, -1.0, 1.0, &dev).requires_grad_();
            let b = rand(&[out], 32, -1.0, 1.0, &dev).requires_grad_();
            let g = rand(&[2, 5, out], 33, -1.0, 1.0, &dev);
            let y = autocast(|| x.linear(&w, Some(&b)));
            assert_eq!((y.dtype(), y.shape().to_vec()), (DType::F16, vec![2, 5, out]), "{}", dev.name());
            let (xr, wr) = (round16(&x).requires_grad_(), round16(&w).requires_grad_());
            let br = b.detach().requires_grad_();
            let want = &xr.matmul(&wr.t()) + &br;
            let what = |s: &str| format!("{s} out={out} on {}", dev.name());
            assert_close(&what("forward"), &y.to_vec(), &round16(&want).to_vec(), 0.0, 0.0);
            y.backward_with(&g);
            want.backward_with(&round16(&g));
            for (got, reference, name) in [(&x, &xr, "input"), (&w, &wr, "weight")] {
                let grad = got.grad().unwrap();
                assert_eq!(grad.dtype(), DType::F32, "{name}: the f32 leaf's gradient");
                let expect = round16(&reference.grad().unwrap()).to_vec();
                assert_close(&what(name), &grad.to_vec(), &expect, 1e-3, 1e-6);
            }
            let gb = b.grad().unwrap();
            assert_eq!(gb.dtype(), DType::F32);
            assert_close(&what("bias"), &gb.to_vec(), &br.grad().unwrap().to_vec(), 1e-6, 1e-6);
        }
    }
}

/// Without autocast, linear is matmul plus a broadcast bias, and its
/// gradients pass a finite-difference check.
#[test]
fn linear_is_matmul_plus_bias_and_gradchecks() {
    for dev in backends("linear_is_matmul_plus_bias_and_gradchecks") {
        let x = rand(&[3, 4, 9], 40, -1.0, 1.0, &dev);
        let w = rand(&[5, 9], 41, -1.0, 1.0, &dev);
        let b = rand(&[5], 42, -1.0, 1.0, &dev);
        let y = x.linear(&w, Some(&b));
        assert_eq!((y.dtype(), y.shape().to_vec()), (DType::F32, vec![3, 4, 5]));
        let want = &x.matmul(&w.t()) + &b;
        assert_close(&format!("on {}", dev.name()), &y.to_vec(), &want.to_vec(), 1e-6, 1e-6);
        assert_eq!(x.linear(&w, None).to_vec(), x.matmul(&w.t()).to_vec());
    }
    gradcheck("linear_gradcheck", &[&[4, 7], &[3, 7], &[3]], |t| t[0].linear(&t[1], Some(&t[2])));
    gradcheck("linear_1d_gradcheck", &[&[7], &[5, 7], &[5]], |t| t[0].linear(&t[1], Some(&t[2])));
}

/// Under autocast, a product of a broadcast operand (its gradient summed
/// over batch dims) still gives gradients within f16 rounding of f32's,
/// and every output dtype downstream of an f16 matmul works: the f32-list
/// ops and the ops that widen.
#[test]
fn autocast_matmul_gradients_stay_close_to_f32() {
    for dev in backends("autocast_matmul_gradients_stay_close_to_f32") {
        let a = rand(&[3, 4, 8], 50, -1.0, 1.0, &dev).requires_grad_();
        let b = rand(&[8, 6], 51, -1.0, 1.0, &dev).requires_grad_();
        let run = |amp: bool| {
            let _g = AutocastGuard::new(amp);
            let y = a.matmul(&b);
            let loss = &(&y.softmax(-1) * &y.relu()).sum_all() + &y.log_softmax(-1).mean_all();
            loss.backward();
            let grads = (a.grad().unwrap().to_vec(), b.grad().unwrap().to_vec());
            a.zero_grad();
            b.zero_grad();
            (loss.item(), grads)
        };
        let (l32, (ga32, gb32)) = run(false);
        let (l16, (ga16, gb16)) = run(true);
        assert_close(&format!("loss on {}", dev.name()), &[l16], &[l32], 1e-2, 1e-2);
        assert_close(&format!("a grad on {}", dev.name()), &ga16, &ga32, 1e-2, 1e-2);
        assert_close(&format!("b grad on {}", dev.name()), &gb16, &gb32, 1e-2, 1e-2);
    }
}

/// On a fresh GPU: a convolution with bias on f16 operands is one launch
/// (f32 sums, bias and the f16 rounding in the product's store), an f32
/// convolution with bias is one, and so is linear with bias on f16
/// operands (the casts of f32 operands under autocast are launches of
/// their own, so the operands are f16 already here). Where the subgroup
/// kernel runs (CPU adapters) the f16 rounding is a cast of its own.
#[test]
fn fused_forwards_are_one_launch() {
    let Some(dev) = wgrad_gpu_core::testing::fresh_gpu_or_skip("fused_forwards_are_one_launch") else { return };
    let f16_launches = if MatmulKernel::Auto.rounds_f16_in_store(&dev) { 1 } else { 2 };
    let count = |f: &dyn Fn() -> Tensor| {
        dev.flush().unwrap();
        let before = dev.stats().dispatches;
        let y = f();
        dev.flush().unwrap();
        (y, dev.stats().dispatches - before)
    };
    let x = rand(&[2, 3, 8, 8], 60, -1.0, 1.0, &dev);
    let w = rand(&[4, 3, 3, 3], 61, -0.5, 0.5, &dev);
    let b = rand(&[4], 62, -0.5, 0.5, &dev);
    let (xh, wh) = (x.to_dtype(DType::F16), w.to_dtype(DType::F16));
    let opts = Conv2dOptions::new().padding(1);
    let (y, n) = count(&|| xh.conv2d(&wh, Some(&b), &opts));
    assert_eq!((n, y.dtype()), (f16_launches, DType::F16), "f16 conv2d with bias");
    let (y, n) = count(&|| x.conv2d(&w, Some(&b), &opts));
    assert_eq!((n, y.dtype()), (1, DType::F32), "f32 conv2d with bias");
    let (a, lw, lb) =
        (rand(&[5, 16], 63, -1.0, 1.0, &dev), rand(&[6, 16], 64, -1.0, 1.0, &dev), rand(&[6], 65, -1.0, 1.0, &dev));
    let (ah, lwh) = (a.to_dtype(DType::F16), lw.to_dtype(DType::F16));
    let (y, n) = count(&|| ah.linear(&lwh, Some(&lb)));
    assert_eq!((n, y.dtype()), (f16_launches, DType::F16), "f16 linear with bias");
    let (y, n) = count(&|| autocast(|| ah.matmul(&lwh.t())));
    assert_eq!((n, y.dtype()), (f16_launches, DType::F16), "f16 matmul");
}

#[test]
fn conv2d_casts_returns_f16_and_its_gradients_are_rounded() {
    for dev in backends("conv2d_casts_returns_f16_and_its_gradients_are_rounded") {
        let x = rand(&[2, 3, 7, 6], 4, -1.0, 1.0, &dev).requires_grad_();
        let w = rand(&[4, 3, 3, 3], 5, -0.5, 0.5, &dev).requires_grad_();
        let b = rand(&[4], 6, -0.5, 0.5, &dev).requires_grad_();
        let opts = Conv2dOptions { stride: (2, 1), padding: [1, 1, 0, 1], ..Default::default() };
        let y = autocast(|| x.conv2d(&w, Some(&b), &opts));
        // PyTorch's f16 convolution returns f16: the f32 sums plus the bias, rounded once.
        assert_eq!(y.dtype(), DType::F16);
        let (xr, wr) = (round16(&x).requires_grad_(), round16(&w).requires_grad_());
        let want = xr.conv2d(&wr, Some(&b.detach()), &opts);
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-3 * b.abs().max(1e-2));
        assert!(close(&y.to_vec(), &round16(&want).to_vec()), "forward on {}", dev.name());
        // The f32 gradient is rounded to the output's dtype before the
        // kernels read it.
        let g = rand(&y.shape(), 7, -1.0, 1.0, &dev);
        y.backward_with(&g);
        want.backward_with(&round16(&g));
        for (got, reference, what) in [(&x, &xr, "input"), (&w, &wr, "weight")] {
            let expect = round16(&reference.grad().unwrap());
            assert_close(
                &format!("{what} grad on {}", dev.name()),
                &got.grad().unwrap().to_vec(),
                &expect.to_vec(),
                0.0,
                0.0,
            );
        }
        assert_eq!(b.grad().unwrap().dtype(), DType::F32);
    }
}

/// f16 activations (what products return under autocast) go through the
/// view and copy ops as f16 and through f32-only ops widened; the gradient
/// that reaches the f32 leaf is the f32 computation's on the f16 values,
/// rounded once to f16 where it enters the f16 tensor.
#[test]
fn f16_activations_flow_through_views_copies_and_f32_ops() {
    for dev in backends("f16_activations_flow_through_views_copies_and_f32_ops") {
        let a = rand(&[2, 3, 5, 6], 20, -2.0, 2.0, &dev).requires_grad_();
        let wts = rand(&[2, 5, 3, 3], 21, -1.0, 1.0, &dev);
        // ResNet's option-A shortcut, a transposed copy, then f32-only ops.
        let chain = |x: &Tensor| {
            let sub = x.slice_step(2, 0, 2).slice_step(3, 1, 2);
            let z = Tensor::zeros(&[2, 1, 3, 3], &dev).to_dtype(x.dtype());
            let joined = Tensor::cat(&[&z, &sub, &z], 1);
            assert_eq!(joined.dtype(), x.dtype(), "cat keeps f16");
            let t = joined.permute(&[0, 1, 3, 2]).contiguous();
            assert_eq!(t.dtype(), x.dtype(), "contiguous keeps f16");
            (&t.relu().avg_pool2d((1, 1), (1, 1), (0, 0), true) * &wts).sum_all()
        };
        let h = a.to_dtype(DType::F16);
        let loss = chain(&h);
        assert_eq!(loss.dtype(), DType::F32);
        loss.backward();
        let ar = round16(&a).requires_grad_();
        let want = chain(&ar);
        assert_close(&format!("loss on {}", dev.name()), &[loss.item()], &[want.item()], 1e-6, 1e-6);
        want.backward();
        let expect = round16(&ar.grad().unwrap());
        assert_close(&format!("grad on {}", dev.name()), &a.grad().unwrap().to_vec(), &expect.to_vec(), 0.0, 0.0);
    }
}

#[test]
fn unlisted_ops_and_disabled_regions_stay_f32() {
    for dev in backends("unlisted_ops_and_disabled_regions_stay_f32") {
        let x = rand(&[4, 9], 8, -3.0, 3.0, &dev);
        let w = rand(&[9, 9], 9, -1.0, 1.0, &dev);
        autocast(|| {
            // softmax is on the f32 list: bit-identical to the f32 op.
            assert_eq!(x.softmax(-1).to_vec(), x.detach().softmax(-1).to_vec());
            let _off = AutocastGuard::new(false);
            let exact = x.matmul(&w).to_vec();
            drop(_off);
            assert_ne!(x.matmul(&w).to_vec(), exact, "{}: autocast back on after the guard", dev.name());
        });
        assert_eq!(x.matmul(&w).to_vec(), x.matmul(&w).to_vec());
    }
}

/// A backward pass run inside an autocast region does not recast the f32
/// graph it walks: the gradients equal those of a backward outside.
#[test]
fn backward_inside_autocast_keeps_forward_dtypes() {
    for dev in backends("backward_inside_autocast_keeps_forward_dtypes") {
        let x = rand(&[3, 8], 10, -1.0, 1.0, &dev);
        let w = rand(&[8, 2], 11, -1.0, 1.0, &dev).requires_grad_();
        x.matmul(&w).sum_all().backward();
        let outside = w.grad().unwrap().to_vec();
        w.zero_grad();
        let loss = x.matmul(&w).sum_all();
        autocast(|| loss.backward());
        assert_eq!(w.grad().unwrap().to_vec(), outside, "{}", dev.name());
    }
}

/// The casts are differentiable both ways and an f16 tensor read twice
/// gets the sum of its gradients.
#[test]
fn casts_pass_gradients_and_f16_gradients_accumulate() {
    for dev in backends("casts_pass_gradients_and_f16_gradients_accumulate") {
        let x = rand(&[6, 4], 12, -1.0, 1.0, &dev).requires_grad_();
        let h = x.to_dtype(DType::F16);
        assert!(h.requires_grad() && h.dtype() == DType::F16);
        let w = rand(&[4, 3], 13, -1.0, 1.0, &dev).to_dtype(DType::F16);
        // h is read by two products: its gradient is the (f16) sum of both.
        let y = &h.matmul(&w) + &h.matmul(&w);
        y.sum_all().backward();
        let one = round16(&Tensor::ones(&[6, 3], &dev).matmul(&round16(&w).t()));
        let want = round16(&(&one + &one));
        assert_close(&format!("on {}", dev.name()), &x.grad().unwrap().to_vec(), &want.to_vec(), 0.0, 0.0);
    }
}

#[test]
fn mixed_dtypes_are_a_clear_error() {
    let dev = wgrad_autograd::Device::cpu();
    let a = Tensor::ones(&[2, 2], &dev);
    let err = a.try_matmul(&a.to_dtype(DType::F16)).unwrap_err().to_string();
    assert!(err.contains("F32 and F16") && err.contains("to_dtype"), "{err}");
}

/// docs/mixed-precision.md prints the policy: every row, with its precision.
#[test]
fn the_docs_list_every_policy_row() {
    use wgrad_autograd::autocast::{Precision, POLICY};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/mixed-precision.md");
    let doc = std::fs::read_to_string(path).expect("docs/mixed-precision.md");
    for row in POLICY {
        let line = doc.lines().find(|l| l.starts_with(&format!("| `{}` |", row.op)));
        let line = line.unwrap_or_else(|| panic!("docs/mixed-precision.md lacks the row of {}", row.op));
        let f16 = line.contains("f16 operands");
        assert_eq!(f16, row.precision == Precision::F16, "{}: {line}", row.op);
        assert!(line.contains(row.why), "{}: the docs' reason differs from the table's: {line}", row.op);
    }
}

/// A strided f16 view copies correctly (the copy kernels move 4-byte
/// elements; f16 views go through an exact widening).
#[test]
fn strided_f16_views_copy_their_elements() {
    for dev in backends("strided_f16_views_copy_their_elements") {
        let x = rand(&[3, 5], 14, -2.0, 2.0, &dev);
        let h = x.to_dtype(DType::F16).t();
        let want = round16(&x).t().contiguous().to_vec();
        assert_eq!(h.contiguous().to_vec(), want, "{}", dev.name());
        assert_eq!(h.contiguous().dtype(), DType::F16);
    }
}

/// Casting a transposed or broadcast view casts the viewed span and keeps
/// the view (no row-major copy first): same elements and gradient as
/// casting the dense copy.
#[test]
fn casts_of_views_keep_the_view() {
    for dev in backends("casts_of_views_keep_the_view") {
        let w = rand(&[4, 7], 22, -2.0, 2.0, &dev).requires_grad_();
        let b = rand(&[1, 7], 23, -2.0, 2.0, &dev).requires_grad_();
        let g = rand(&[7, 4], 24, -1.0, 1.0, &dev);
        type View = fn(&Tensor) -> Tensor;
        let cases: [(&str, &Tensor, View); 2] = [("t()", &w, |t| t.t()), ("expand", &b, |t| t.t().expand(&[7, 4]))];
        for (what, leaf, view) in cases {
            let fast = view(leaf).to_dtype(DType::F16);
            let slow = view(leaf).contiguous().to_dtype(DType::F16);
            assert_eq!(fast.to_vec(), slow.to_vec(), "{what} on {}", dev.name());
            (&fast.to_dtype(DType::F32) * &g).sum_all().backward();
            let got = leaf.grad().unwrap().to_vec();
            leaf.zero_grad();
            (&slow.to_dtype(DType::F32) * &g).sum_all().backward();
            assert_eq!(got, leaf.grad().unwrap().to_vec(), "{what} gradient on {}", dev.name());
            leaf.zero_grad();
        }
    }
}

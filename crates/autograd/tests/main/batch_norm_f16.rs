//! Batch norm on F16 activations (mixed precision): the output is F16, the
//! weight, bias and running statistics stay F32, and the forward, running
//! update and gradients agree with the F32 op on the same (f16-representable)
//! inputs to f16 precision, plain and followed by a ReLU, in training and
//! evaluation, on every backend.

use crate::common;
use common::*;
use half::f16;
use wgrad_autograd::{DType, Device, Tensor};
use wgrad_gpu_core::testing::{assert_close, Rng};

/// Seeded values already rounded to f16, so both ops see the same inputs.
fn halves(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    Rng::new(seed).vec(n, lo, hi).iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

/// Values equal to f16 precision: within one f16 ulp of the F32 op's
/// result rounded to f16, or (near zero, where the f32 sums' order makes
/// a difference of many tiny ulps) within 1e-4 absolute.
#[track_caller]
fn close_to_f16(what: &str, got: &[f32], want_f32: &[f32]) {
    assert_eq!(got.len(), want_f32.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want_f32).enumerate() {
        let w = f16::from_f32(w);
        let ulp = (f16::from_bits(w.to_bits() + 1).to_f32() - w.to_f32()).abs();
        assert!(
            (g - w.to_f32()).abs() <= ulp.max(1e-4),
            "{what}: element {i}: got {g}, want {w} (the F32 op's value rounded)"
        );
    }
}

/// Every value representable in f16: what an F16 result (or a gradient
/// computed as F16 and widened by the cast's backward) holds.
#[track_caller]
fn f16_values(what: &str, v: &[f32]) {
    let i = v.iter().position(|&x| f16::from_f32(x).to_f32() != x && !x.is_nan());
    assert!(i.is_none(), "{what}: element {} ({}) is no f16 value", i.unwrap_or(0), v[i.unwrap_or(0)]);
}

#[derive(Clone, Copy, Debug)]
enum Form {
    Plain,
    Relu,
}

/// One F16 batch norm against the F32 one with fresh, equal parameters.
fn compare(dev: &Device, shape: &[usize], training: bool, form: Form, seed: u64) {
    let what = format!("{} {shape:?} training={training} {form:?}", dev.name());
    let (n, c) = (shape.iter().product::<usize>(), shape[1]);
    let x = halves(n, seed, -2.0, 3.0);
    let gy = halves(n, seed + 2, -1.0, 1.0);
    let (w, b) = (Rng::new(seed + 3).vec(c, 0.5, 1.5), Rng::new(seed + 4).vec(c, -0.5, 0.5));
    let (rm, rv) = (Rng::new(seed + 5).vec(c, -0.5, 0.5), Rng::new(seed + 6).vec(c, 0.5, 2.0));

    // Two sets of F32 leaves: one for each op.
    let leaves = || {
        let t = |v: &[f32], s: &[usize]| Tensor::from_vec(v, s, dev).requires_grad_();
        (t(&x, shape), t(&w, &[c]), t(&b, &[c]))
    };
    let stats = || (Tensor::from_vec(&rm, &[c], dev), Tensor::from_vec(&rv, &[c], dev));
    let run = |half: bool| {
        let (xl, wl, bl) = leaves();
        let (m, v) = stats();
        let input = if half { xl.to_dtype(DType::F16) } else { xl.clone() };
        let y = input.batch_norm(Some(&m), Some(&v), Some(&wl), Some(&bl), training, 0.1, 1e-5);
        // The ReLU of the rounded value is the rounded ReLU: no new rounding.
        let y = if matches!(form, Form::Relu) { y.relu() } else { y };
        let out = y.to_vec();
        let dtype = y.dtype();
        let gy = if half {
            Tensor::from_f16(&gy.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(), shape, dev)
        } else {
            Tensor::from_vec(&gy, shape, dev)
        };
        y.backward_with(&gy);
        let grad = |t: &Tensor| {
            let g = t.grad().expect("a gradient");
            assert_eq!(g.dtype(), DType::F32, "{what}: leaf gradients are F32");
            g.to_vec()
        };
        assert_eq!(m.dtype(), DType::F32);
        (dtype, out, [grad(&xl), grad(&wl), grad(&bl)], m.to_vec(), v.to_vec())
    };
    let (d16, y16, g16, m16, v16) = run(true);
    let (d32, y32, g32, m32, v32) = run(false);
    assert_eq!((d16, d32), (DType::F16, DType::F32), "{what}: output dtypes");

    close_to_f16(&format!("{what}: y"), &y16, &y32);
    f16_values(&format!("{what}: y"), &y16);
    // The statistics and their update are f32, from the same values.
    assert_close(&format!("{what}: running_mean"), &m16, &m32, 1e-6, 1e-6);
    assert_close(&format!("{what}: running_var"), &v16, &v32, 1e-6, 1e-6);
    // The input gradient is F16 (computed in f32, rounded; the cast's
    // backward widens it exactly), weight and bias gradients f32 sums.
    close_to_f16(&format!("{what}: grad x"), &g16[0], &g32[0]);
    f16_values(&format!("{what}: grad x"), &g16[0]);
    assert_close(&format!("{what}: grad weight"), &g16[1], &g32[1], 1e-4, 1e-4);
    assert_close(&format!("{what}: grad bias"), &g16[2], &g32[2], 1e-4, 1e-4);
}

#[test]
fn f16_batch_norm_matches_f32_op() {
    for dev in backends("f16_batch_norm_matches_f32_op") {
        // 7x7 planes and odd totals (the scalar kernels, a half-used last
        // f16 word), 4x4 planes (vec4), [N, C] input, one channel.
        let shapes: [&[usize]; 4] = [&[3, 3, 7, 7], &[2, 3, 4, 4], &[5, 3], &[3, 1, 5]];
        let mut seed = 10;
        for shape in shapes {
            for training in [true, false] {
                for form in [Form::Plain, Form::Relu] {
                    seed += 10;
                    compare(&dev, shape, training, form, seed);
                }
            }
        }
    }
}

#[test]
fn f16_empty_batch() {
    for dev in backends("f16_batch_norm_empty_batch") {
        let x = Tensor::zeros(&[0, 3, 2, 2], &dev).to_dtype(DType::F16);
        let (rm, rv) = (Tensor::zeros(&[3], &dev), Tensor::ones(&[3], &dev));
        let w = Tensor::ones(&[3], &dev).requires_grad_();
        let y = x.batch_norm(Some(&rm), Some(&rv), Some(&w), None, true, 0.1, 1e-5).relu();
        assert_eq!((y.shape().to_vec(), y.dtype()), (vec![0, 3, 2, 2], DType::F16));
        y.to_dtype(DType::F32).sum(&[], false).backward();
        assert_eq!(w.grad().unwrap().to_vec(), vec![0.0; 3]);
        assert_eq!(rv.to_vec(), vec![1.0; 3]);
    }
}

#[test]
#[should_panic(expected = "batch_norm: expects F32 or F16 input, got U32")]
fn u32_input_panics() {
    let dev = Device::cpu();
    Tensor::from_u32(&[1, 2, 3, 4], &[2, 2], &dev).batch_norm(None, None, None, None, true, 0.1, 1e-5);
}

//! f32 ops that read F16 inputs directly (softmax, log-softmax,
//! cross-entropy, layer/group norm's row normalisation, reductions): the
//! result is F32 and equals the op on the widened input; the input's
//! gradient is F16, the f32 gradient rounded (within one f16 ulp; F16
//! tensors cannot be leaves, so it is read through the F32 leaf it was cast
//! from, whose gradient is that F16 gradient widened). On a GPU
//! the op records no separate widening cast: it takes as many dispatches as
//! on an F32 input.

use crate::common;
use common::*;
use half::f16;
use wgrad_autograd::{autocast, CrossEntropyOptions, DType, Device, Tensor};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};

/// A tensor function.
type Op = Box<dyn Fn(&Tensor) -> Tensor>;

/// A named tensor function.
type Case = (&'static str, Op);

/// The cases: each op on awkward shapes, along the last axis and others
/// (strided f16 views), with F32 weights and targets where the op has them.
fn cases(dev: &Device) -> Vec<(&'static str, Vec<usize>, Op)> {
    let d = dev.clone();
    let classes = Tensor::from_u32(&[0, 6, 3, 1, 5], &[5], dev);
    let classes3 = Tensor::from_u32(&[0, 2, 4, 1, 3, 0], &[2, 3], dev);
    let lw = rand(&[33], 50, 0.5, 1.5, dev);
    let lb = rand(&[33], 51, -0.5, 0.5, dev);
    let gw = rand(&[4], 52, 0.5, 1.5, dev);
    let class_weight = rand(&[7], 53, 0.5, 1.5, dev);
    vec![
        ("softmax last", vec![3, 33], Box::new(|t: &Tensor| t.softmax(-1))),
        ("softmax 1 column", vec![5, 1], Box::new(|t: &Tensor| t.softmax(-1))),
        ("softmax dim 0", vec![7, 5], Box::new(|t: &Tensor| t.softmax(0))),
        ("log_softmax", vec![2, 3, 1023], Box::new(|t: &Tensor| t.log_softmax(-1))),
        ("log_softmax dim 1", vec![2, 7, 3], Box::new(|t: &Tensor| t.log_softmax(1))),
        ("cross_entropy", vec![5, 7], {
            let opts = CrossEntropyOptions { weight: Some(class_weight), label_smoothing: 0.1, ..Default::default() };
            Box::new(move |t: &Tensor| t.cross_entropy(&classes, &opts))
        }),
        ("cross_entropy [N, C, d]", vec![2, 5, 3], {
            Box::new(move |t: &Tensor| t.cross_entropy(&classes3, &CrossEntropyOptions::default()))
        }),
        ("layer_norm", vec![3, 33], Box::new(move |t: &Tensor| t.layer_norm(&[33], Some(&lw), Some(&lb), 1e-5))),
        ("layer_norm no affine", vec![7, 2, 3], Box::new(|t: &Tensor| t.layer_norm(&[2, 3], None, None, 1e-5))),
        ("group_norm", vec![2, 4, 7], Box::new(move |t: &Tensor| t.group_norm(2, Some(&gw), None, 1e-5))),
        ("sum all", vec![3, 33], Box::new(|t: &Tensor| t.sum_all())),
        ("sum axis 1", vec![5, 7, 3], Box::new(|t: &Tensor| t.sum(&[1], false))),
        ("mean keepdim", vec![5, 1023], Box::new(|t: &Tensor| t.mean(&[-1], true))),
        ("mean of transposed", vec![7, 5], Box::new(|t: &Tensor| t.t().mean(&[1], false))),
        ("max", vec![3, 33], Box::new(|t: &Tensor| t.max(&[1], false))),
        ("var", vec![4, 9], Box::new(|t: &Tensor| t.var(&[0], 1, false))),
        ("sum after sum", vec![3, 7], Box::new(move |t: &Tensor| &t.sum(&[0], false) * &Tensor::ones(&[7], &d))),
    ]
}

/// Whether two f16 values are within one ulp (adjacent bit patterns of the
/// same sign, or ±0).
fn within_one_ulp(a: f16, b: f16) -> bool {
    let key = |h: f16| {
        let bits = h.to_bits() as i32;
        if bits & 0x8000 != 0 {
            -(bits & 0x7fff)
        } else {
            bits
        }
    };
    (key(a) - key(b)).abs() <= 1
}

#[test]
fn f16_inputs_give_f32_results_and_f16_gradients() {
    for dev in backends("f16_inputs_give_f32_results_and_f16_gradients") {
        for (k, (what, shape, f)) in cases(&dev).into_iter().enumerate() {
            let what = format!("{what} on {}", dev.name());
            // F32 leaves of f16 values: `a` reaches the op as F16, `wide` as F32.
            let a = rand(&shape, 100 + k as u64, -3.0, 3.0, &dev).to_dtype(DType::F16).to_dtype(DType::F32);
            let a = a.detach().requires_grad_();
            let wide = a.detach().requires_grad_();
            let h = a.to_dtype(DType::F16);
            let y = f(&h);
            let want = f(&wide);
            assert_eq!(y.dtype(), DType::F32, "{what}: result dtype");
            assert_eq!(y.shape(), want.shape(), "{what}");
            assert_close(&what, &y.to_vec(), &want.to_vec(), 1e-6, 1e-6);
            // A loss that weights every output differently.
            let w = rand(&y.shape(), 200 + k as u64, -1.0, 1.0, &dev);
            (&y * &w).sum_all().backward();
            (&want * &w).sum_all().backward();
            let g = a.grad().unwrap_or_else(|| panic!("{what}: no gradient")).to_vec();
            let want_g = wide.grad().unwrap().to_vec();
            for (i, (&gv, &b)) in g.iter().zip(&want_g).enumerate() {
                let (g16, b16) = (f16::from_f32(gv), f16::from_f32(b));
                assert_eq!(g16.to_f32(), gv, "{what}: gradient {i} ({gv:e}) is not an f16 value");
                assert!(within_one_ulp(g16, b16), "{what}: gradient {i}: {gv:e} vs {b:e} (f16 {b16})");
            }
        }
    }
}

#[test]
fn under_autocast_the_f32_list_stays_f32_on_f16_inputs() {
    for dev in backends("under_autocast_the_f32_list_stays_f32_on_f16_inputs") {
        for (k, (what, shape, f)) in cases(&dev).into_iter().enumerate() {
            let h = rand(&shape, 300 + k as u64, -3.0, 3.0, &dev).to_dtype(DType::F16);
            let y = autocast(|| f(&h));
            assert_eq!(y.dtype(), DType::F32, "{what} under autocast on {}", dev.name());
            assert_close(what, &y.to_vec(), &f(&h.to_dtype(DType::F32)).to_vec(), 1e-6, 1e-6);
        }
    }
}

/// On a GPU the f16 input is read by the op's own kernel: as many dispatches
/// as the op on an F32 tensor, none for a widening cast. (A device of its
/// own: the other tests' dispatches would count on a shared one.)
#[test]
fn f16_inputs_record_no_widening_cast() {
    let Some(dev) = fresh_gpu_or_skip("f16_inputs_record_no_widening_cast") else { return };
    let count = |f: &dyn Fn() -> Tensor| {
        dev.flush().unwrap();
        let before = dev.stats().dispatches;
        let y = f();
        dev.flush().unwrap();
        let n = dev.stats().dispatches - before;
        drop(y);
        n
    };
    let classes = Tensor::from_u32(&[0, 6, 3, 1, 5], &[5], &dev);
    let opts = CrossEntropyOptions::default();
    let dense: [Case; 5] = [
        ("softmax", Box::new(|t| t.softmax(-1))),
        ("log_softmax", Box::new(|t| t.log_softmax(-1))),
        ("cross_entropy", Box::new(move |t| t.cross_entropy(&classes, &opts))),
        ("layer_norm", Box::new(|t| t.layer_norm(&[7], None, None, 1e-5))),
        ("sum", Box::new(|t| t.sum(&[1], false))),
    ];
    let a = rand(&[5, 7], 400, -2.0, 2.0, &dev).requires_grad_();
    let h = a.to_dtype(DType::F16);
    let wide = h.detach().to_dtype(DType::F32).requires_grad_();
    for (what, f) in dense {
        let (n16, n32) = (count(&|| f(&h)), count(&|| f(&wide)));
        assert_eq!(n16, n32, "{what}: f16 input takes {n16} dispatches, f32 input {n32}");
        let widened = count(&|| f(&h.to_dtype(DType::F32)));
        assert_eq!(widened, n32 + 1, "{what}: the widened path's extra cast");
    }
}

//! Fused scaled-dot-product attention: finite-difference gradients for q, k
//! and v, and agreement with the composite `softmax(q kᵀ·scale + mask) v`
//! built from existing ops (forward and gradients), on the CPU backend and
//! on the GPU. The fused kernels are asked for explicitly (`sdpa_fused`): CPU
//! adapters would otherwise take the op's own composite path, which the
//! last tests check against them.

use crate::common;
use common::*;
use wgrad_autograd::{AttentionPath, Device, Tensor};
use wgrad_gpu_core::testing::assert_close;

/// `[Lq, Lk]` additive mask hiding keys j > i (PyTorch's is_causal).
fn causal_mask(lq: usize, lk: usize, dev: &Device) -> Tensor {
    let m: Vec<f32> = (0..lq * lk).map(|e| if e % lk > e / lk { f32::NEG_INFINITY } else { 0.0 }).collect();
    Tensor::from_vec(&m, &[lq, lk], dev)
}

/// `[B, 1, 1, Lk]` key-padding mask: batch b hides its last b keys.
fn padding_mask(batch: usize, lk: usize, dev: &Device) -> Tensor {
    let m: Vec<f32> = (0..batch * lk).map(|e| if e % lk + e / lk >= lk { f32::NEG_INFINITY } else { 0.0 }).collect();
    Tensor::from_vec(&m, &[batch, 1, 1, lk], dev)
}

/// The op on its fused kernels, whatever the device prefers.
fn sdpa_fused(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, causal: bool, scale: Option<f32>) -> Tensor {
    q.scaled_dot_product_attention_with(k, v, mask, causal, scale, AttentionPath::Fused)
}

/// The reference built from matmul and softmax.
fn composite(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, causal: bool, scale: f32) -> Tensor {
    let mut s = q.matmul(&k.transpose(-1, -2)).mul_scalar(scale);
    if let Some(m) = mask {
        s = &s + m;
    }
    if causal {
        let (lq, lk) = (q.size(-2), k.size(-2));
        s = &s + &causal_mask(lq, lk, &q.device());
    }
    s.softmax(-1).matmul(v)
}

#[test]
fn gradients_with_and_without_causal() {
    // [B, H, L, D] with one and three heads, odd sizes, Lq ≠ Lk.
    for (heads, causal) in [(1, false), (3, true), (3, false), (1, true)] {
        let (q, k, v): (&[usize], &[usize], &[usize]) = (&[2, heads, 5, 3], &[2, heads, 6, 3], &[2, heads, 6, 2]);
        gradcheck(&format!("sdpa heads {heads} causal {causal}"), &[q, k, v], move |x| {
            sdpa_fused(&x[0], &x[1], &x[2], None, causal, None)
        });
    }
}

#[test]
fn gradients_with_a_padding_mask() {
    for causal in [false, true] {
        gradcheck(
            &format!("sdpa key padding causal {causal}"),
            &[&[2, 3, 7, 5], &[2, 3, 4, 5], &[2, 3, 4, 3]],
            move |x| {
                let mask = padding_mask(2, 4, &x[0].device());
                sdpa_fused(&x[0], &x[1], &x[2], Some(&mask), causal, Some(0.7))
            },
        );
    }
}

#[test]
fn gradients_of_unbatched_and_three_d_inputs() {
    gradcheck("sdpa [L, D]", &[&[4, 3], &[5, 3], &[5, 4]], |x| sdpa_fused(&x[0], &x[1], &x[2], None, true, None));
    gradcheck("sdpa [N, L, D] with an [L, L] mask", &[&[3, 4, 2], &[3, 4, 2], &[3, 4, 3]], |x| {
        let dev = x[0].device();
        let mask = Tensor::from_vec(
            &[0.0, -1.0, 0.5, 0.0, 0.2, 0.0, -0.3, 0.1, 0.0, 0.4, 0.0, -2.0, 1.0, 0.0, 0.0, 0.3],
            &[4, 4],
            &dev,
        );
        sdpa_fused(&x[0], &x[1], &x[2], Some(&mask), false, None)
    });
}

/// Fused vs composite: outputs and the gradients of a weighted sum.
#[track_caller]
fn compare(what: &str, shapes: [&[usize]; 3], mask: Option<&dyn Fn(&Device) -> Tensor>, causal: bool, scale: f32) {
    for dev in backends(what) {
        let what = format!("{what} on {}", dev.name());
        let inputs: Vec<Tensor> =
            shapes.iter().enumerate().map(|(i, s)| rand(s, 70 + i as u64, -1.0, 1.0, &dev)).collect();
        let mask = mask.map(|m| m(&dev));
        let run = |fused: bool| {
            let [q, k, v] = [0, 1, 2].map(|i| inputs[i].detach().requires_grad_());
            let out = if fused {
                sdpa_fused(&q, &k, &v, mask.as_ref(), causal, Some(scale))
            } else {
                composite(&q, &k, &v, mask.as_ref(), causal, scale)
            };
            let w = rand(&out.shape(), 99, 0.5, 1.5, &dev);
            (&out * &w).sum_all().backward();
            let grads = [&q, &k, &v].map(|t| t.grad().expect("gradient").to_vec());
            (out.shape(), out.to_vec(), grads)
        };
        let (fused_shape, fused, fused_grads) = run(true);
        let (shape, want, grads) = run(false);
        assert_eq!(fused_shape, shape, "{what}: shape");
        assert_close(&format!("{what}: out"), &fused, &want, 1e-4, 1e-5);
        for (name, (g, w)) in ["dq", "dk", "dv"].iter().zip(fused_grads.iter().zip(&grads)) {
            assert_close(&format!("{what}: {name}"), g, w, 1e-3, 1e-5);
        }
    }
}

#[test]
fn fused_matches_composite() {
    let pad = |dev: &Device| padding_mask(2, 33, dev);
    let rows = |dev: &Device| rand(&[7, 33], 5, -2.0, 2.0, dev);
    let full = |dev: &Device| rand(&[2, 3, 7, 33], 6, -2.0, 2.0, dev);
    let s = 1.0 / 5f32.sqrt();
    compare("sdpa vs composite", [&[2, 3, 7, 5], &[2, 3, 33, 5], &[2, 3, 33, 4]], None, false, s);
    compare("sdpa vs composite, causal", [&[2, 3, 33, 5], &[2, 3, 7, 5], &[2, 3, 7, 4]], None, true, s);
    compare("sdpa vs composite, padding", [&[2, 3, 7, 5], &[2, 3, 33, 5], &[2, 3, 33, 4]], Some(&pad), true, s);
    compare("sdpa vs composite, [Lq, Lk] mask", [&[2, 3, 7, 5], &[2, 3, 33, 5], &[2, 3, 33, 4]], Some(&rows), false, s);
    compare("sdpa vs composite, full mask", [&[2, 3, 7, 5], &[2, 3, 33, 5], &[2, 3, 33, 4]], Some(&full), false, 2.0);
    compare(
        "sdpa vs composite, one head of 64",
        [&[1, 1, 100, 64], &[1, 1, 100, 64], &[1, 1, 100, 64]],
        None,
        true,
        0.125,
    );
}

#[test]
fn masks_are_read_through_views() {
    for dev in backends("masks_are_read_through_views") {
        let (q, k, v) = (
            rand(&[2, 3, 4, 5], 1, -1.0, 1.0, &dev),
            rand(&[2, 3, 6, 5], 2, -1.0, 1.0, &dev),
            rand(&[2, 3, 6, 2], 3, -1.0, 1.0, &dev),
        );
        let base = rand(&[2, 6], 4, -2.0, 2.0, &dev);
        let want = sdpa_fused(&q, &k, &v, Some(&base.contiguous().reshape(&[2, 1, 1, 6])), false, None);
        // An expanded (stride 0) view and a view at an offset give the same.
        let expanded = base.reshape(&[2, 1, 1, 6]).expand(&[2, 3, 4, 6]);
        let at_offset =
            Tensor::cat(&[&rand(&[1, 6], 9, 0.0, 1.0, &dev), &base], 0).narrow(0, 1, 2).reshape(&[2, 1, 1, 6]);
        for (name, m) in [("expanded", expanded), ("offset", at_offset)] {
            let got = sdpa_fused(&q, &k, &v, Some(&m), false, None);
            assert_close(&format!("mask {name} on {}", dev.name()), &got.to_vec(), &want.to_vec(), 1e-6, 1e-6);
        }
        // Default scale is 1/sqrt(D).
        let explicit = sdpa_fused(&q, &k, &v, None, true, Some(1.0 / 5f32.sqrt()));
        let default = sdpa_fused(&q, &k, &v, None, true, None);
        assert_close("default scale", &default.to_vec(), &explicit.to_vec(), 0.0, 0.0);
        assert_eq!(default.shape(), vec![2, 3, 4, 2]);
    }
}

#[test]
fn fully_masked_rows_give_zeros_and_zero_gradients() {
    for dev in backends("fully_masked_rows_give_zeros_and_zero_gradients") {
        let [q, k, v] =
            [&[1, 2, 3, 4][..], &[1, 2, 5, 4], &[1, 2, 5, 3]].map(|s| rand(s, 8, -1.0, 1.0, &dev).requires_grad_());
        // Query row 1 sees no key.
        let m: Vec<f32> = (0..15).map(|e| if e / 5 == 1 { f32::NEG_INFINITY } else { 0.0 }).collect();
        let mask = Tensor::from_vec(&m, &[3, 5], &dev);
        let out = sdpa_fused(&q, &k, &v, Some(&mask), false, None);
        out.sum_all().backward();
        let (o, dq) = (out.to_vec(), q.grad().unwrap().to_vec());
        for h in 0..2 {
            assert_eq!(o[(h * 3 + 1) * 3..][..3], [0.0; 3], "out row 1 of head {h} on {}", dev.name());
            assert_eq!(dq[(h * 3 + 1) * 4..][..4], [0.0; 4], "dq row 1 of head {h} on {}", dev.name());
        }
        assert!(o.iter().chain(&dq).all(|x| x.is_finite()));
        assert!(k.grad().unwrap().to_vec().iter().chain(&v.grad().unwrap().to_vec()).all(|x| x.is_finite()));
    }
}

#[test]
#[should_panic(expected = "scaled_dot_product_attention: expected q [..., Lq, D], k [..., Lk, D]")]
fn mismatched_head_dims_panic() {
    let dev = Device::cpu();
    let (q, k) = (Tensor::zeros(&[2, 4, 3], &dev), Tensor::zeros(&[2, 4, 5], &dev));
    sdpa_fused(&q, &k, &k, None, false, None);
}

#[test]
#[should_panic(expected = "mask of shape [3, 4] does not broadcast to [2, 4, 4]")]
fn unbroadcastable_mask_panics() {
    let dev = Device::cpu();
    let q = Tensor::zeros(&[2, 4, 3], &dev);
    sdpa_fused(&q, &q, &q, Some(&Tensor::zeros(&[3, 4], &dev)), false, None);
}

#[test]
#[should_panic(expected = "head dim d is 300; the kernel supports 1..=256")]
fn oversized_head_dims_panic() {
    let dev = Device::cpu();
    let q = Tensor::zeros(&[2, 300], &dev);
    sdpa_fused(&q, &q, &q, None, false, None);
}

/// The op's own composite path equals the fused kernels, values and
/// gradients, with and without the causal bias (including Lq ≠ Lk).
#[test]
fn composite_path_matches_fused() {
    for dev in backends("composite_path_matches_fused") {
        for (shapes, causal) in [
            ([&[2, 3, 7, 5][..], &[2, 3, 33, 5], &[2, 3, 33, 4]], false),
            ([&[2, 3, 33, 5][..], &[2, 3, 7, 5], &[2, 3, 7, 4]], true),
            ([&[9, 8][..], &[9, 8], &[9, 6]], true),
        ] {
            let what = format!("{shapes:?} causal {causal} on {}", dev.name());
            let inputs: Vec<Tensor> =
                shapes.iter().enumerate().map(|(i, s)| rand(s, 40 + i as u64, -1.0, 1.0, &dev)).collect();
            let run = |path: AttentionPath| {
                let [q, k, v] = [0, 1, 2].map(|i| inputs[i].detach().requires_grad_());
                let out = q.scaled_dot_product_attention_with(&k, &v, None, causal, Some(0.6), path);
                let w = rand(&out.shape(), 98, 0.5, 1.5, &dev);
                (&out * &w).sum_all().backward();
                (out.to_vec(), [&q, &k, &v].map(|t| t.grad().expect("gradient").to_vec()))
            };
            let (want, want_grads) = run(AttentionPath::Fused);
            let (got, grads) = run(AttentionPath::Composite);
            assert_close(&format!("{what}: out"), &got, &want, 1e-4, 1e-5);
            for (name, (g, w)) in ["dq", "dk", "dv"].iter().zip(grads.iter().zip(&want_grads)) {
                assert_close(&format!("{what}: {name}"), g, w, 1e-3, 1e-5);
            }
        }
    }
}

#[test]
fn composite_path_gradients() {
    for causal in [false, true] {
        gradcheck(&format!("composite sdpa causal {causal}"), &[&[2, 2, 5, 3], &[2, 2, 6, 3], &[2, 2, 6, 2]], |x| {
            x[0].scaled_dot_product_attention_with(&x[1], &x[2], None, causal, None, AttentionPath::Composite)
        });
    }
}

/// `Auto` follows the device: the composite form (several launches) on a
/// CPU adapter, the one fused launch on other GPUs; a mask always runs fused.
#[test]
fn auto_path_follows_the_device() {
    let Some(dev) = wgrad_gpu_core::testing::fresh_gpu_or_skip("auto_path_follows_the_device") else { return };
    let [q, k, v] = [1, 2, 3].map(|s| rand(&[2, 2, 6, 4], s, -1.0, 1.0, &dev));
    let mask = Tensor::zeros(&[6, 6], &dev);
    let launches = |mask: Option<&Tensor>| {
        dev.synchronize().unwrap();
        let before = dev.stats().dispatches;
        let y = q.scaled_dot_product_attention(&k, &v, mask, true, None);
        dev.synchronize().unwrap();
        drop(y);
        dev.stats().dispatches - before
    };
    let (unmasked, masked) = (launches(None), launches(Some(&mask)));
    assert_eq!(masked, 1, "a mask runs the fused kernel");
    match dev.attention_path() {
        AttentionPath::Composite => assert!(unmasked >= 3, "composite: {unmasked} launches"),
        path => assert_eq!((path, unmasked), (AttentionPath::Fused, 1)),
    }
    dev.set_attention_path(AttentionPath::Fused);
    assert_eq!(launches(None), 1, "set_attention_path(Fused)");
    dev.set_attention_path(AttentionPath::Composite);
    assert!(launches(None) >= 3, "set_attention_path(Composite)");
}

/// Head dims the fused kernels refuse panic whichever path the device
/// prefers, so a program that runs on a CPU adapter runs on a GPU too.
#[test]
fn oversized_head_dims_panic_on_every_path() {
    for dev in backends("oversized_head_dims_panic_on_every_path") {
        for path in [AttentionPath::Auto, AttentionPath::Composite] {
            let q = Tensor::zeros(&[2, 300], &dev);
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                q.scaled_dot_product_attention_with(&q, &q, None, false, None, path)
            }));
            assert!(r.is_err(), "{path:?} on {}: head dim 300 must panic", dev.name());
        }
    }
}

/// On f16 operands the composite form (f32 scores and softmax, the
/// probabilities rounded to f16 once; what `Auto` runs where f16 products
/// use matrix units) equals the fused f16 kernel within f16 rounding, and
/// returns F16, as the fused kernel does.
#[test]
fn f16_composite_path_matches_fused() {
    use wgrad_autograd::DType;
    for dev in backends("f16_composite_path_matches_fused") {
        for causal in [false, true] {
            let what = format!("causal {causal} on {}", dev.name());
            let shapes: [&[usize]; 3] = [&[2, 2, 9, 8], &[2, 2, 9, 8], &[2, 2, 9, 6]];
            let inputs: Vec<Tensor> =
                shapes.iter().enumerate().map(|(i, s)| rand(s, 60 + i as u64, -1.0, 1.0, &dev)).collect();
            let run = |path: AttentionPath| {
                // F32 leaves (F16 ones take no gradient), cast to F16 on the way in.
                let [q, k, v] = [0, 1, 2].map(|i| inputs[i].detach().requires_grad_());
                let [q16, k16, v16] = [&q, &k, &v].map(|t| t.to_dtype(DType::F16));
                let out = q16.scaled_dot_product_attention_with(&k16, &v16, None, causal, None, path);
                assert_eq!(out.dtype(), DType::F16, "{what}: {path:?}");
                let w = rand(&out.shape(), 99, 0.5, 1.5, &dev).to_dtype(DType::F16);
                (&out * &w).to_dtype(DType::F32).sum_all().backward();
                let grads = [&q, &k, &v].map(|t| t.grad().expect("gradient").to_vec());
                (out.to_dtype(DType::F32).to_vec(), grads)
            };
            let (want, want_grads) = run(AttentionPath::Fused);
            let (got, grads) = run(AttentionPath::Composite);
            // f16 keeps 11 bits: a few rounding steps of 2^-11 apart.
            assert_close(&format!("{what}: out"), &got, &want, 4e-3, 2e-3);
            for (name, (g, w)) in ["dq", "dk", "dv"].iter().zip(grads.iter().zip(&want_grads)) {
                assert_close(&format!("{what}: {name}"), g, w, 1e-2, 4e-3);
            }
        }
    }
}

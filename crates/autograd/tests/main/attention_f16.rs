//! Scaled-dot-product attention on F16 tensors (mixed precision): F16 q,
//! k, v give an F16 output within one f16 ulp of the F32 op on the widened
//! values, and F16 gradients close to the F32 op's (the f16 backward reads
//! the rounded output and output gradient, as PyTorch's does); autocast
//! casts F32 operands; odd head dims widen; mixed dtypes are an error. On a
//! GPU of its own, the F16 forward is one dispatch (no casts).

use crate::common;
use common::*;
use half::f16;
use wgrad_autograd::{autocast, AttentionPath, DType, Device, Tensor};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};

/// Seeded values in [-1, 1], already f16 values.
fn halves(shape: &[usize], seed: u64, dev: &Device) -> Vec<f32> {
    rand(shape, seed, -1.0, 1.0, dev).to_vec().iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}

/// `[B, H, L, D]` q, k, v with `[lq, lk, d, dv]` lengths and head dims, a
/// `[Lq, Lk]` additive mask when `masked`; runs F16 and F32 and compares
/// outputs and leaf gradients.
fn compare(dev: &Device, [lq, lk, d, dv]: [usize; 4], causal: bool, masked: bool, seed: u64) {
    let what = format!("{} lq {lq} lk {lk} d {d} dv {dv} causal {causal} masked {masked}", dev.name());
    let shapes = [vec![2, 2, lq, d], vec![2, 2, lk, d], vec![2, 2, lk, dv]];
    let data: Vec<Vec<f32>> = shapes.iter().enumerate().map(|(i, s)| halves(s, seed + i as u64, dev)).collect();
    let gy = halves(&[2, 2, lq, dv], seed + 7, dev);
    let mask = masked.then(|| {
        let m: Vec<f32> = rand(&[lq, lk], seed + 9, -1.0, 1.0, dev)
            .to_vec()
            .iter()
            .enumerate()
            .map(|(i, &x)| if i % 5 == 3 { f32::NEG_INFINITY } else { x })
            .collect();
        Tensor::from_vec(&m, &[lq, lk], dev)
    });
    let run = |half: bool| {
        let leaves: Vec<Tensor> =
            data.iter().zip(&shapes).map(|(x, s)| Tensor::from_vec(x, s, dev).requires_grad_()).collect();
        let dtype = if half { DType::F16 } else { DType::F32 };
        let [q, k, v] = [0, 1, 2].map(|i| leaves[i].to_dtype(dtype));
        let y = q.scaled_dot_product_attention(&k, &v, mask.as_ref(), causal, None);
        y.backward_with(&Tensor::from_vec(&gy, &y.shape(), dev).to_dtype(dtype));
        let grads: Vec<Vec<f32>> = leaves.iter().map(|l| l.grad().expect("a gradient").to_vec()).collect();
        (y.dtype(), y.to_vec(), grads)
    };
    let (d16, y16, g16) = run(true);
    let (d32, y32, g32) = run(false);
    assert_eq!((d16, d32), (DType::F16, DType::F32), "{what}: output dtypes");
    close_to_f16_ulps(&format!("{what}: output"), &y16, &y32, 1);
    for (name, (got, want)) in ["dq", "dk", "dv"].iter().zip(g16.iter().zip(&g32)) {
        // Each gradient is rounded once, from sums over the rounded output
        // and output gradient: close to the F32 op's, not within an ulp.
        assert_close(&format!("{what}: {name}"), got, want, 1e-2, 2e-3);
        assert!(got.iter().all(|&x| f16::from_f32(x).to_f32() == x), "{what}: {name} holds f16 values");
    }
}

#[test]
fn f16_attention_matches_the_f32_op() {
    for dev in backends("f16_attention_matches_the_f32_op") {
        compare(&dev, [5, 7, 8, 4], false, false, 10);
        compare(&dev, [6, 6, 6, 10], true, true, 20);
    }
}

#[test]
fn autocast_runs_attention_in_f16_and_odd_head_dims_widen() {
    for dev in backends("autocast_runs_attention_in_f16_and_odd_head_dims_widen") {
        let q = rand(&[2, 3, 4], 1, -1.0, 1.0, &dev).requires_grad_();
        let (k, v) = (rand(&[2, 5, 4], 2, -1.0, 1.0, &dev), rand(&[2, 5, 6], 3, -1.0, 1.0, &dev));
        let y = autocast(|| q.scaled_dot_product_attention(&k, &v, None, false, None));
        assert_eq!(y.dtype(), DType::F16, "{}: autocast attention returns f16", dev.name());
        y.to_dtype(DType::F32).sum_all().backward();
        assert_eq!(q.grad().unwrap().dtype(), DType::F32, "the f32 leaf's gradient is f32");
        // Odd head dims: F16 inputs widen and the result is F32, also under autocast.
        let (q3, k3, v3) =
            (rand(&[3, 3], 4, -1.0, 1.0, &dev), rand(&[5, 3], 5, -1.0, 1.0, &dev), rand(&[5, 5], 6, -1.0, 1.0, &dev));
        let h = |t: &Tensor| t.to_dtype(DType::F16);
        let odd = h(&q3).scaled_dot_product_attention(&h(&k3), &h(&v3), None, false, None);
        assert_eq!(odd.dtype(), DType::F32);
        let odd = autocast(|| q3.scaled_dot_product_attention(&k3, &v3, None, false, None));
        assert_eq!(odd.dtype(), DType::F32);
    }
}

#[test]
#[should_panic(expected = "scaled_dot_product_attention: q, k and v must all be F32 or all F16")]
fn mixed_dtypes_panic() {
    let dev = Device::cpu();
    let q = Tensor::zeros(&[3, 4], &dev);
    q.scaled_dot_product_attention(&q.to_dtype(DType::F16), &q, None, false, None);
}

/// On a GPU of its own (exact counters): the F16 forward is the kernel
/// alone; widening the three operands first costs three casts more.
#[test]
fn f16_attention_records_no_cast() {
    let Some(dev) = fresh_gpu_or_skip("f16_attention_records_no_cast") else { return };
    let x = rand(&[2, 6, 8], 3, -1.0, 1.0, &dev).to_dtype(DType::F16);
    let count = |widen: bool| {
        dev.flush().unwrap();
        let before = dev.stats().dispatches;
        let t = if widen { x.to_dtype(DType::F32) } else { x.clone() };
        // Fused either way: a CPU adapter's F32 attention is otherwise composite.
        let y = t.scaled_dot_product_attention_with(&t, &t, None, true, None, AttentionPath::Fused);
        dev.flush().unwrap();
        (y.dtype(), dev.stats().dispatches - before)
    };
    assert_eq!(count(false), (DType::F16, 1), "the F16 forward is one dispatch");
    assert_eq!(count(true), (DType::F32, 2), "the widened path casts, then attends");
}

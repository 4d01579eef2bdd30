//! Fused attention on f16 storage (`Operands::F16`: q, k, v, the output,
//! its gradient and dq, dk, dv packed f16; the mask, lse and all arithmetic
//! f32). Every f16 run (the reference and fast CPU twins, the GPU's packed
//! and native loads) against the oracle: the reference twin's f32 kernels
//! on the widened values, rounded once to f16 (the reference twin: the same
//! bits; the others: within one f16 ulp, as their f32 sums differ in the
//! last bits). Even head dims with and without whole vec4 rows, odd
//! lengths, causal and masked, values at f16's ends (subnormals, ±65504);
//! odd head dims and short buffers are errors.

use crate::common;
use common::*;
use half::f16;
use wgrad_gpu_core::ops::attention::{
    attention_backward, attention_backward_io, attention_forward, attention_forward_io, AttnDims,
};
use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::testing::{gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device};

/// `n` f16 values uniform in [-1, 1), every 7th from f16's ends when
/// `specials` (subnormals, the smallest normal, zeros, ±65504 for values).
fn halves(r: &mut Rng, n: usize, specials: &[f32]) -> Vec<f16> {
    (0..n)
        .map(|i| {
            let v = if !specials.is_empty() && i % 7 == 6 {
                specials[i / 7 % specials.len()]
            } else {
                r.uniform(-1.0, 1.0)
            };
            f16::from_f32(v)
        })
        .collect()
}

struct Case {
    dims: AttnDims,
    causal: bool,
    /// A `[Lq, Lk]` additive mask with some −∞.
    masked: bool,
    /// f16's extreme values among q, k and v.
    extremes: bool,
}

/// Forward and backward of `case` in every f16 run against the oracle.
fn check(runs: &[HalfRun], case: &Case, seed: u64) {
    let Case { dims, causal, masked, extremes } = *case;
    let AttnDims { lq, lk, d, dv, .. } = dims;
    let bh = dims.bh();
    let what = format!("f16 attention {dims:?} causal {causal} masked {masked} extremes {extremes}");
    let mut r = rng(seed);
    let tiny: &[f32] = if extremes { &[5.96e-8, -1.2e-7, 6.1035e-5, 0.0, -0.0, 3.0] } else { &[] };
    let big: &[f32] = if extremes { &[65504.0, -65504.0, 6.0e-8, 0.0] } else { &[] };
    let q = halves(&mut r, bh * lq * d, tiny);
    let k = halves(&mut r, bh * lk * d, tiny);
    let v = halves(&mut r, bh * lk * dv, big);
    let gy = halves(&mut r, bh * lq * dv, tiny);
    let mask: Option<Vec<f32>> = masked.then(|| {
        (0..lq * lk).map(|_| if r.below(8) == 0 { f32::NEG_INFINITY } else { r.uniform(-1.0, 1.0) }).collect()
    });
    let strides = [0, 0, lk, 1];
    let scale = 1.0 / (d as f32).sqrt();

    // The oracle: the reference twin's f32 kernels on the widened values.
    let reference = runs[0].dev;
    let f32_buf = |dev: &Device, h: &[f16]| Buffer::from_f32(dev, &widen(h)).unwrap();
    let rm = mask.as_ref().map(|m| Buffer::from_f32(reference, m).unwrap());
    let (rq, rk, rv) = (f32_buf(reference, &q), f32_buf(reference, &k), f32_buf(reference, &v));
    let rmask = rm.as_ref().map(|m| (m, strides));
    let (o32, l32) = attention_forward(&rq, &rk, &rv, rmask, dims, causal, scale).unwrap();
    let want_out = round(&o32.to_f32().unwrap()[..bh * lq * dv]);
    // The backward's oracle reads the rounded output, as the f16 backward does.
    let o16 = f32_buf(reference, &want_out);
    let (dq32, dk32, dv32) =
        attention_backward(&rq, &rk, &rv, &o16, &l32, &f32_buf(reference, &gy), rmask, dims, causal, scale).unwrap();
    let want = [
        round(&dq32.to_f32().unwrap()[..bh * lq * d]),
        round(&dk32.to_f32().unwrap()[..bh * lk * d]),
        round(&dv32.to_f32().unwrap()[..bh * lk * dv]),
    ];

    for run in runs {
        let what = format!("{what} [{}]", run.name());
        let dev = run.dev;
        let h = |x: &[f16]| Buffer::from_f16(dev, x).unwrap();
        let (qb, kb, vb, gb) = (h(&q), h(&k), h(&v), h(&gy));
        let mb = mask.as_ref().map(|m| Buffer::from_f32(dev, m).unwrap());
        let mview = mb.as_ref().map(|m| (m, strides));
        let (out, lse, grads) = run.with(|| {
            let (out, lse) = attention_forward_io(&qb, &kb, &vb, mview, dims, causal, scale, Operands::F16).unwrap();
            let grads =
                attention_backward_io(&qb, &kb, &vb, &out, &lse, &gb, mview, dims, causal, scale, Operands::F16)
                    .unwrap();
            (out, lse, grads)
        });
        let tol = if std::ptr::eq(dev, reference) { 0 } else { 1 };
        within(&format!("{what}: out"), &out.to_f16().unwrap()[..bh * lq * dv], &want_out, tol);
        let (lse, want_lse) = (lse.to_f32().unwrap(), l32.to_f32().unwrap());
        wgrad_gpu_core::testing::assert_close(&format!("{what}: lse"), &lse, &want_lse, 1e-5, 1e-5);
        for (name, (got, want)) in ["dq", "dk", "dv"].iter().zip([&grads.0, &grads.1, &grads.2].into_iter().zip(&want))
        {
            within(&format!("{what}: {name}"), &got.to_f16().unwrap()[..want.len()], want, tol);
        }
    }
}

fn dims(batch: usize, heads: usize, lq: usize, lk: usize, d: usize, dv: usize) -> AttnDims {
    AttnDims { batch, heads, lq, lk, d, dv }
}

#[test]
fn f16_attention_matches_the_f32_kernels_rounded() {
    let (reference, fast) = (Device::cpu_reference(), Device::cpu());
    let gpu = gpu_or_skip("f16_attention_matches_the_f32_kernels_rounded");
    let runs = half_runs(&reference, &fast, gpu.as_ref());
    // Few cases: each (head dims, causal, mask) compiles its own pipelines,
    // for both f16 loads. Rows of whole vec4s (the vector loads) and not
    // (element loads); f16's ends in the second.
    let cases = [
        Case { dims: dims(2, 3, 7, 9, 8, 4), causal: false, masked: false, extremes: false },
        Case { dims: dims(1, 2, 13, 5, 6, 10), causal: true, masked: true, extremes: true },
        Case { dims: dims(2, 1, 1, 33, 2, 2), causal: true, masked: false, extremes: true },
    ];
    for (seed, case) in cases.iter().enumerate() {
        check(&runs, case, seed as u64 + 1);
    }
}

#[test]
fn f16_attention_needs_even_head_dims_and_whole_buffers() {
    let dev = Device::cpu_reference();
    let half = |n: usize| Buffer::from_f16(&dev, &vec![f16::from_f32(0.5); n]).unwrap();
    let d = dims(1, 1, 3, 4, 6, 4);
    let (q, k, v) = (half(3 * 6), half(4 * 6), half(4 * 4));
    assert!(attention_forward_io(&q, &k, &v, None, d, false, 1.0, Operands::F16).is_ok());
    let err = |r: wgrad_gpu_core::Result<(Buffer, Buffer)>| r.unwrap_err().to_string();
    let e = err(attention_forward_io(&q, &k, &v, None, AttnDims { dv: 5, ..d }, false, 1.0, Operands::F16));
    assert!(e.contains("attention_forward") && e.contains("dv is 5") && e.contains("even"), "{e}");
    // A value buffer two halves short; f16 buffers read as f32 (half the bytes).
    let e = err(attention_forward_io(&q, &k, &half(4 * 4 - 2), None, d, false, 1.0, Operands::F16));
    assert!(e.contains("v buffer"), "{e}");
    let e = err(attention_forward_io(&q, &k, &v, None, d, false, 1.0, Operands::F32));
    assert!(e.contains("q buffer"), "{e}");
}

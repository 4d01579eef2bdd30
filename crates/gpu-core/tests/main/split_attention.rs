//! Fused attention past the storage-binding limit: with the limit lowered to
//! 2 KiB, forward and backward run on chunks of batch·heads (whole batch
//! entries under a per-batch mask) and equal the unsplit kernels on a GPU
//! with the adapter's limit, and the CPU twin; f32 and f16 storage, causal
//! and masked.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::attention::{attention_backward_io, attention_forward_io, AttnDims};
use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};
use wgrad_gpu_core::{Buffer, Device, Error};

const LIMIT: u64 = 2048;

/// 3 batch entries of 4 heads: q is 3,456 bytes in f32, k 4,224.
const DIMS: AttnDims = AttnDims { batch: 3, heads: 4, lq: 9, lk: 11, d: 8, dv: 6 };

/// Forward (out, lse) and backward (dq, dk, dv) on `dev`, concatenated,
/// with a key-padding mask `[B, 1, 1, Lk]` or causal; and the launches.
fn attention(dev: &Device, io: Operands, masked: bool) -> (Vec<f32>, u64) {
    let d = DIMS;
    let bh = d.bh();
    let mut r = rng(if masked { 1 } else { 2 });
    let (nq, nk, nv, no) = (bh * d.lq * d.d, bh * d.lk * d.d, bh * d.lk * d.dv, bh * d.lq * d.dv);
    let (q, k, v) = (
        upload_as(dev, &r.vec(nq, -1.0, 1.0), io),
        upload_as(dev, &r.vec(nk, -1.0, 1.0), io),
        upload_as(dev, &r.vec(nv, -1.0, 1.0), io),
    );
    let dout = upload_as(dev, &r.vec(no, -1.0, 1.0), io);
    // Batch entry b hides its last b keys.
    let pad: Vec<f32> = (0..d.batch * d.lk).map(|i| if i % d.lk + i / d.lk >= d.lk { -1e9 } else { 0.0 }).collect();
    let pad = Buffer::from_f32(dev, &pad).unwrap();
    let mask = masked.then_some((&pad, [d.lk, 0, 0, 1]));
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let (out, lse) = attention_forward_io(&q, &k, &v, mask, d, !masked, 0.35, io).unwrap();
    let (dq, dk, dv) = attention_backward_io(&q, &k, &v, &out, &lse, &dout, mask, d, !masked, 0.35, io).unwrap();
    let mut all = values_as(&out, no, io);
    all.extend(lse.to_f32().unwrap()[..bh * d.lq].to_vec());
    all.extend(values_as(&dq, nq, io));
    all.extend(values_as(&dk, nk, io));
    all.extend(values_as(&dv, nv, io));
    (all, dev.stats().dispatches - before)
}

#[test]
fn attention_past_the_limit_runs_on_chunks_of_batch_heads() {
    let Some(small) = fresh_gpu_or_skip("attention_past_the_limit_runs_on_chunks_of_batch_heads") else { return };
    small.set_max_binding_bytes(Some(LIMIT)).unwrap();
    // A device of its own: the unsplit launches are counted exactly (the
    // shared one counts other tests' launches too).
    let whole = fresh_gpu_or_skip("attention_past_the_limit").unwrap();
    let cpu = Device::cpu_reference();
    for io in [Operands::F32, Operands::F16] {
        for masked in [false, true] {
            let what = format!("{io:?}, masked {masked}");
            let (got, launches) = attention(&small, io, masked);
            let (unsplit, one) = attention(&whole, io, masked);
            let (want, _) = attention(&cpu, io, masked);
            assert_close(&format!("{what}: vs unsplit"), &got, &unsplit, 1e-6, 1e-6);
            let tol = if io == Operands::F16 { 1e-2 } else { 1e-4 };
            assert_close(&format!("{what}: vs the CPU twin"), &got, &want, tol, tol);
            // Two chunks at least (f16 halves the sizes), each one forward
            // and two backward launches like the unsplit call.
            assert!(launches >= 2 * one && one >= 3, "{what}: {launches} launches (unsplit {one})");
        }
    }
}

#[test]
fn a_head_past_the_limit_is_the_ops_error() {
    let Some(small) = fresh_gpu_or_skip("a_head_past_the_limit_is_the_ops_error") else { return };
    small.set_max_binding_bytes(Some(LIMIT)).unwrap();
    // One head's k is 80 x 8 f32 = 2,560 bytes.
    let d = AttnDims { batch: 1, heads: 2, lq: 4, lk: 80, d: 8, dv: 8 };
    let b = |n: usize| Buffer::from_f32(&small, &vec![0.5; n]).unwrap();
    let (q, k, v) = (b(2 * 4 * 8), b(2 * 80 * 8), b(2 * 80 * 8));
    let e = attention_forward_io(&q, &k, &v, None, d, false, 1.0, Operands::F32).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::LimitExceeded { .. }) && msg.contains("attention_forward"), "{msg}");
}

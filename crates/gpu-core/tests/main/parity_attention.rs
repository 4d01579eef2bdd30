//! Fused attention, forward and backward: GPU kernel vs CPU twin on odd
//! lengths and head dims, with and without causal masking and with every
//! mask broadcast shape (including fully masked rows); hand-checked values,
//! huge scores, errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::attention::{attention_backward, attention_forward, AttnDims, MAX_HEAD_DIM};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device};

/// How a test mask is laid out over `(batch, head, query, key)`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum MaskKind {
    None,
    /// `[Lq, Lk]`, shared by every batch and head.
    Rows,
    /// `[Lk, Lq]` data read transposed (strides not row-major).
    Transposed,
    /// `[B, 1, 1, Lk]` key padding: batch `b` hides its last `b` keys.
    KeyPadding,
    /// `[B, H, Lq, Lk]`, one value per score.
    Full,
}

const KINDS: [MaskKind; 5] =
    [MaskKind::None, MaskKind::Rows, MaskKind::Transposed, MaskKind::KeyPadding, MaskKind::Full];

/// Mask data and strides; a tenth of the random entries are −∞.
fn make_mask(kind: MaskKind, dims: &AttnDims, r: &mut Rng) -> Option<(Vec<f32>, [usize; 4])> {
    let AttnDims { batch, heads, lq, lk, .. } = *dims;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n).map(|_| if r.below(10) == 0 { f32::NEG_INFINITY } else { r.uniform(-2.0, 2.0) }).collect()
    };
    match kind {
        MaskKind::None => None,
        MaskKind::Rows => Some((random(lq * lk), [0, 0, lk, 1])),
        MaskKind::Transposed => Some((random(lq * lk), [0, 0, 1, lq])),
        MaskKind::KeyPadding => {
            let data = (0..batch * lk).map(|e| if e % lk + e / lk >= lk { f32::NEG_INFINITY } else { 0.0 }).collect();
            Some((data, [lk, 0, 0, 1]))
        }
        MaskKind::Full => Some((random(batch * heads * lq * lk), [heads * lq * lk, lq * lk, lk, 1])),
    }
}

struct Case {
    dims: AttnDims,
    causal: bool,
    mask: MaskKind,
}

/// Runs forward and backward on both devices and compares every output;
/// returns the CPU results `(out, lse, dq, dk, dv)` for further checks.
#[track_caller]
fn check(g: &Device, c: &Device, case: &Case, seed: u64) -> [Vec<f32>; 5] {
    let Case { dims, causal, mask: kind } = *case;
    let AttnDims { lq, lk, d, dv, .. } = dims;
    let bh = dims.bh();
    let what = format!("attention {dims:?} causal {causal} mask {kind:?}");
    let mut r = rng(seed);
    let scale = 1.0 / (d as f32).sqrt();
    let (qg, qc) = both(g, c, &r.vec(bh * lq * d, -1.0, 1.0));
    let (kg, kc) = both(g, c, &r.vec(bh * lk * d, -1.0, 1.0));
    let (vg, vc) = both(g, c, &r.vec(bh * lk * dv, -1.0, 1.0));
    let mask = make_mask(kind, &dims, &mut r);
    let (mg, mc) = match &mask {
        Some((m, s)) => {
            let (mg, mc) = both(g, c, m);
            (Some((mg, *s)), Some((mc, *s)))
        }
        None => (None, None),
    };
    let (og, lg) = attention_forward(&qg, &kg, &vg, mg.as_ref().map(|(b, s)| (b, *s)), dims, causal, scale).unwrap();
    let (oc, lc) = attention_forward(&qc, &kc, &vc, mc.as_ref().map(|(b, s)| (b, *s)), dims, causal, scale).unwrap();
    same(&format!("{what}: out"), &og, &oc, bh * lq * dv, 1e-4, 1e-5);
    same(&format!("{what}: lse"), &lg, &lc, bh * lq, 1e-5, 1e-5);

    // The backward gets the same out and lse on both sides, so it is compared alone.
    let (out, lse) = (oc.to_f32().unwrap(), lc.to_f32().unwrap());
    let (og, oc) = both(g, c, &out[..bh * lq * dv]);
    let (lg, lc) = both(g, c, &lse[..bh * lq]);
    let (gg, gc) = both(g, c, &r.vec(bh * lq * dv, -1.0, 1.0));
    let grads = |q, k, v, o, l, go, m: &Option<(Buffer, [usize; 4])>| {
        attention_backward(q, k, v, o, l, go, m.as_ref().map(|(b, s)| (b, *s)), dims, causal, scale).unwrap()
    };
    let (dqg, dkg, dvg) = grads(&qg, &kg, &vg, &og, &lg, &gg, &mg);
    let (dqc, dkc, dvc) = grads(&qc, &kc, &vc, &oc, &lc, &gc, &mc);
    same(&format!("{what}: dq"), &dqg, &dqc, bh * lq * d, 1e-3, 1e-5);
    same(&format!("{what}: dk"), &dkg, &dkc, bh * lk * d, 1e-3, 1e-5);
    same(&format!("{what}: dv"), &dvg, &dvc, bh * lk * dv, 1e-3, 1e-5);
    let host = |b: &Buffer, n: usize| b.to_f32().unwrap()[..n].to_vec();
    [
        host(&oc, bh * lq * dv),
        lse[..bh * lq].to_vec(),
        host(&dqc, bh * lq * d),
        host(&dkc, bh * lk * d),
        host(&dvc, bh * lk * dv),
    ]
}

fn dims(batch: usize, heads: usize, lq: usize, lk: usize, d: usize, dv: usize) -> AttnDims {
    AttnDims { batch, heads, lq, lk, d, dv }
}

#[test]
fn odd_sizes_match_twin() {
    let Some((g, c)) = devices("odd_sizes_match_twin") else { return };
    let lengths = [(1, 1), (1, 7), (7, 7), (7, 100), (100, 7), (100, 100)];
    let head_dims = [1, 7, 33, 64];
    let mut seed = 0;
    for (si, &(lq, lk)) in lengths.iter().enumerate() {
        for (di, &d) in head_dims.iter().enumerate() {
            // One dv per d keeps the number of compiled kernels down.
            let dv = [7, 33, 64, 1][di];
            let heads = [1, 3][(si + di) % 2];
            for causal in [false, true] {
                // Two kernel variants per head dim (every mask kind across the dims).
                let mask = KINDS[(di + causal as usize) % KINDS.len()];
                seed += 1;
                check(&g, &c, &Case { dims: dims(2, heads, lq, lk, d, dv), causal, mask }, seed);
            }
        }
    }
}

/// The dk/dv pass with each key row shared by 2, 4 or 8 invocations
/// (`Device::set_attention_split`, for GPUs whose registers one row per
/// invocation overflows) against the twin: head dims that split unevenly
/// over the invocations or end inside a chunk, lengths that leave a
/// workgroup part empty, causal rows and masks. The profile shows the
/// split kernel ran.
#[test]
fn key_rows_shared_by_invocations_match_twin() {
    let Some(g) = fresh_gpu_or_skip("key_rows_shared_by_invocations_match_twin") else { return };
    let c = Device::cpu_reference();
    let cases =
        [(4, 7, 33, true, MaskKind::None), (2, 64, 64, false, MaskKind::KeyPadding), (8, 33, 5, true, MaskKind::Full)];
    for (seed, (lanes, d, dv, causal, mask)) in cases.into_iter().enumerate() {
        g.set_attention_split(lanes).unwrap();
        let case = Case { dims: dims(2, 3, 37, 45, d, dv), causal, mask };
        let (_, profile) = g.profile(|| check(&g, &c, &case, 900 + seed as u64)).unwrap();
        let split = profile.launches.iter().filter(|l| l.family.ends_with(":attention_backward_dkv_split")).count();
        assert_eq!(split, 1, "{lanes} lanes, d {d}, dv {dv}: the split dk/dv kernel ran once");
    }
    assert!(g.set_attention_split(3).is_err(), "3 invocations per row divide no workgroup");
}

/// The fast CPU path (per-head sgemms in f32, heads over threads) against
/// the reference twin, on odd sizes, every mask shape, causal, the largest
/// head dims, fully masked rows (key padding) and empty lengths. Needs no GPU.
#[test]
fn fast_cpu_matches_the_reference() {
    let (f, r) = (Device::cpu(), Device::cpu_reference());
    let mut seed = 100;
    for (lq, lk) in [(1, 1), (7, 33), (33, 7), (100, 100), (0, 5), (5, 0)] {
        for (mask, causal) in KINDS.iter().flat_map(|&m| [(m, false), (m, true)]) {
            seed += 1;
            check(&f, &r, &Case { dims: dims(3, 2, lq, lk, 7, 5), causal, mask }, seed);
        }
    }
    check(&f, &r, &Case { dims: dims(1, 2, 9, 13, MAX_HEAD_DIM, MAX_HEAD_DIM), causal: true, mask: MaskKind::Rows }, 7);
    check(&f, &r, &Case { dims: dims(16, 4, 64, 64, 32, 32), causal: true, mask: MaskKind::None }, 8);
}

#[test]
fn every_mask_shape_with_and_without_causal() {
    let Some((g, c)) = devices("every_mask_shape_with_and_without_causal") else { return };
    for (lq, lk) in [(7, 33), (33, 7)] {
        for mask in KINDS {
            for causal in [false, true] {
                check(&g, &c, &Case { dims: dims(3, 3, lq, lk, 7, 5), causal, mask }, 50 + lq as u64);
            }
        }
    }
}

#[test]
fn largest_head_dims_match_twin() {
    let Some((g, c)) = devices("largest_head_dims_match_twin") else { return };
    check(&g, &c, &Case { dims: dims(1, 2, 9, 13, MAX_HEAD_DIM, MAX_HEAD_DIM), causal: true, mask: MaskKind::Rows }, 7);
    check(&g, &c, &Case { dims: dims(2, 1, 5, 6, 129, 255), causal: false, mask: MaskKind::None }, 8);
}

#[test]
fn fully_masked_rows_give_zeros() {
    let Some((g, c)) = devices("fully_masked_rows_give_zeros") else { return };
    // Key padding with every key of batch 1 hidden, and an [Lq, Lk] mask
    // hiding all keys from query rows 0 and 3.
    let (batch, heads, lq, lk, d, dv) = (2, 3, 5, 6, 7, 4);
    let dims = dims(batch, heads, lq, lk, d, dv);
    let pad: Vec<f32> =
        (0..batch * lk).map(|e| if e / lk == 1 || e % lk == 5 { f32::NEG_INFINITY } else { 0.0 }).collect();
    let rows: Vec<f32> =
        (0..lq * lk).map(|e| if e / lk == 0 || e / lk == 3 { f32::NEG_INFINITY } else { (e % 3) as f32 }).collect();
    let mut r = rng(9);
    for dev in [&g, &c] {
        let q = Buffer::from_f32(dev, &r.vec(dims.bh() * lq * d, -1.0, 1.0)).unwrap();
        let k = Buffer::from_f32(dev, &r.vec(dims.bh() * lk * d, -1.0, 1.0)).unwrap();
        let v = Buffer::from_f32(dev, &r.vec(dims.bh() * lk * dv, -1.0, 1.0)).unwrap();
        let go = Buffer::from_f32(dev, &r.vec(dims.bh() * lq * dv, -1.0, 1.0)).unwrap();
        for (m, strides, empty_row) in [
            (&pad, [lk, 0, 0, 1], Box::new(|bh: usize, _: usize| bh / heads == 1) as Box<dyn Fn(usize, usize) -> bool>),
            (&rows, [0, 0, lk, 1], Box::new(|_: usize, i: usize| i == 0 || i == 3)),
        ] {
            let m = Buffer::from_f32(dev, m).unwrap();
            for causal in [false, true] {
                let what = format!("fully masked rows on {} causal {causal} strides {strides:?}", dev.name());
                let (o, l) = attention_forward(&q, &k, &v, Some((&m, strides)), dims, causal, 0.5).unwrap();
                let (dq, dk, dvv) =
                    attention_backward(&q, &k, &v, &o, &l, &go, Some((&m, strides)), dims, causal, 0.5).unwrap();
                let (o, l, dq) = (o.to_f32().unwrap(), l.to_f32().unwrap(), dq.to_f32().unwrap());
                let (dk, dvv) = (dk.to_f32().unwrap(), dvv.to_f32().unwrap());
                for bh in 0..dims.bh() {
                    for i in 0..lq {
                        let row = bh * lq + i;
                        let empty = empty_row(bh, i);
                        assert!(o[row * dv..][..dv].iter().all(|x| x.is_finite()), "{what}: out row {row} finite");
                        if empty {
                            assert_eq!(o[row * dv..][..dv], vec![0.0; dv], "{what}: out row {row}");
                            assert_eq!(dq[row * d..][..d], vec![0.0; d], "{what}: dq row {row}");
                            assert_eq!(l[row], f32::INFINITY, "{what}: lse row {row}");
                        } else {
                            assert!(l[row].is_finite(), "{what}: lse row {row}");
                        }
                    }
                    // Batch 1 of the padding mask: no query sees any key.
                    if strides[0] == lk && bh / heads == 1 {
                        assert_eq!(dk[bh * lk * d..][..lk * d], vec![0.0; lk * d], "{what}: dk of bh {bh}");
                        assert_eq!(dvv[bh * lk * dv..][..lk * dv], vec![0.0; lk * dv], "{what}: dv of bh {bh}");
                    }
                }
                assert!(dq.iter().chain(&dk).chain(&dvv).all(|x| x.is_finite()), "{what}: gradients finite");
            }
        }
    }
    // And the two devices agree on the rest.
    check(&g, &c, &Case { dims, causal: false, mask: MaskKind::KeyPadding }, 10);
}

#[test]
fn hand_checked_values() {
    let mut devs = vec![Device::cpu_reference()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("hand_checked_values"));
    for dev in devs {
        let what = format!("attention on {}", dev.name());
        let b = |x: &[f32]| Buffer::from_f32(&dev, x).unwrap();
        // Weights 1/4 and 3/4: scores 0 and ln 3.
        let (q, k, v) = (b(&[1.0]), b(&[0.0, 3f32.ln()]), b(&[4.0, 8.0]));
        let dims = dims(1, 1, 1, 2, 1, 1);
        let (o, lse) = attention_forward(&q, &k, &v, None, dims, false, 1.0).unwrap();
        assert_close(&what, &o.to_f32().unwrap()[..1], &[7.0], 1e-6, 0.0);
        assert_close(&what, &lse.to_f32().unwrap()[..1], &[4f32.ln()], 1e-6, 0.0);
        // dO = 1: delta = 7, dS = P (v − 7) = [−0.75, 0.75]; dq = Σ dS k,
        // dk = dS q, dv = P.
        let (dq, dk, dv) = attention_backward(&q, &k, &v, &o, &lse, &b(&[1.0]), None, dims, false, 1.0).unwrap();
        assert_close(&what, &dq.to_f32().unwrap()[..1], &[0.75 * 3f32.ln()], 1e-5, 0.0);
        assert_close(&what, &dk.to_f32().unwrap()[..2], &[-0.75, 0.75], 1e-5, 1e-6);
        assert_close(&what, &dv.to_f32().unwrap()[..2], &[0.25, 0.75], 1e-5, 1e-6);
        // The same weights from a mask; the strides of size-1 dims are never used.
        let (k0, m) = (b(&[0.0, 0.0]), b(&[0.0, 3f32.ln()]));
        let (o, _) =
            attention_forward(&q, &k0, &v, Some((&m, [1 << 40, 1 << 40, 1 << 40, 1])), dims, false, 1.0).unwrap();
        assert_close(&what, &o.to_f32().unwrap()[..1], &[7.0], 1e-6, 0.0);

        // q = 0: uniform scores give the mean of v (of v_0..v_i when causal).
        let (lq, lk, d, dv) = (3, 4, 5, 2);
        let v: Vec<f32> = (0..lk * dv).map(|e| e as f32).collect();
        let dims = self::dims(1, 1, lq, lk, d, dv);
        let (q, k, vb) = (b(&vec![0.0; lq * d]), b(&Rng::new(1).vec(lk * d, -1.0, 1.0)), b(&v));
        let (o, lse) = attention_forward(&q, &k, &vb, None, dims, false, 0.3).unwrap();
        let mean = [3.0, 4.0];
        assert_close(&what, &o.to_f32().unwrap()[..lq * dv], &mean.repeat(lq), 1e-6, 1e-6);
        assert_close(&what, &lse.to_f32().unwrap()[..lq], &[4f32.ln(); 3], 1e-6, 0.0);
        let (o, _) = attention_forward(&q, &k, &vb, None, dims, true, 0.3).unwrap();
        assert_close(&what, &o.to_f32().unwrap()[..lq * dv], &[0.0, 1.0, 1.0, 2.0, 2.0, 3.0], 1e-6, 1e-6);
    }
}

#[test]
fn huge_scores_stay_finite() {
    let Some((g, c)) = devices("huge_scores_stay_finite") else { return };
    let (lq, lk, d, dv) = (9, 50, 7, 3);
    let dims = dims(1, 2, lq, lk, d, dv);
    let mut r = rng(11);
    // |q·k| up to ~7e4 at scale 1: naive exp would overflow at 89.
    let (qg, qc) = both(&g, &c, &r.vec(dims.bh() * lq * d, -100.0, 100.0));
    let (kg, kc) = both(&g, &c, &r.vec(dims.bh() * lk * d, -100.0, 100.0));
    let (vg, vc) = both(&g, &c, &r.vec(dims.bh() * lk * dv, -1.0, 1.0));
    let (gg, gc) = both(&g, &c, &r.vec(dims.bh() * lq * dv, -1.0, 1.0));
    for causal in [false, true] {
        let (og, lg) = attention_forward(&qg, &kg, &vg, None, dims, causal, 1.0).unwrap();
        let (oc, lc) = attention_forward(&qc, &kc, &vc, None, dims, causal, 1.0).unwrap();
        // f32 scores near 1e4 carry errors near 1e-3, so weights of close
        // keys may differ by that much relatively.
        same("huge scores: out", &og, &oc, dims.bh() * lq * dv, 1e-2, 1e-3);
        same("huge scores: lse", &lg, &lc, dims.bh() * lq, 1e-5, 1e-2);
        let (dqg, dkg, dvg) = attention_backward(&qg, &kg, &vg, &og, &lg, &gg, None, dims, causal, 1.0).unwrap();
        let (dqc, dkc, dvc) = attention_backward(&qc, &kc, &vc, &oc, &lc, &gc, None, dims, causal, 1.0).unwrap();
        for (name, x) in [("out", &og), ("lse", &lg), ("dq", &dqg), ("dk", &dkg), ("dv", &dvg)] {
            assert!(x.to_f32().unwrap().iter().all(|v| v.is_finite()), "huge scores: {name} has inf/NaN");
        }
        same("huge scores: dv", &dvg, &dvc, dims.bh() * lk * dv, 1e-2, 1e-3);
        same("huge scores: dq", &dqg, &dqc, dims.bh() * lq * d, 1e-2, 1e-1);
        same("huge scores: dk", &dkg, &dkc, dims.bh() * lk * d, 1e-2, 1e-1);
    }
}

#[test]
fn empty_and_bad_sizes() {
    let dev = Device::cpu_reference();
    let b = |n: usize| Buffer::from_f32(&dev, &vec![0.5; n]).unwrap();
    let d = dims(2, 1, 3, 4, 5, 6);
    let (q, k, v) = (b(2 * 3 * 5), b(2 * 4 * 5), b(2 * 4 * 6));
    assert!(attention_forward(&q, &k, &v, None, d, false, 1.0).is_ok());

    // No keys: every row is fully hidden.
    let (o, l) = attention_forward(&q, &k, &v, None, AttnDims { lk: 0, ..d }, true, 1.0).unwrap();
    assert_eq!(o.to_f32().unwrap(), vec![0.0; 36]);
    assert_eq!(l.to_f32().unwrap(), vec![f32::INFINITY; 6]);
    let (o, l) = attention_forward(&q, &k, &v, None, AttnDims { lq: 0, ..d }, false, 1.0).unwrap();
    assert_eq!((o.len_bytes(), l.len_bytes()), (0, 0));

    let err = |r: wgrad_gpu_core::Result<(Buffer, Buffer)>| r.unwrap_err().to_string();
    for bad in [AttnDims { d: 0, ..d }, AttnDims { dv: MAX_HEAD_DIM + 1, ..d }] {
        let e = err(attention_forward(&q, &k, &v, None, bad, false, 1.0));
        assert!(e.contains("attention_forward") && e.contains("head dim") && e.contains("1..=256"), "{e}");
    }
    let e = err(attention_forward(&q, &k, &v, None, AttnDims { lq: 4, ..d }, false, 1.0));
    assert!(e.contains("q buffer"), "{e}");
    let e = err(attention_forward(&q, &k, &b(47), None, d, false, 1.0));
    assert!(e.contains("v buffer"), "{e}");
    // A [B, 1, 1, Lk] padding mask given the strides of a full mask.
    let m = b(2 * 4);
    assert!(attention_forward(&q, &k, &v, Some((&m, [4, 0, 0, 1])), d, false, 1.0).is_ok());
    let e = err(attention_forward(&q, &k, &v, Some((&m, [12, 12, 4, 1])), d, false, 1.0));
    assert!(e.contains("mask") && e.contains("[12, 12, 4, 1]"), "{e}");
    let e = err(attention_forward(&q, &k, &v, None, AttnDims { batch: usize::MAX, ..d }, false, 1.0));
    assert!(e.contains("overflow"), "{e}");

    let (o, l) = attention_forward(&q, &k, &v, None, d, false, 1.0).unwrap();
    let e = attention_backward(&q, &k, &v, &o, &b(5), &o, None, d, false, 1.0).unwrap_err().to_string();
    assert!(e.contains("attention_backward") && e.contains("lse"), "{e}");
    let e = attention_backward(&q, &k, &v, &o, &l, &b(3), None, d, false, 1.0).unwrap_err().to_string();
    assert!(e.contains("output gradient"), "{e}");
    if let Some(g) = wgrad_gpu_core::testing::gpu_or_skip("empty_and_bad_sizes") {
        let kg = Buffer::from_f32(&g, &[0.5; 2 * 4 * 5]).unwrap();
        let e = err(attention_forward(&q, &kg, &v, None, d, false, 1.0));
        assert!(e.contains("attention_forward") && e.contains("different devices"), "{e}");
    }
}

#[test]
fn empty_lengths_on_the_gpu() {
    let Some((g, _)) = devices("empty_lengths_on_the_gpu") else { return };
    let d = dims(2, 1, 3, 4, 5, 6);
    let b = |n: usize| Buffer::from_f32(&g, &vec![0.5; n]).unwrap();
    let (q, k, v) = (b(2 * 3 * 5), b(2 * 4 * 5), b(2 * 4 * 6));
    let no_keys = AttnDims { lk: 0, ..d };
    let (o, l) = attention_forward(&q, &k, &v, None, no_keys, false, 1.0).unwrap();
    assert_eq!(o.to_f32().unwrap()[..36], vec![0.0; 36]);
    assert_eq!(l.to_f32().unwrap()[..6], vec![f32::INFINITY; 6]);
    let (dq, _, _) = attention_backward(&q, &k, &v, &o, &l, &b(36), None, no_keys, false, 1.0).unwrap();
    assert_eq!(dq.to_f32().unwrap()[..30], vec![0.0; 30]);
    // No queries: dk and dv are zeros, not stale pool memory.
    let no_queries = AttnDims { lq: 0, ..d };
    let (o, l) = attention_forward(&q, &k, &v, None, no_queries, false, 1.0).unwrap();
    let (_, dk, dv) = attention_backward(&q, &k, &v, &o, &l, &o, None, no_queries, false, 1.0).unwrap();
    assert_eq!(dk.to_f32().unwrap()[..40], vec![0.0; 40]);
    assert_eq!(dv.to_f32().unwrap()[..48], vec![0.0; 48]);
}

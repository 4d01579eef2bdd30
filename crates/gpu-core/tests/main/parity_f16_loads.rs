//! f32 ops reading f16 inputs (`Operands::F16` loads, f32 arithmetic and
//! results): softmax / log-softmax, fused cross-entropy, row normalisation
//! and every reduction. Each kernel variant (the reference CPU twin, the fast
//! CPU backend, the GPU's packed f16 loads and, with SHADER_F16, its native
//! ones) on f16 data must give the same bits as the same device's f32 kernel
//! on the widened values: loads are exact, so nothing else may differ. The
//! GPU's f16 variants are also checked against the reference twin (parity
//! tolerances). Shapes are awkward (1, 7, 33 and 1023 columns, odd element
//! counts so the last word is half used, strided and offset views for the
//! reductions) and values reach f16's limits (±65504, subnormals).

use crate::common;
use common::{half_runs, widen, HalfRun};
use half::f16;
use wgrad_gpu_core::layout::Layout;
use wgrad_gpu_core::ops::norm::normalize_rows_io;
use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::ops::reduce::{reduce_io, ReduceOp};
use wgrad_gpu_core::ops::softmax::{cross_entropy_rows_io, softmax_rows_io, CeArgs, CeTarget};
use wgrad_gpu_core::testing::{assert_close, gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device};

/// (rows, cols): 1, 7, 33 and 1023 columns, odd totals.
/// 70 rows: the row kernels' thread-per-row entries on CPU adapters.
const SHAPES: &[(usize, usize)] = &[(1, 1), (3, 1), (5, 7), (1, 33), (3, 33), (2, 1023), (3, 1023), (1, 300), (70, 9)];

/// The reference twin, the fast CPU backend and the GPU (packed loads, and
/// native ones where the adapter has SHADER_F16), or `None` without a GPU.
fn devices(test: &str) -> Option<(Device, Device, Device)> {
    Some((Device::cpu_reference(), Device::cpu(), gpu_or_skip(test)?))
}

fn runs<'a>(devs: &'a (Device, Device, Device)) -> Vec<HalfRun<'a>> {
    half_runs(&devs.0, &devs.1, Some(&devs.2))
}

/// `n` f16 values: mostly in [-4, 4), every 5th a large one up to ±65504,
/// every 11th a subnormal, with f16's extremes spelled out near the start.
fn values(seed: u64, n: usize, spread: f32) -> Vec<f16> {
    let mut rng = Rng::new(seed);
    let raw = rng.vec(n, -1.0, 1.0);
    let specials = [65504.0, -65504.0, 6.0e-8, -6.0e-8, 6.1e-5];
    (0..n)
        .map(|i| {
            let v = if i < specials.len() && n > 8 {
                specials[i]
            } else if i % 11 == 3 {
                raw[i] * 6.0e-5
            } else if i % 5 == 2 {
                raw[i] * spread
            } else {
                raw[i] * 4.0
            };
            f16::from_f32(v)
        })
        .collect()
}

/// The same bits (NaN payloads aside).
#[track_caller]
fn same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{what}: element {i}: {a:e} vs {b:e}");
    }
}

/// Reads the first `n` f32 of a buffer.
fn read(b: &Buffer, n: usize) -> Vec<f32> {
    b.to_f32().unwrap()[..n].to_vec()
}

#[test]
fn softmax_reads_f16_rows() {
    let Some(devs) = devices("softmax_reads_f16_rows") else { return };
    for (k, &(rows, cols)) in SHAPES.iter().enumerate() {
        let n = rows * cols;
        // Softmax of ±65504 in one row is a one-hot; keep it for the wide rows only.
        let h = values(10 + k as u64, n, if cols > 8 { 65504.0 } else { 8.0 });
        for log in [false, true] {
            let mut reference = None;
            for run in runs(&devs) {
                let what = format!("softmax log={log} {rows}x{cols} on {}", run.name());
                let x16 = Buffer::from_f16(run.dev, &h).unwrap();
                let x32 = Buffer::from_f32(run.dev, &widen(&h)).unwrap();
                let got = run.with(|| softmax_rows_io(&x16, Operands::F16, rows, cols, log).unwrap());
                let want = softmax_rows_io(&x32, Operands::F32, rows, cols, log).unwrap();
                let got = read(&got, n);
                same_bits(&what, &got, &read(&want, n));
                match &reference {
                    None => reference = Some(got),
                    Some(r) => assert_close(&what, &got, r, 1e-5, 1e-6),
                }
            }
        }
    }
}

#[test]
fn cross_entropy_reads_f16_logits() {
    let Some(devs) = devices("cross_entropy_reads_f16_logits") else { return };
    for (k, &(rows, cols)) in SHAPES.iter().enumerate() {
        let n = rows * cols;
        let h = values(40 + k as u64, n, if cols > 8 { 65504.0 } else { 8.0 });
        let classes: Vec<u32> = (0..rows).map(|r| ((r * 5 + 3) % cols) as u32).collect();
        let probs: Vec<f32> = {
            let mut rng = Rng::new(70 + k as u64);
            let raw = rng.vec(n, 0.0, 1.0);
            raw.chunks(cols).flat_map(|r| r.iter().map(|v| v / r.iter().sum::<f32>()).collect::<Vec<_>>()).collect()
        };
        let weights: Vec<f32> = (0..cols).map(|c| 0.5 + (c % 3) as f32 * 0.25).collect();
        for (case, prob_targets) in [(0, false), (1, true)] {
            let mut reference: Option<Vec<f32>> = None;
            for run in runs(&devs) {
                let what = format!("cross_entropy case {case} {rows}x{cols} on {}", run.name());
                let t = if prob_targets {
                    Buffer::from_f32(run.dev, &probs).unwrap()
                } else {
                    Buffer::from_u32(run.dev, &classes).unwrap()
                };
                let w = Buffer::from_f32(run.dev, &weights).unwrap();
                let args = CeArgs {
                    rows,
                    cols,
                    target: if prob_targets { CeTarget::Probs(&t) } else { CeTarget::Classes(&t) },
                    weight: (!prob_targets).then_some(&w),
                    ignore_index: (!prob_targets && rows > 2).then(|| classes[1]),
                    label_smoothing: 0.1,
                };
                let x16 = Buffer::from_f16(run.dev, &h).unwrap();
                let x32 = Buffer::from_f32(run.dev, &widen(&h)).unwrap();
                let (l16, w16, p16) = run.with(|| cross_entropy_rows_io(&x16, Operands::F16, &args).unwrap());
                let (l32, w32, p32) = cross_entropy_rows_io(&x32, Operands::F32, &args).unwrap();
                same_bits(&format!("{what} loss"), &read(&l16, rows), &read(&l32, rows));
                same_bits(&format!("{what} weight"), &read(&w16, rows), &read(&w32, rows));
                same_bits(&format!("{what} probs"), &read(&p16, n), &read(&p32, n));
                let got = read(&l16, rows);
                match &reference {
                    None => reference = Some(got),
                    Some(r) => assert_close(&what, &got, r, 1e-4, 1e-3),
                }
            }
        }
    }
}

#[test]
fn normalize_rows_reads_f16_rows() {
    let Some(devs) = devices("normalize_rows_reads_f16_rows") else { return };
    for (k, &(rows, cols)) in SHAPES.iter().enumerate() {
        let n = rows * cols;
        let h = values(100 + k as u64, n, 65504.0);
        let mut reference: Option<Vec<f32>> = None;
        for run in runs(&devs) {
            let what = format!("normalize_rows {rows}x{cols} on {}", run.name());
            let x16 = Buffer::from_f16(run.dev, &h).unwrap();
            let x32 = Buffer::from_f32(run.dev, &widen(&h)).unwrap();
            let (y16, m16, r16) = run.with(|| normalize_rows_io(&x16, Operands::F16, rows, cols, 1e-5).unwrap());
            let (y32, m32, r32) = normalize_rows_io(&x32, Operands::F32, rows, cols, 1e-5).unwrap();
            same_bits(&format!("{what} y"), &read(&y16, n), &read(&y32, n));
            same_bits(&format!("{what} mean"), &read(&m16, rows), &read(&m32, rows));
            same_bits(&format!("{what} rstd"), &read(&r16, rows), &read(&r32, rows));
            let got = read(&y16, n);
            match &reference {
                None => reference = Some(got),
                Some(r) => assert_close(&what, &got, r, 1e-3, 1e-3),
            }
        }
    }
}

/// Views of `[a, b, c]` data: contiguous, transposed, and offset by an odd
/// number of halves (so element 0 is a high half).
fn views(a: usize, b: usize, c: usize) -> Vec<(Layout, usize)> {
    let contiguous = Layout::contiguous(&[a, b, c]);
    let span = a * b * c;
    let transposed = Layout { shape: [c, b, a].into(), strides: [1, c, b * c].into(), offset: 0 };
    let offset = Layout { shape: [a, b, c - 1].into(), strides: [b * c, c, 1].into(), offset: 1 };
    vec![(contiguous, span), (transposed, span), (offset, span)]
}

#[test]
fn reductions_read_f16_views() {
    let Some(devs) = devices("reductions_read_f16_views") else { return };
    let shapes = [(1, 1, 3), (3, 5, 7), (2, 3, 33), (1, 2, 1023), (300, 1, 3)];
    let axes_list: [&[usize]; 4] = [&[], &[2], &[0], &[0, 2]];
    for (k, &(a, b, c)) in shapes.iter().enumerate() {
        for (v, (layout, span)) in views(a, b, c).into_iter().enumerate() {
            let h = values(200 + k as u64, span, 65504.0);
            for axes in axes_list {
                for &op in ReduceOp::EXAMPLES {
                    for run in runs(&devs) {
                        let what = format!("{op:?} over {axes:?} of view {v} of {a}x{b}x{c} on {}", run.name());
                        let x16 = Buffer::from_f16(run.dev, &h).unwrap();
                        let x32 = Buffer::from_f32(run.dev, &widen(&h)).unwrap();
                        let (g16, shape) =
                            run.with(|| reduce_io(op, &x16, Operands::F16, &layout, axes, false).unwrap());
                        let (g32, shape32) = reduce_io(op, &x32, Operands::F32, &layout, axes, false).unwrap();
                        assert_eq!(shape, shape32, "{what}");
                        let m = shape.iter().product::<usize>();
                        let (w16, w32) = (g16.to_u32().unwrap(), g32.to_u32().unwrap());
                        let (w16, w32) = (&w16[..m], &w32[..m]);
                        if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
                            assert_eq!(w16, w32, "{what}");
                        } else {
                            let f = |w: &[u32]| w.iter().map(|&b| f32::from_bits(b)).collect::<Vec<_>>();
                            same_bits(&what, &f(w16), &f(w32));
                        }
                    }
                }
            }
        }
    }
}

/// f16's limits read exactly: the largest finite values, the smallest
/// subnormal and the largest subnormal come back unchanged from Max / Min,
/// and sums of subnormals are exact.
#[test]
fn f16_limits_are_read_exactly() {
    let Some(devs) = devices("f16_limits_are_read_exactly") else { return };
    let tiny = f16::from_bits(1); // 2^-24
    let big_sub = f16::from_bits(0x03ff); // largest subnormal
    let h = [tiny, big_sub, f16::from_f32(65504.0), f16::from_f32(-65504.0), tiny, f16::from_bits(0x8001), tiny];
    let layout = Layout::contiguous(&[h.len()]);
    for run in runs(&devs) {
        let x16 = Buffer::from_f16(run.dev, &h).unwrap();
        let one = |op| {
            let (b, _) = run.with(|| reduce_io(op, &x16, Operands::F16, &layout, &[], false).unwrap());
            b.to_f32().unwrap()[0]
        };
        let what = run.name();
        assert_eq!(one(ReduceOp::Max), 65504.0, "{what}");
        assert_eq!(one(ReduceOp::Min), -65504.0, "{what}");
        // Subnormals only: the first two elements, then the last three.
        let sub = Layout { shape: [2].into(), strides: [1].into(), offset: 0 };
        let (b, _) = run.with(|| reduce_io(ReduceOp::Max, &x16, Operands::F16, &sub, &[], false).unwrap());
        assert_eq!(b.to_f32().unwrap()[0], big_sub.to_f32(), "{what}: largest subnormal");
        let tail = Layout { shape: [3].into(), strides: [1].into(), offset: 4 };
        let (b, _) = run.with(|| reduce_io(ReduceOp::Sum, &x16, Operands::F16, &tail, &[], false).unwrap());
        assert_eq!(b.to_f32().unwrap()[0], tiny.to_f32(), "{what}: 2^-24 − 2^-24 + 2^-24");
        let (b, _) = run.with(|| reduce_io(ReduceOp::Min, &x16, Operands::F16, &tail, &[], false).unwrap());
        assert_eq!(b.to_f32().unwrap()[0], -tiny.to_f32(), "{what}: −2^-24");
    }
}

/// A wrong storage size is an error, not a read past the end: f16 needs
/// half the bytes of f32, so an f32-sized check would reject f16 inputs and
/// an f16-sized one must still reject short buffers.
#[test]
fn f16_inputs_are_length_checked() {
    let c = Device::cpu();
    let x = Buffer::from_f16(&c, &[f16::ONE; 7]).unwrap();
    assert!(softmax_rows_io(&x, Operands::F16, 1, 7, false).is_ok());
    assert!(softmax_rows_io(&x, Operands::F16, 1, 9, false).is_err());
    assert!(normalize_rows_io(&x, Operands::F16, 3, 3, 1e-5).is_err());
    assert!(reduce_io(ReduceOp::Sum, &x, Operands::F16, &Layout::contiguous(&[9]), &[], false).is_err());
}

//! Elementwise work too large for one storage binding: with the device's
//! binding limit lowered to 2 KiB, unary and binary ops, their gradients,
//! `where`, the float casts and fused chains of them run as several launches
//! over ranges of their output (each binding windows of its buffers) and
//! equal the CPU twin, with fusion on and off, on dense, broadcast, strided
//! and f16 operands; so do strided copies (`contiguous`, `copy_into`,
//! `concat`), gathers (`index_select`, an embedding lookup, and `gather`),
//! `scatter_add`, `one_hot` and `class_targets` whose indices, outputs or
//! sources are past the limit (index_add, the lookup's backward, in
//! `parity_index_add.rs`). An elementwise op reading a view whose every range of 64
//! outputs reaches across more than the limit (a transposed read of a
//! large tensor) is the op's `LimitExceeded`; a copy of it runs in short ranges.

use crate::common;
use common::*;
use half::f16;
use wgrad_gpu_core::ops::binary::{binary, where_select, BinaryOp};
use wgrad_gpu_core::ops::cast::{f16_to_f32, f32_to_f16};
use wgrad_gpu_core::ops::copy::{concat, contiguous, contiguous_f16, copy_into};
use wgrad_gpu_core::ops::index::{class_targets, gather, index_select, one_hot, scatter_add};
use wgrad_gpu_core::ops::unary::{unary, unary_grad, UnaryOp};
use wgrad_gpu_core::testing::assert_close;
use wgrad_gpu_core::{Buffer, Device, Error, Layout};

/// The lowered binding limit: every case below binds more in one launch.
const LIMIT: u64 = 2048;

/// 3,001 f32 (12 KB, odd so the last range is partial and not a whole word of halves).
const N: usize = 3001;

fn strided(shape: &[usize], strides: &[usize], offset: usize) -> Layout {
    Layout { shape: shape.into(), strides: strides.into(), offset }
}

/// Each case on a device: its result as f32.
type Case = (&'static str, fn(&Device) -> Vec<f32>);

fn upload(dev: &Device, seed: u64, n: usize) -> Buffer {
    Buffer::from_f32(dev, &rng(seed).vec(n, -2.0, 2.0)).unwrap()
}

fn cases() -> Vec<Case> {
    vec![
        ("exp", |d| f32s_of(&unary(UnaryOp::Exp, &upload(d, 1, N), N).unwrap(), N)),
        ("tanh backward", |d| {
            let (x, g) = (upload(d, 2, N), upload(d, 3, N));
            let y = unary(UnaryOp::Tanh, &x, N).unwrap();
            f32s_of(&unary_grad(UnaryOp::Tanh, &x, &y, &g, N).unwrap(), N)
        }),
        ("add, a row broadcast over [30, 101]", |d| {
            let (a, b) = (upload(d, 4, 3030), upload(d, 5, 101));
            let (z, _) =
                binary(BinaryOp::Add, &a, &Layout::contiguous(&[30, 101]), &b, &strided(&[30, 101], &[0, 1], 0))
                    .unwrap();
            f32s_of(&z, 3030)
        }),
        ("mul, every other element at an offset", |d| {
            let (a, b) = (upload(d, 6, N), upload(d, 7, 2 * N + 5));
            let (z, _) = binary(BinaryOp::Mul, &a, &Layout::contiguous(&[N]), &b, &strided(&[N], &[2], 5)).unwrap();
            f32s_of(&z, N)
        }),
        ("where with a scalar branch", |d| {
            let (c, b) = (upload(d, 8, N), upload(d, 9, N));
            let (c, _) = binary(BinaryOp::Gt, &c, &Layout::contiguous(&[N]), &b, &Layout::contiguous(&[N])).unwrap();
            let s = Buffer::from_f32(d, &[0.5]).unwrap();
            let dense = Layout::contiguous(&[N]);
            let (z, _) = where_select(&c, &dense, &s, &strided(&[N], &[0], 0), &b, &dense).unwrap();
            f32s_of(&z, N)
        }),
        ("f32 -> f16 -> f32", |d| {
            let h = f32_to_f16(&upload(d, 10, N), N).unwrap();
            f32s_of(&f16_to_f32(&h, N).unwrap(), N)
        }),
        ("f16 leaf read at an odd offset", |d| {
            let data: Vec<f16> = rng(11).vec(N + 3, -2.0, 2.0).into_iter().map(f16::from_f32).collect();
            let h = Buffer::from_f16(d, &data).unwrap();
            let w = f16_to_f32(&h, N + 3).unwrap();
            let (z, _) =
                binary(BinaryOp::Add, &w, &strided(&[N], &[1], 3), &upload(d, 12, N), &Layout::contiguous(&[N]))
                    .unwrap();
            f32s_of(&z, N)
        }),
        ("relu(exp(x) * y + z) with exp(x) kept", |d| {
            let (x, y, z) = (upload(d, 13, N), upload(d, 14, N), upload(d, 15, N));
            let dense = Layout::contiguous(&[N]);
            let e = unary(UnaryOp::Exp, &x, N).unwrap();
            let (m, _) = binary(BinaryOp::Mul, &e, &dense, &y, &dense).unwrap();
            let (s, _) = binary(BinaryOp::Add, &m, &dense, &z, &dense).unwrap();
            let r = unary(UnaryOp::Relu, &s, N).unwrap();
            drop((m, s));
            let mut out = f32s_of(&r, N);
            out.extend(f32s_of(&e, N));
            out
        }),
        ("f16 store of a fused sum", |d| {
            let (x, y) = (upload(d, 16, N), upload(d, 17, N));
            let dense = Layout::contiguous(&[N]);
            let (s, _) = binary(BinaryOp::Sub, &x, &dense, &y, &dense).unwrap();
            let h = f32_to_f16(&s, N).unwrap();
            drop(s);
            h.to_f16().unwrap()[..N].iter().map(|v| v.to_f32()).collect()
        }),
        ("contiguous of a narrowed, strided view", |d| {
            // Columns 3..53 of every other row of a [120, 60] tensor.
            let x = upload(d, 18, 120 * 60);
            f32s_of(&contiguous(&x, &strided(&[60, 50], &[120, 1], 3)).unwrap(), 3000)
        }),
        ("contiguous_f16 of a narrowed, strided view (odd offset)", |d| {
            let data: Vec<f16> = rng(28).vec(120 * 61, -2.0, 2.0).into_iter().map(f16::from_f32).collect();
            let x = Buffer::from_f16(d, &data).unwrap();
            let y = contiguous_f16(&x, &strided(&[60, 51], &[121, 1], 3)).unwrap();
            y.to_f16().unwrap()[..60 * 51].iter().map(|h| h.to_f32()).collect()
        }),
        ("contiguous of a broadcast row", |d| {
            let x = upload(d, 19, 101);
            f32s_of(&contiguous(&x, &strided(&[30, 101], &[0, 1], 0)).unwrap(), 3030)
        }),
        ("copy_into every third element of a destination", |d| {
            let (x, y) = (upload(d, 20, N), upload(d, 21, 3 * N));
            copy_into(&x, &Layout::contiguous(&[N]), &y, &strided(&[N], &[3], 1)).unwrap();
            f32s_of(&y, 3 * N)
        }),
        ("index_select: an embedding lookup of 300 rows of 10", |d| {
            let table = upload(d, 24, 40 * 10);
            let ids: Vec<u32> = (0..300u32).map(|i| (i * 17 + 3) % 40).collect();
            let ids = Buffer::from_u32(d, &ids).unwrap();
            let (z, _) = index_select(&table, &Layout::contiguous(&[40, 10]), 0, &ids, 300).unwrap();
            f32s_of(&z, 3000)
        }),
        ("gather along the last dim of a [60, 7] tensor (which fits)", |d| {
            let x = upload(d, 25, 60 * 7);
            let idx: Vec<u32> = (0..60 * 50u32).map(|i| (i * 5 + i / 50) % 7).collect();
            let idx = Buffer::from_u32(d, &idx).unwrap();
            f32s_of(&gather(&x, &Layout::contiguous(&[60, 7]), 1, &idx, &[60, 50]).unwrap(), 3000)
        }),
        ("scatter_add: an embedding gradient from 300 rows of 10", |d| {
            let dst = Buffer::from_f32(d, &[0.0; 400]).unwrap();
            let ids: Vec<u32> = (0..300u32).map(|i| (i * 17 + 3) % 40).collect();
            let index: Vec<u32> = ids.iter().flat_map(|&i| [i; 10]).collect();
            let index = Buffer::from_u32(d, &index).unwrap();
            scatter_add(&dst, &[40, 10], 0, &index, &upload(d, 27, 3000), &[300, 10]).unwrap();
            f32s_of(&dst, 400)
        }),
        ("one_hot of 300 rows of 11 classes", |d| {
            let ids: Vec<u32> = (0..300u32).map(|i| (i * 7) % 13).collect();
            f32s_of(&one_hot(&Buffer::from_u32(d, &ids).unwrap(), 300, 11).unwrap(), 3300)
        }),
        ("class_targets of 3,000 targets, some ignored", |d| {
            let t: Vec<u32> = (0..3000u32).map(|i| if i % 17 == 0 { 99 } else { i % 10 }).collect();
            let (safe, keep) = class_targets(&Buffer::from_u32(d, &t).unwrap(), 3000, 10, Some(99)).unwrap();
            let mut v: Vec<f32> = safe.to_u32().unwrap()[..3000].iter().map(|&x| x as f32).collect();
            v.extend(f32s_of(&keep, 3000));
            v
        }),
        ("concat along the last dim", |d| {
            let (a, b) = (upload(d, 22, 40 * 37), upload(d, 23, 40 * 40));
            let (z, _) =
                concat(&[(&a, &Layout::contiguous(&[40, 37])), (&b, &Layout::contiguous(&[40, 40]))], 1).unwrap();
            f32s_of(&z, 40 * 77)
        }),
    ]
}

#[test]
fn elementwise_ops_past_the_limit_run_in_ranges_and_equal_the_twin() {
    let Some(small) = limited_gpu("elementwise_ops_past_the_limit_run_in_ranges_and_equal_the_twin", LIMIT) else {
        return;
    };
    let cpu = Device::cpu_reference();
    for fusion in [true, false] {
        small.set_fusion(fusion).unwrap();
        for (what, case) in cases() {
            small.flush().unwrap();
            let before = small.stats().dispatches;
            let got = case(&small);
            let launches = small.stats().dispatches - before;
            let want = case(&cpu);
            let what = format!("{what} (fusion {fusion})");
            // (scatter_add adds in the order its atomics run.)
            assert_close(&what, &got, &want, 1e-6, 1e-5);
            // Uploads are not launches; every case binds 12 KB somewhere, so
            // some launch split into at least 6 ranges of at most 2 KiB.
            assert!(launches >= 6, "{what}: {launches} launches");
        }
    }
}

#[test]
fn a_read_too_wide_to_split_is_the_ops_limit_error() {
    let Some(small) = limited_gpu("a_read_too_wide_to_split_is_the_ops_limit_error", LIMIT) else { return };
    // A [30, 101] tensor read transposed: each output row reaches across all of it.
    let a = upload(&small, 20, 3030);
    let b = upload(&small, 21, 3030);
    let t = strided(&[101, 30], &[1, 101], 0);
    let e = binary(BinaryOp::Add, &a, &t, &b, &Layout::contiguous(&[101, 30])).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::LimitExceeded { .. }), "{msg}");
    assert!(msg.contains("binary") && msg.contains("max_storage_buffer_binding_size"), "{msg}");
    // A copy has no aligned output to keep, so its ranges may be as short
    // as one element: the transposed copy runs in many short ranges.
    let y = f32s_of(&contiguous(&a, &t).unwrap(), 3030);
    let x = f32s_of(&a, 3030);
    let want: Vec<f32> = (0..3030).map(|i| x[(i % 30) * 101 + i / 30]).collect();
    assert_eq!(y, want, "transposed copy");
    // An index out of range in a later range of a split gather is still
    // the next readback's error.
    let mut ids: Vec<u32> = vec![1; 3000];
    ids[2999] = 50;
    let ids = Buffer::from_u32(&small, &ids).unwrap();
    let table = upload(&small, 26, 40);
    let (z, _) = index_select(&table, &Layout::contiguous(&[40, 1]), 0, &ids, 3000).unwrap();
    let e = z.to_f32().unwrap_err();
    assert!(matches!(e, Error::IndexOutOfRange { index: 50, .. }), "{e}");
    // The device keeps working, and the same sum read densely splits.
    let (z, _) = binary(BinaryOp::Add, &a, &Layout::contiguous(&[3030]), &b, &Layout::contiguous(&[3030])).unwrap();
    let (x, y) = (a.to_f32().unwrap(), b.to_f32().unwrap());
    let want: Vec<f32> = x.iter().zip(&y).take(3030).map(|(p, q)| p + q).collect();
    assert_close("dense sum", &f32s_of(&z, 3030), &want, 1e-6, 1e-6);
}

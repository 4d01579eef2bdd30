//! Row kernels past the storage-binding limit: with the limit lowered to
//! 2 KiB, softmax, log-softmax (f32 and f16 input), their backward, the
//! fused cross-entropy forward and backward (class targets with weights,
//! an ignored class and label smoothing; probability targets) and the row
//! normalisation under layer/group/instance norm (f32 and f16 input,
//! forward and backward) run in ranges of whole rows, each binding windows
//! of its buffers, and equal the CPU twin. So do the batch-norm kernels
//! that apply layer norm's affine part (forward with residual and ReLU,
//! gradient sums, affine input gradient) and batch norm's training step
//! (statistics with the running update, the training input gradient), on
//! chunks of rows. A row that alone is past the limit is `LimitExceeded`; an
//! out-of-range class in a later range is still reported.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::batch_norm::{
    batch_norm_backward, batch_norm_forward, batch_norm_grad_sums, batch_norm_stats, Centre, ChannelDims, Running,
};
use wgrad_gpu_core::ops::norm::{
    normalize_rows_affine_backward, normalize_rows_affine_io, normalize_rows_backward, normalize_rows_io,
};
use wgrad_gpu_core::ops::softmax::{
    cross_entropy_rows_backward, cross_entropy_rows_io, softmax_rows_backward, softmax_rows_io, CeArgs, CeTarget,
    Operands,
};
use wgrad_gpu_core::testing::assert_close;
use wgrad_gpu_core::{Buffer, Device, Error};

const LIMIT: u64 = 2048;

/// 37 rows of 50 (7,400 bytes): several ranges, the last partial, rows
/// starting at unaligned bytes.
const ROWS: usize = 37;
const COLS: usize = 50;

fn logits(dev: &Device, io: Operands) -> Buffer {
    upload_as(dev, &rng(1).vec(ROWS * COLS, -4.0, 4.0), io)
}

/// Softmax and log-softmax forward and backward on `dev`, concatenated;
/// and the launches they took.
fn softmaxes(dev: &Device, io: Operands) -> (Vec<f32>, u64) {
    let n = ROWS * COLS;
    let (x, dy) = (logits(dev, io), Buffer::from_f32(dev, &rng(2).vec(n, -1.0, 1.0)).unwrap());
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let mut out = Vec::new();
    for log in [false, true] {
        let y = softmax_rows_io(&x, io, ROWS, COLS, log).unwrap();
        let dx = softmax_rows_backward(&y, &dy, ROWS, COLS, log).unwrap();
        out.extend(f32s_of(&y, n));
        out.extend(f32s_of(&dx, n));
    }
    (out, dev.stats().dispatches - before)
}

/// Cross-entropy forward (loss, weight, probabilities) and backward.
fn cross_entropy(dev: &Device, probs_target: bool) -> (Vec<f32>, u64) {
    let n = ROWS * COLS;
    let x = logits(dev, Operands::F32);
    let classes: Vec<u32> = (0..ROWS as u32).map(|r| (r * 7) % COLS as u32).collect();
    let target = if probs_target {
        let mut p = rng(3).vec(n, 0.0, 1.0);
        for row in p.chunks_mut(COLS) {
            let s: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= s);
        }
        Buffer::from_f32(dev, &p).unwrap()
    } else {
        Buffer::from_u32(dev, &classes).unwrap()
    };
    let weight = Buffer::from_f32(dev, &rng(4).vec(COLS, 0.5, 2.0)).unwrap();
    let grad = Buffer::from_f32(dev, &rng(5).vec(ROWS, -1.0, 1.0)).unwrap();
    let args = CeArgs {
        rows: ROWS,
        cols: COLS,
        target: if probs_target { CeTarget::Probs(&target) } else { CeTarget::Classes(&target) },
        weight: Some(&weight),
        ignore_index: (!probs_target).then_some(14),
        label_smoothing: 0.1,
    };
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let (loss, w, probs) = cross_entropy_rows_io(&x, Operands::F32, &args).unwrap();
    let dx = cross_entropy_rows_backward(&probs, &args, &grad).unwrap();
    let mut out = f32s_of(&loss, ROWS);
    out.extend(f32s_of(&w, ROWS));
    out.extend(f32s_of(&probs, n));
    out.extend(f32s_of(&dx, n));
    (out, dev.stats().dispatches - before)
}

/// Row normalisation forward (y, mean, rstd) and backward.
fn normalization(dev: &Device, io: Operands) -> (Vec<f32>, u64) {
    let n = ROWS * COLS;
    let (x, dy) = (logits(dev, io), Buffer::from_f32(dev, &rng(7).vec(n, -1.0, 1.0)).unwrap());
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let (y, mean, rstd) = normalize_rows_io(&x, io, ROWS, COLS, 1e-5).unwrap();
    let dx = normalize_rows_backward(&dy, &y, &rstd, ROWS, COLS).unwrap();
    let mut out = f32s_of(&y, n);
    out.extend(f32s_of(&mean, ROWS));
    out.extend(f32s_of(&rstd, ROWS));
    out.extend(f32s_of(&dx, n));
    (out, dev.stats().dispatches - before)
}

/// Layer norm's fused affine rows: forward (y, z, mean, rstd) and backward.
fn affine_rows(dev: &Device, io: Operands) -> (Vec<f32>, u64) {
    let n = ROWS * COLS;
    let (x, dz) = (logits(dev, io), Buffer::from_f32(dev, &rng(8).vec(n, -1.0, 1.0)).unwrap());
    let (w, b) = (
        Buffer::from_f32(dev, &rng(9).vec(COLS, -2.0, 2.0)).unwrap(),
        Buffer::from_f32(dev, &rng(10).vec(COLS, -1.0, 1.0)).unwrap(),
    );
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let (y, z, mean, rstd) = normalize_rows_affine_io(&x, io, (ROWS, COLS, 1e-5), &w, Some(&b)).unwrap();
    let dx = normalize_rows_affine_backward(&dz, &y, &rstd, &w, (ROWS, COLS)).unwrap();
    let mut out = f32s_of(&y, n);
    out.extend(f32s_of(&z, n));
    out.extend(f32s_of(&mean, ROWS));
    out.extend(f32s_of(&rstd, ROWS));
    out.extend(f32s_of(&dx, n));
    (out, dev.stats().dispatches - before)
}

/// The batch-norm kernels on `[A, C, B]` = [81, 5, 3] (odd rows, so f16
/// chunks start on even rows): forward with stats, weight, bias, residual
/// and ReLU; the gradient sums; the affine input gradient with the
/// residual's.
fn affine(dev: &Device, io: Operands) -> (Vec<f32>, u64) {
    let d = ChannelDims { outer: 81, channels: 5, inner: 3 };
    let n = 81 * 15;
    let act = |v: &[f32]| upload_as(dev, v, io);
    let back = |b: &Buffer| values_as(b, n, io);
    let (x, res, dy) =
        (act(&rng(8).vec(n, -2.0, 2.0)), act(&rng(9).vec(n, -1.0, 1.0)), act(&rng(10).vec(n, -1.0, 1.0)));
    let mut stats = rng(11).vec(5, -0.5, 0.5);
    stats.extend(rng(12).vec(5, 0.5, 2.0));
    let stats = Buffer::from_f32(dev, &stats).unwrap();
    let (w, b) = (
        Buffer::from_f32(dev, &rng(13).vec(5, 0.5, 1.5)).unwrap(),
        Buffer::from_f32(dev, &rng(14).vec(5, -1.0, 1.0)).unwrap(),
    );
    let centre = Centre::Stats(&stats);
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let y = batch_norm_forward(&x, d, centre, Some(&w), Some(&b), Some(&res), true, io).unwrap();
    let (db, dw) = batch_norm_grad_sums(&dy, &x, Some(&y), d, centre, io).unwrap();
    let (dx, dres) = batch_norm_backward(&dy, &x, Some(&y), d, centre, Some(&w), None, true, io).unwrap();
    let mut out = back(&y);
    out.extend(f32s_of(&db, 5));
    out.extend(f32s_of(&dw, 5));
    out.extend(back(&dx));
    out.extend(back(&dres.expect("the residual's gradient")));
    (out, dev.stats().dispatches - before)
}

/// Batch norm's training step on [81, 5, 3]: statistics with the running
/// update, the forward, the gradient sums and the training input gradient.
fn batch_norm_training(dev: &Device, io: Operands) -> (Vec<f32>, u64) {
    let d = ChannelDims { outer: 81, channels: 5, inner: 3 };
    let n = 81 * 15;
    let act = |v: &[f32]| upload_as(dev, v, io);
    let back = |b: &Buffer| values_as(b, n, io);
    // Values far from 0 with a small spread: a variance that E[x²] − E[x]² would lose.
    let x: Vec<f32> = rng(15).vec(n, 2.0, 3.0);
    let (x, dy) = (act(&x), act(&rng(16).vec(n, -1.0, 1.0)));
    let up = |v: Vec<f32>| Buffer::from_f32(dev, &v).unwrap();
    let (rm, rv, w) = (up(rng(17).vec(5, -1.0, 1.0)), up(rng(18).vec(5, 0.5, 2.0)), up(rng(19).vec(5, 0.5, 1.5)));
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let running = Running { mean: &rm, var: &rv, momentum: 0.1 };
    let stats = batch_norm_stats(&x, d, 1e-5, Some(running), io).unwrap();
    let (new_mean, new_var) = (&rm, &rv); // updated in place
    let centre = Centre::Stats(&stats);
    let y = batch_norm_forward(&x, d, centre, Some(&w), None, None, false, io).unwrap();
    let (db, dw) = batch_norm_grad_sums(&dy, &x, None, d, centre, io).unwrap();
    let (dx, _) = batch_norm_backward(&dy, &x, None, d, centre, Some(&w), Some((&db, &dw)), false, io).unwrap();
    let mut out = f32s_of(&stats, 10);
    out.extend(f32s_of(new_mean, 5));
    out.extend(f32s_of(new_var, 5));
    out.extend(back(&y));
    out.extend(back(&dx));
    (out, dev.stats().dispatches - before)
}

#[test]
fn row_kernels_past_the_limit_run_in_ranges_of_rows_and_equal_the_twin() {
    let Some(small) = limited_gpu("row_kernels_past_the_limit_run_in_ranges_of_rows_and_equal_the_twin", LIMIT) else {
        return;
    };
    let cpu = Device::cpu_reference();
    for io in [Operands::F32, Operands::F16] {
        let (got, launches) = softmaxes(&small, io);
        let (want, _) = softmaxes(&cpu, io);
        assert_close(&format!("softmax family, {io:?} input"), &got, &want, 1e-5, 1e-6);
        // Four kernels over 7,400-byte buffers: at least 4 ranges each.
        assert!(launches >= 16, "{io:?}: {launches} launches");
    }
    for probs in [false, true] {
        let (got, launches) = cross_entropy(&small, probs);
        let (want, _) = cross_entropy(&cpu, probs);
        assert_close(&format!("cross-entropy, probability targets {probs}"), &got, &want, 1e-5, 1e-6);
        assert!(launches >= 8, "{launches} launches");
    }
    for io in [Operands::F32, Operands::F16] {
        let (got, launches) = normalization(&small, io);
        let (want, _) = normalization(&cpu, io);
        assert_close(&format!("row normalisation, {io:?} input"), &got, &want, 1e-4, 1e-5);
        assert!(launches >= 8, "{io:?}: {launches} launches");
        let (got, launches) = affine_rows(&small, io);
        let (want, _) = affine_rows(&cpu, io);
        assert_close(&format!("layer norm's affine rows, {io:?} input"), &got, &want, 1e-4, 1e-5);
        assert!(launches >= 8, "{io:?}: {launches} launches");
        let (got, launches) = affine(&small, io);
        let (want, _) = affine(&cpu, io);
        let tol = if io == Operands::F16 { 2e-3 } else { 1e-5 };
        assert_close(&format!("batch-norm affine kernels, {io:?}"), &got, &want, tol, tol);
        assert!(launches >= 8, "{io:?}: {launches} launches");
        let (got, launches) = batch_norm_training(&small, io);
        let (want, _) = batch_norm_training(&cpu, io);
        let tol = if io == Operands::F16 { 4e-3 } else { 1e-4 };
        assert_close(&format!("batch-norm training step, {io:?}"), &got, &want, tol, tol);
        assert!(launches >= 8, "{io:?}: {launches} launches");
    }
}

#[test]
fn a_row_past_the_limit_is_an_error_and_bad_classes_are_still_reported() {
    let Some(small) = limited_gpu("a_row_past_the_limit_is_an_error_and_bad_classes_are_still_reported", LIMIT) else {
        return;
    };
    // One row of 600 values (2,400 bytes) cannot be split.
    let x = Buffer::from_f32(&small, &rng(6).vec(2 * 600, -1.0, 1.0)).unwrap();
    let e = softmax_rows_io(&x, Operands::F32, 2, 600, false).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::LimitExceeded { .. }) && msg.contains("softmax"), "{msg}");
    // A class past the vocabulary in the last range of rows.
    let x = logits(&small, Operands::F32);
    let mut classes: Vec<u32> = vec![3; ROWS];
    classes[ROWS - 1] = COLS as u32 + 2;
    let t = Buffer::from_u32(&small, &classes).unwrap();
    let args = CeArgs {
        rows: ROWS,
        cols: COLS,
        target: CeTarget::Classes(&t),
        weight: None,
        ignore_index: None,
        label_smoothing: 0.0,
    };
    let (loss, _, _) = cross_entropy_rows_io(&x, Operands::F32, &args).unwrap();
    let e = loss.to_f32().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::IndexOutOfRange { .. }) && msg.contains(&format!("{}", COLS + 2)), "{msg}");
}

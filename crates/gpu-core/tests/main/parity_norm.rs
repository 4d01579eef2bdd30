//! Row normalisation and its fused backward: GPU kernel vs CPU twin on
//! awkward row counts and lengths, hand-checked values, errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::norm::{
    normalize_rows, normalize_rows_affine_backward, normalize_rows_affine_io, normalize_rows_backward, Operands,
};
use wgrad_gpu_core::testing::assert_close;
use wgrad_gpu_core::{Buffer, Device};

/// Runs forward and backward on both devices and compares every output.
#[track_caller]
fn check(g: &Device, c: &Device, x: &[f32], dy: &[f32], rows: usize, cols: usize, eps: f32) {
    let what = format!("normalize_rows {rows}×{cols} eps {eps}");
    let (xg, xc) = both(g, c, x);
    let (yg, mg, rg) = normalize_rows(&xg, rows, cols, eps).unwrap();
    let (yc, mc, rc) = normalize_rows(&xc, rows, cols, eps).unwrap();
    same(&format!("{what}: y"), &yg, &yc, rows * cols, 1e-4, 1e-5);
    same(&format!("{what}: mean"), &mg, &mc, rows, 1e-5, 1e-6);
    same(&format!("{what}: rstd"), &rg, &rc, rows, 1e-5, 1e-6);

    // The backward gets the same y and rstd on both sides, so it is compared alone.
    let (dg, dc) = both(g, c, dy);
    let y = yc.to_f32().unwrap();
    let rstd = rc.to_f32().unwrap();
    let (ygb, ycb) = both(g, c, &y[..rows * cols]);
    let (rgb, rcb) = both(g, c, &rstd[..rows]);
    let dxg = normalize_rows_backward(&dg, &ygb, &rgb, rows, cols).unwrap();
    let dxc = normalize_rows_backward(&dc, &ycb, &rcb, rows, cols).unwrap();
    same(&format!("{what}: dx"), &dxg, &dxc, rows * cols, 1e-4, 1e-5);
}

#[test]
fn normalize_rows_and_backward_match_twin() {
    let Some((g, c)) = devices("normalize_rows_and_backward_match_twin") else { return };
    let mut r = rng(30);
    for rows in [1, 3, 1023] {
        for cols in [1, 7, 33, 257, 1000] {
            let x = r.vec(rows * cols, -3.0, 3.0);
            let dy = r.vec(rows * cols, -1.0, 1.0);
            check(&g, &c, &x, &dy, rows, cols, 1e-5);
        }
    }
}

/// Layer norm's affine in the normalisation's launches: on both devices,
/// `y`, `mean` and `rstd` are the plain kernel's bit for bit, `z` is
/// `y · w + b` from that `y`, and the backward is the plain backward of
/// `dz · w`; one launch each way on a GPU. Rows short and long (a thread
/// per row and a workgroup per row on CPU adapters), with and without a
/// bias, f32 and f16 input.
#[test]
fn affine_rows_match_the_plain_kernel_and_the_twin() {
    let Some((g, c)) = devices("affine_rows_match_the_plain_kernel_and_the_twin") else { return };
    let mut r = rng(32);
    for (i, (rows, cols)) in [(3, 7), (70, 33), (5, 300), (1, 1)].into_iter().enumerate() {
        let x = r.vec(rows * cols, -3.0, 3.0);
        let (w, b) = (r.vec(cols, -2.0, 2.0), r.vec(cols, -1.0, 1.0));
        let dz = r.vec(rows * cols, -1.0, 1.0);
        let with_bias = i % 2 == 0;
        let io = if i == 2 { Operands::F16 } else { Operands::F32 };
        let what = format!("affine {rows}×{cols} bias={with_bias} {io:?}");
        let mut outs = Vec::new();
        for dev in [&g, &c] {
            let xb = match io {
                Operands::F32 => Buffer::from_f32(dev, &x).unwrap(),
                Operands::F16 => {
                    Buffer::from_f16(dev, &x.iter().map(|&v| half::f16::from_f32(v)).collect::<Vec<_>>()).unwrap()
                }
            };
            let (wb, bb) = (Buffer::from_f32(dev, &w).unwrap(), Buffer::from_f32(dev, &b).unwrap());
            let (y, z, mean, rstd) =
                normalize_rows_affine_io(&xb, io, (rows, cols, 1e-5), &wb, with_bias.then_some(&bb)).unwrap();
            let (py, pm, pr) = wgrad_gpu_core::ops::norm::normalize_rows_io(&xb, io, rows, cols, 1e-5).unwrap();
            let n = rows * cols;
            let read = |b: &Buffer, len: usize| b.to_f32().unwrap()[..len].to_vec();
            let (yv, zv) = (read(&y, n), read(&z, n));
            assert_eq!(yv, read(&py, n), "{what} on {}: y is the plain kernel's", dev.name());
            assert_eq!(read(&mean, rows), read(&pm, rows), "{what} on {}: mean", dev.name());
            assert_eq!(read(&rstd, rows), read(&pr, rows), "{what} on {}: rstd", dev.name());
            let want: Vec<f32> = yv
                .iter()
                .enumerate()
                .map(|(k, &v)| v * w[k % cols] + if with_bias { b[k % cols] } else { 0.0 })
                .collect();
            assert_close(&format!("{what} on {}: z", dev.name()), &zv, &want, 1e-6, 1e-6);
            let dzb = Buffer::from_f32(dev, &dz).unwrap();
            let dx = normalize_rows_affine_backward(&dzb, &y, &rstd, &wb, (rows, cols)).unwrap();
            let dxv = read(&dx, n);
            let scaled: Vec<f32> = dz.iter().enumerate().map(|(k, &v)| v * w[k % cols]).collect();
            let plain =
                normalize_rows_backward(&Buffer::from_f32(dev, &scaled).unwrap(), &y, &rstd, rows, cols).unwrap();
            assert_close(&format!("{what} on {}: dx", dev.name()), &dxv, &read(&plain, n), 1e-5, 1e-6);
            outs.push((yv, zv, dxv));
        }
        assert_close(&format!("{what}: y, GPU vs twin"), &outs[0].0, &outs[1].0, 1e-4, 1e-5);
        assert_close(&format!("{what}: z, GPU vs twin"), &outs[0].1, &outs[1].1, 1e-4, 1e-5);
        assert_close(&format!("{what}: dx, GPU vs twin"), &outs[0].2, &outs[1].2, 1e-4, 1e-5);
    }
    // Launches counted on a device of the test's own.
    let Some(alone) = wgrad_gpu_core::testing::fresh_gpu_or_skip("affine rows (launches)") else { return };
    for (rows, cols) in [(70, 33), (5, 300)] {
        let x = Buffer::from_f32(&alone, &r.vec(rows * cols, -3.0, 3.0)).unwrap();
        let w = Buffer::from_f32(&alone, &r.vec(cols, -2.0, 2.0)).unwrap();
        let dz = Buffer::from_f32(&alone, &r.vec(rows * cols, -1.0, 1.0)).unwrap();
        alone.synchronize().unwrap();
        let before = alone.stats().dispatches;
        let (y, _, _, rstd) = normalize_rows_affine_io(&x, Operands::F32, (rows, cols, 1e-5), &w, Some(&w)).unwrap();
        let forward = alone.stats().dispatches - before;
        drop(normalize_rows_affine_backward(&dz, &y, &rstd, &w, (rows, cols)).unwrap().to_f32().unwrap());
        assert_eq!(
            (forward, alone.stats().dispatches - before - forward),
            (1, 1),
            "{rows}×{cols}: one launch each way"
        );
    }
}

#[test]
fn large_offsets_keep_their_precision() {
    let Some((g, c)) = devices("large_offsets_keep_their_precision") else { return };
    let mut r = rng(31);
    // 70 rows run one thread per row on CPU adapters (`*_serial`), 5 a workgroup per row.
    for (rows, cols) in [(5, 300), (70, 300)] {
        // Mean 1000, spread 0.1: one-pass E[x²] − E[x]² would lose every digit in f32.
        let x: Vec<f32> = r.vec(rows * cols, -0.1, 0.1).iter().map(|v| v + 1000.0).collect();
        let dy = r.vec(rows * cols, -1.0, 1.0);
        check(&g, &c, &x, &dy, rows, cols, 0.0);
    }
}

#[test]
fn hand_checked_values() {
    let mut devs = vec![Device::cpu_reference()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("hand_checked_values"));
    for dev in devs {
        let x = Buffer::from_f32(&dev, &[1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 4.0, 4.0]).unwrap();
        let (y, mean, rstd) = normalize_rows(&x, 2, 4, 0.0).unwrap();
        let s = 1.0 / 1.25f32.sqrt();
        let what = format!("normalize_rows on {}", dev.name());
        assert_close(&what, &mean.to_f32().unwrap()[..2], &[2.5, 3.0], 1e-6, 0.0);
        assert_close(&what, &rstd.to_f32().unwrap()[..2], &[s, 1.0], 1e-6, 0.0);
        let want = [-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s, -1.0, -1.0, 1.0, 1.0];
        assert_close(&what, &y.to_f32().unwrap()[..8], &want, 1e-6, 1e-7);

        // dy = y gives dx = rstd·(y − 0 − y·mean(y²)) = 0 (mean(y²) = 1 at eps 0).
        let y1 = Buffer::from_f32(&dev, &y.to_f32().unwrap()[..4]).unwrap();
        let dx = normalize_rows_backward(&y1, &y1, &rstd, 1, 4).unwrap().to_f32().unwrap();
        assert_close(&what, &dx[..4], &[0.0; 4], 0.0, 1e-6);
        // A constant dy is removed by the centring.
        let ones = Buffer::from_f32(&dev, &[1.0; 4]).unwrap();
        let dx = normalize_rows_backward(&ones, &y1, &rstd, 1, 4).unwrap().to_f32().unwrap();
        assert_close(&what, &dx[..4], &[0.0; 4], 0.0, 1e-6);

        // Rows of one element normalise to 0 (variance 0, finite eps).
        let (y, _, rstd) = normalize_rows(&x, 8, 1, 1e-5).unwrap();
        assert_eq!(y.to_f32().unwrap()[..8], [0.0; 8]);
        assert_close(&what, &rstd.to_f32().unwrap()[..1], &[1e-5f32.sqrt().recip()], 1e-5, 0.0);
    }
}

#[test]
fn empty_and_bad_sizes() {
    let dev = Device::cpu_reference();
    let x = Buffer::from_f32(&dev, &[0.0; 6]).unwrap();
    let (_, mean, _) = normalize_rows(&x, 0, 6, 1e-5).unwrap();
    assert_eq!(mean.len_bytes(), 0);
    let e = normalize_rows(&x, 6, 0, 1e-5).unwrap_err().to_string();
    assert!(e.contains("normalize_rows") && e.contains("0 columns"), "{e}");
    let e = normalize_rows(&x, 2, 4, 1e-5).unwrap_err().to_string();
    assert!(e.contains("input buffer"), "{e}");
    let short = Buffer::from_f32(&dev, &[1.0; 2]).unwrap();
    let e = normalize_rows_backward(&x, &x, &short, 3, 2).unwrap_err().to_string();
    assert!(e.contains("normalize_rows_backward") && e.contains("rstd"), "{e}");
}

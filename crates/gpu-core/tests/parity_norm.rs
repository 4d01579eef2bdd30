//! Row normalisation and its fused backward: GPU kernel vs CPU twin on
//! awkward row counts and lengths, hand-checked values, errors.

mod common;
use common::*;
use wgrad_gpu_core::ops::norm::{normalize_rows, normalize_rows_backward};
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

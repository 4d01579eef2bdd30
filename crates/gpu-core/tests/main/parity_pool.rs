//! Max, average and adaptive average pooling and their backward passes: GPU
//! kernels vs CPU twins on awkward geometries, hand-checked values, errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::pool::{
    adaptive_avg_pool2d, adaptive_avg_pool2d_backward, avg_pool2d, avg_pool2d_backward, max_pool2d,
    max_pool2d_backward, PoolWindow,
};
use wgrad_gpu_core::{Buffer, Device};

type Pair = (usize, usize);

/// (input shape, kernel, stride, padding, dilation).
const FIXED: &[(&[usize], Pair, Pair, Pair, Pair)] = &[
    // stride 2 over odd sizes, with padding
    (&[2, 3, 7, 9], (3, 3), (2, 2), (1, 1), (1, 1)),
    // overlapping windows (stride < kernel), no padding
    (&[2, 1, 5, 6], (3, 3), (1, 1), (0, 0), (1, 1)),
    // batch 1, mixed kernel, stride and padding per dim
    (&[1, 2, 6, 11], (2, 4), (3, 2), (1, 2), (1, 1)),
    // a 1×1 image
    (&[3, 2, 1, 1], (1, 1), (1, 1), (0, 0), (1, 1)),
    // more threads than one workgroup
    (&[2, 4, 33, 35], (3, 3), (2, 2), (1, 1), (1, 1)),
    // windows that do not overlap (max backward's one-window path): the
    // usual 2×2/2 over an odd height (its last row in no window), with more
    // argmax entries than one 4,096-texel texture row
    (&[2, 8, 41, 40], (2, 2), (2, 2), (0, 0), (1, 1)),
    // gaps between windows (stride > kernel) and padding
    (&[1, 3, 10, 11], (2, 3), (3, 3), (1, 1), (1, 1)),
];

/// Dilated windows (max pooling only).
const DILATED: &[(&[usize], Pair, Pair, Pair, Pair)] =
    &[(&[1, 2, 9, 8], (3, 2), (1, 2), (1, 0), (2, 2)), (&[2, 3, 11, 7], (3, 3), (2, 1), (1, 1), (2, 3))];

/// Windows with `ceil_mode`: output sizes rounded up, so the last window
/// runs past the padded input (a 3×3/2 window over an even size, as
/// torchvision's GoogLeNet pools), a window that would start in the right
/// padding dropped (5 rows, 2×2/2, padding 1: 3 windows, not 4), a window
/// larger than the whole input, gaps between windows, more than one
/// workgroup, and (max pooling only) dilation.
const CEIL: &[(&[usize], Pair, Pair, Pair, Pair)] = &[
    (&[2, 3, 8, 9], (3, 3), (2, 2), (0, 0), (1, 1)),
    (&[1, 2, 5, 7], (2, 2), (2, 2), (1, 1), (1, 1)),
    (&[2, 1, 2, 3], (3, 3), (2, 2), (0, 1), (1, 1)),
    (&[1, 3, 10, 11], (3, 2), (3, 3), (1, 1), (1, 1)),
    (&[2, 4, 34, 33], (3, 3), (2, 2), (0, 0), (1, 1)),
    (&[1, 2, 9, 8], (3, 2), (2, 2), (1, 0), (2, 2)),
];

/// The cases of one pooling: every fixed window, then the `ceil_mode`
/// ones; with `dilated` (max pooling) those with dilation too.
fn windows(dilated: bool) -> Vec<(&'static [usize], PoolWindow)> {
    let floor = FIXED.iter().chain(if dilated { DILATED } else { &[] }).map(|c| (c, false));
    let ceil = CEIL.iter().map(|c| (c, true));
    floor
        .chain(ceil)
        .filter(|((.., d), _)| dilated || *d == (1, 1))
        .map(|(&(shape, k, s, p, d), ceil)| (shape, window(k, s, p, d).ceil_mode(ceil)))
        .collect()
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Random data, or data with few distinct values so windows hold ties.
fn data(r: &mut wgrad_gpu_core::testing::Rng, n: usize, ties: bool) -> Vec<f32> {
    let v = r.vec(n, -2.0, 2.0);
    if ties {
        v.iter().map(|x| (x * 2.0).round() / 2.0).collect()
    } else {
        v
    }
}

#[test]
fn max_pool_and_backward_match_twin() {
    let Some((g, c)) = devices("max_pool_and_backward_match_twin") else { return };
    let mut r = rng(20);
    for (shape, w) in windows(true) {
        for ties in [false, true] {
            let what = format!("max_pool2d {shape:?} {w:?} ties {ties}");
            let (xg, xc) = both(&g, &c, &data(&mut r, numel(shape), ties));
            let (yg, ig, sg) = max_pool2d(&xg, shape, w).unwrap();
            let (yc, ic, sc) = max_pool2d(&xc, shape, w).unwrap();
            assert_eq!(sg, sc, "{what}: shapes");
            let n = numel(&sg);
            assert_eq!(yg.to_u32().unwrap()[..n], yc.to_u32().unwrap()[..n], "{what}: values");
            assert_eq!(ig.to_u32().unwrap()[..n], ic.to_u32().unwrap()[..n], "{what}: argmax");

            let (gg, gc) = both(&g, &c, &r.vec(n, -1.0, 1.0));
            let dg = max_pool2d_backward(&gg, &ig, shape, w).unwrap();
            let dc = max_pool2d_backward(&gc, &ic, shape, w).unwrap();
            same(&format!("{what}: backward"), &dg, &dc, numel(shape), 1e-6, 1e-6);
        }
    }
}

/// `relu(max_pool2d(x))` in one launch: kernel vs twin, and both vs
/// max pooling of `relu(x)` (the same values; that argmax where the maximum
/// is positive, none where it is not, so the backward passes no gradient
/// there, ReLU's derivative).
#[test]
fn relu_max_pool_matches_twin_and_pooling_the_relu() {
    use wgrad_gpu_core::ops::pool::{max_pool2d_relu_io, Operands};
    let Some((g, c)) = devices("relu_max_pool_matches_twin_and_pooling_the_relu") else { return };
    let mut r = rng(23);
    let (mut positive, mut zero) = (0, 0);
    for (shape, w) in windows(true) {
        let what = format!("relu_max_pool2d {shape:?} {w:?}");
        let x = data(&mut r, numel(shape), true);
        let (xg, xc) = both(&g, &c, &x);
        let (yg, ig, sg) = max_pool2d_relu_io(&xg, shape, w, Operands::F32).unwrap();
        let (yc, ic, sc) = max_pool2d_relu_io(&xc, shape, w, Operands::F32).unwrap();
        assert_eq!(sg, sc, "{what}: shapes");
        let n = numel(&sg);
        let (values, args) = (yc.to_f32().unwrap()[..n].to_vec(), ic.to_u32().unwrap()[..n].to_vec());
        assert_eq!(yg.to_u32().unwrap()[..n], yc.to_u32().unwrap()[..n], "{what}: values");
        assert_eq!(ig.to_u32().unwrap()[..n], args, "{what}: argmax");

        // The unary table's ReLU (PyTorch's x < 0 ? 0 : x: NaN and -0.0 kept).
        let relu: Vec<f32> = x.iter().map(|&v| if v < 0.0 { 0.0 } else { v }).collect();
        let (y0, i0, _) = max_pool2d(&Buffer::from_f32(&c, &relu).unwrap(), shape, w).unwrap();
        let (y0, i0) = (y0.to_f32().unwrap(), i0.to_u32().unwrap());
        positive += values.iter().filter(|&&v| v > 0.0).count();
        zero += values.iter().filter(|&&v| v == 0.0).count();
        for o in 0..n {
            assert_eq!(values[o].to_bits(), y0[o].to_bits(), "{what}: value {o}");
            // ReLU's gradient passes unless its output is <= 0 (NaN passes).
            let want = if y0[o] > 0.0 || y0[o].is_nan() { i0[o] } else { u32::MAX };
            assert_eq!(args[o], want, "{what}: argmax {o} of a window with maximum {}", y0[o]);
        }

        let (gg, gc) = both(&g, &c, &r.vec(n, -1.0, 1.0));
        let dg = max_pool2d_backward(&gg, &ig, shape, w).unwrap();
        let dc = max_pool2d_backward(&gc, &ic, shape, w).unwrap();
        same(&format!("{what}: backward"), &dg, &dc, numel(shape), 1e-6, 1e-6);
    }
    assert!(positive > 100 && zero > 100, "windows with a positive maximum {positive}, without {zero}");
}

#[test]
fn avg_pool_and_backward_match_twin() {
    let Some((g, c)) = devices("avg_pool_and_backward_match_twin") else { return };
    let mut r = rng(21);
    for (shape, w) in windows(false) {
        for count_pad in [true, false] {
            let what = format!("avg_pool2d {shape:?} {w:?} count_include_pad {count_pad}");
            let (xg, xc) = both(&g, &c, &r.vec(numel(shape), -2.0, 2.0));
            let (yg, sg) = avg_pool2d(&xg, shape, w, count_pad).unwrap();
            let (yc, sc) = avg_pool2d(&xc, shape, w, count_pad).unwrap();
            assert_eq!(sg, sc, "{what}: shapes");
            let n = numel(&sg);
            same(&what, &yg, &yc, n, 1e-6, 1e-6);

            let (gg, gc) = both(&g, &c, &r.vec(n, -1.0, 1.0));
            let dg = avg_pool2d_backward(&gg, shape, w, count_pad).unwrap();
            let dc = avg_pool2d_backward(&gc, shape, w, count_pad).unwrap();
            same(&format!("{what}: backward"), &dg, &dc, numel(shape), 1e-6, 1e-6);
        }
    }
}

#[test]
fn adaptive_avg_pool_and_backward_match_twin() {
    let Some((g, c)) = devices("adaptive_avg_pool_and_backward_match_twin") else { return };
    let mut r = rng(22);
    let cases: &[(&[usize], Pair)] = &[
        (&[2, 3, 7, 5], (3, 2)),   // non-divisible: overlapping windows
        (&[1, 2, 10, 9], (4, 3)),  // batch 1, one dim divides
        (&[2, 2, 5, 7], (5, 7)),   // identity
        (&[3, 4, 6, 9], (1, 1)),   // global average pooling
        (&[1, 1, 5, 2], (8, 3)),   // output larger than input
        (&[2, 8, 17, 19], (5, 6)), // more threads than one workgroup
    ];
    for &(shape, out) in cases {
        let what = format!("adaptive_avg_pool2d {shape:?} -> {out:?}");
        let (xg, xc) = both(&g, &c, &r.vec(numel(shape), -2.0, 2.0));
        let (yg, sg) = adaptive_avg_pool2d(&xg, shape, out).unwrap();
        let (yc, sc) = adaptive_avg_pool2d(&xc, shape, out).unwrap();
        assert_eq!(sg, sc, "{what}: shapes");
        assert_eq!(sg, vec![shape[0], shape[1], out.0, out.1], "{what}: shape");
        let n = numel(&sg);
        same(&what, &yg, &yc, n, 1e-6, 1e-6);

        let (gg, gc) = both(&g, &c, &r.vec(n, -1.0, 1.0));
        let dg = adaptive_avg_pool2d_backward(&gg, shape, out).unwrap();
        let dc = adaptive_avg_pool2d_backward(&gc, shape, out).unwrap();
        same(&format!("{what}: backward"), &dg, &dc, numel(shape), 1e-6, 1e-6);
    }
}

/// Devices the hand-checked values run on: the CPU twin, plus the GPU when present.
fn every_device(test: &str) -> Vec<Device> {
    let mut v = vec![Device::cpu_reference()];
    v.extend(wgrad_gpu_core::testing::gpu_or_skip(test));
    v
}

#[test]
fn hand_checked_values() {
    for dev in every_device("hand_checked_values") {
        // 1×1×4×4 = 0..16 row-major.
        let x = Buffer::from_f32(&dev, &(0..16).map(|v| v as f32).collect::<Vec<_>>()).unwrap();
        let shape = [1, 1, 4, 4];

        let (y, idx, s) = max_pool2d(&x, &shape, window((2, 2), (2, 2), (0, 0), (1, 1))).unwrap();
        assert_eq!(s, vec![1, 1, 2, 2]);
        assert_eq!(y.to_f32().unwrap()[..4], [5.0, 7.0, 13.0, 15.0]);
        assert_eq!(idx.to_u32().unwrap()[..4], [5, 7, 13, 15]);
        let g = Buffer::from_f32(&dev, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let dx =
            max_pool2d_backward(&g, &idx, &shape, window((2, 2), (2, 2), (0, 0), (1, 1))).unwrap().to_f32().unwrap();
        let mut want = [0.0; 16];
        (want[5], want[7], want[13], want[15]) = (1.0, 2.0, 3.0, 4.0);
        assert_eq!(dx[..16], want);

        // Overlapping 3×3 windows with stride 1: the centre pixels win several windows.
        let (_, idx, s) = max_pool2d(&x, &shape, window((3, 3), (1, 1), (1, 1), (1, 1))).unwrap();
        assert_eq!(s, vec![1, 1, 4, 4]);
        let ones = Buffer::from_f32(&dev, &[1.0; 16]).unwrap();
        let dx =
            max_pool2d_backward(&ones, &idx, &shape, window((3, 3), (1, 1), (1, 1), (1, 1))).unwrap().to_f32().unwrap();
        assert_eq!(dx[..16], [0., 0., 0., 0., 0., 1., 1., 2., 0., 1., 1., 2., 0., 2., 2., 4.]);

        // Corner window of a padded 3×3 average: 4 real elements of 9 positions.
        let (y, _) = avg_pool2d(&x, &shape, window((3, 3), (1, 1), (1, 1), (1, 1)), true).unwrap();
        assert_eq!(y.to_f32().unwrap()[0], (0.0 + 1.0 + 4.0 + 5.0) / 9.0);
        let (y, _) = avg_pool2d(&x, &shape, window((3, 3), (1, 1), (1, 1), (1, 1)), false).unwrap();
        assert_eq!(y.to_f32().unwrap()[0], (0.0 + 1.0 + 4.0 + 5.0) / 4.0);

        // Adaptive 4 -> 3 rows: windows [0,2), [1,3), [2,4).
        let (y, s) = adaptive_avg_pool2d(&x, &shape, (3, 1)).unwrap();
        assert_eq!(s, vec![1, 1, 3, 1]);
        assert_eq!(y.to_f32().unwrap()[..3], [3.5, 7.5, 11.5]);
        let (y, _) = adaptive_avg_pool2d(&x, &shape, (1, 1)).unwrap();
        assert_eq!(y.to_f32().unwrap()[0], 7.5);
    }
}

#[test]
fn max_pool_ties_pick_the_first_and_nan_wins() {
    for dev in every_device("max_pool_ties_pick_the_first_and_nan_wins") {
        let x = Buffer::from_f32(&dev, &[1.0, 3.0, 3.0, 2.0, 0.0, f32::NAN, 1.0, 1.0]).unwrap();
        let (y, idx, _) = max_pool2d(&x, &[1, 2, 2, 2], window((2, 2), (2, 2), (0, 0), (1, 1))).unwrap();
        assert_eq!(idx.to_u32().unwrap()[..2], [1, 1]);
        let y = y.to_f32().unwrap();
        assert_eq!(y[0], 3.0);
        assert!(y[1].is_nan());
    }
}

#[test]
fn bad_geometry_is_an_error_naming_the_op() {
    let dev = Device::cpu_reference();
    let x = Buffer::from_f32(&dev, &[0.0; 64]).unwrap();
    let msg = |e: wgrad_gpu_core::Error| e.to_string();
    let e = msg(max_pool2d(&x, &[4, 4, 4], window((2, 2), (2, 2), (0, 0), (1, 1))).unwrap_err());
    assert!(e.contains("max_pool2d") && e.contains("[4, 4, 4]"), "{e}");
    let e = msg(avg_pool2d(&x, &[1, 1, 8, 8], window((2, 2), (2, 2), (2, 0), (1, 1)), true).unwrap_err());
    assert!(e.contains("avg_pool2d") && e.contains("padding"), "{e}");
    let e = msg(max_pool2d(&x, &[1, 1, 8, 8], window((0, 2), (1, 1), (0, 0), (1, 1))).unwrap_err());
    assert!(e.contains("positive"), "{e}");
    let e = msg(max_pool2d(&x, &[1, 1, 2, 8], window((2, 2), (1, 1), (0, 0), (2, 1))).unwrap_err());
    assert!(e.contains("window extent"), "{e}");
    let e = msg(adaptive_avg_pool2d(&x, &[1, 1, 8, 8], (0, 2)).unwrap_err());
    assert!(e.contains("adaptive_avg_pool2d"), "{e}");
    let short = Buffer::from_f32(&dev, &[0.0; 3]).unwrap();
    let e = msg(max_pool2d(&short, &[1, 1, 2, 2], window((2, 2), (2, 2), (0, 0), (1, 1))).unwrap_err());
    assert!(e.contains("input buffer"), "{e}");
}

//! Batch norm on [A, C, B] data: GPU kernels vs CPU twins for the statistics
//! (with the running update), the fused forward (weight, bias, residual,
//! ReLU, training and evaluation statistics, normalised input), the gradient
//! sums and the input gradient, on awkward shapes; hand-checked values; errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::batch_norm::{
    batch_norm_backward, batch_norm_eval_stats, batch_norm_forward, batch_norm_grad_sums, batch_norm_stats, Centre,
    ChannelDims, Running,
};
use wgrad_gpu_core::ops::operands::Operands::F32;
use wgrad_gpu_core::testing::assert_close;
use wgrad_gpu_core::{Buffer, Device};

/// (N, C, H·W): single values, prime channel counts, 7x5 and 33x33 planes,
/// planes of a multiple of 4 (the vec4 elementwise entries), a large N·HW,
/// batches long enough to be split into several row chunks.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 2),
    (2, 3, 1),
    (1, 17, 35),
    (1, 2, 4),
    (3, 5, 64),
    (1, 3, 1089),
    (5, 17, 35),
    (64, 3, 1),
    (37, 1, 3),
    (40, 17, 35),
    (128, 3, 1024),
];

fn dims(&(outer, channels, inner): &(usize, usize, usize)) -> ChannelDims {
    ChannelDims { outer, channels, inner }
}

/// Reads a CPU buffer back as a vector (for feeding both sides the same values).
fn host(b: &Buffer, n: usize) -> Vec<f32> {
    b.to_f32().unwrap()[..n].to_vec()
}

/// Statistics and the running update on both devices; returns the CPU's
/// `[mean; rstd]` so later checks start from the same statistics.
fn check_stats(g: &Device, c: &Device, x: &[f32], d: ChannelDims, what: &str) -> Vec<f32> {
    let ch = d.channels;
    let (xg, xc) = both(g, c, x);
    let mut r = rng(7);
    let (rmg, rmc) = both(g, c, &r.vec(ch, -1.0, 1.0));
    let (rvg, rvc) = both(g, c, &r.vec(ch, 0.5, 2.0));
    let running = d.count() > 1;
    let run = |m, v| running.then_some(Running { mean: m, var: v, momentum: 0.1 });
    let before = host(&rmc, ch);
    let sg = batch_norm_stats(&xg, d, 1e-5, run(&rmg, &rvg), F32).unwrap();
    let sc = batch_norm_stats(&xc, d, 1e-5, run(&rmc, &rvc), F32).unwrap();
    same(&format!("{what}: stats"), &sg, &sc, 2 * ch, 1e-4, 1e-5);
    // The running statistics are updated in place (or left alone without them).
    same(&format!("{what}: running_mean"), &rmg, &rmc, ch, 1e-5, 1e-6);
    same(&format!("{what}: running_var"), &rvg, &rvc, ch, 1e-4, 1e-6);
    assert_eq!(host(&rmc, ch) != before, running, "{what}: running_mean updated exactly when asked");
    // Evaluation statistics from the same running values.
    let eg = batch_norm_eval_stats(&rmg, &rvg, ch, 1e-3).unwrap();
    let ec = batch_norm_eval_stats(&rmc, &rvc, ch, 1e-3).unwrap();
    same(&format!("{what}: eval stats"), &eg, &ec, 2 * ch, 1e-5, 1e-6);
    host(&sc, 2 * ch)
}

/// Every forward variant, the gradient sums and the input gradient.
fn check_rest(g: &Device, c: &Device, x: &[f32], stats: &[f32], d: ChannelDims, what: &str) {
    let (n, ch) = (d.numel(), d.channels);
    let mut r = rng(8);
    let (xg, xc) = both(g, c, x);
    let (sg, sc) = both(g, c, stats);
    let (wg, wc) = both(g, c, &r.vec(ch, -2.0, 2.0));
    let (bg, bc) = both(g, c, &r.vec(ch, -1.0, 1.0));
    let (resg, resc) = both(g, c, &r.vec(n, -1.0, 1.0));
    let (dyg, dyc) = both(g, c, &r.vec(n, -1.0, 1.0));
    for normalized in [false, true] {
        let (cg, cc) = if normalized {
            (Centre::Normalized, Centre::Normalized)
        } else {
            (Centre::Stats(&sg), Centre::Stats(&sc))
        };
        for (affine, residual, relu) in
            [(true, false, false), (true, false, true), (true, true, true), (false, true, false), (false, false, true)]
        {
            let what = format!("{what} normalized={normalized} affine={affine} residual={residual} relu={relu}");
            let pick = |b, on: bool| on.then_some(b);
            let yg =
                batch_norm_forward(&xg, d, cg, pick(&wg, affine), pick(&bg, affine), pick(&resg, residual), relu, F32)
                    .unwrap();
            let yc =
                batch_norm_forward(&xc, d, cc, pick(&wc, affine), pick(&bc, affine), pick(&resc, residual), relu, F32)
                    .unwrap();
            same(&format!("{what}: y"), &yg, &yc, n, 1e-4, 1e-5);
            if relu {
                assert!(host(&yc, n).iter().all(|&v| v >= 0.0), "{what}: ReLU output has negatives");
            }

            // Backward from the same output on both sides (it decides the ReLU mask).
            let (ygb, ycb) = both(g, c, &host(&yc, n));
            let (og, oc) = (pick(&ygb, relu), pick(&ycb, relu));
            let (dbg, dwg) = batch_norm_grad_sums(&dyg, &xg, og, d, cg, F32).unwrap();
            let (dbc, dwc) = batch_norm_grad_sums(&dyc, &xc, oc, d, cc, F32).unwrap();
            same(&format!("{what}: Σdy'"), &dbg, &dbc, ch, 1e-4, 1e-4);
            same(&format!("{what}: Σdy'·xhat"), &dwg, &dwc, ch, 1e-4, 1e-4);
            let (dbg, dbc) = both(g, c, &host(&dbc, ch));
            let (dwg, dwc) = both(g, c, &host(&dwc, ch));
            for train in [false, true] {
                if train && normalized {
                    continue;
                }
                let what = format!("{what} train={train}");
                let (dxg, drg) = batch_norm_backward(
                    &dyg,
                    &xg,
                    og,
                    d,
                    cg,
                    pick(&wg, affine),
                    train.then_some((&dbg, &dwg)),
                    residual,
                    F32,
                )
                .unwrap();
                let (dxc, drc) = batch_norm_backward(
                    &dyc,
                    &xc,
                    oc,
                    d,
                    cc,
                    pick(&wc, affine),
                    train.then_some((&dbc, &dwc)),
                    residual,
                    F32,
                )
                .unwrap();
                same(&format!("{what}: dx"), &dxg, &dxc, n, 1e-4, 1e-4);
                assert_eq!(drg.is_some(), residual, "{what}: residual gradient presence");
                if let (Some(a), Some(b)) = (drg, drc) {
                    same(&format!("{what}: dres"), &a, &b, n, 0.0, 0.0);
                }
            }
        }
    }
}

#[test]
fn batch_norm_matches_twin() {
    let Some((g, c)) = devices("batch_norm_matches_twin") else { return };
    let mut r = rng(40);
    for shape in SHAPES {
        let d = dims(shape);
        let x = r.vec(d.numel(), -3.0, 3.0);
        let what = format!("batch_norm {shape:?}");
        let stats = check_stats(&g, &c, &x, d, &what);
        // The large shape is for the reductions; the elementwise kernels get the rest.
        if d.numel() < 100_000 {
            check_rest(&g, &c, &x, &stats, d, &what);
        }
    }
}

#[test]
fn large_offsets_keep_their_precision() {
    let Some((g, c)) = devices("batch_norm_large_offsets") else { return };
    let mut r = rng(41);
    // Mean 1000, spread 0.1: a one-pass E[x²] − E[x]² would lose every digit in f32.
    let d = ChannelDims { outer: 48, channels: 3, inner: 49 };
    let x: Vec<f32> = r.vec(d.numel(), -0.1, 0.1).iter().map(|v| v + 1000.0).collect();
    check_stats(&g, &c, &x, d, "batch_norm offset 1000");
}

#[test]
fn hand_checked_values() {
    let mut devs = vec![Device::cpu_reference()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("batch_norm_hand_checked_values"));
    for dev in devs {
        let what = format!("batch_norm on {}", dev.name());
        // [N=2, C=2, B=2]: channel 0 holds 1, 2, 5, 6; channel 1 holds 3, 4, 7, 8.
        let x = Buffer::from_f32(&dev, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
        let d = ChannelDims { outer: 2, channels: 2, inner: 2 };
        let rm = Buffer::from_f32(&dev, &[0.0, 1.0]).unwrap();
        let rv = Buffer::from_f32(&dev, &[1.0, 2.0]).unwrap();
        let stats = batch_norm_stats(&x, d, 0.0, Some(Running { mean: &rm, var: &rv, momentum: 0.1 }), F32).unwrap();
        // Means 3.5 and 5.5, biased variance 4.25, unbiased 17/3.
        let s = 1.0 / 4.25f32.sqrt();
        assert_close(&what, &stats.to_f32().unwrap()[..4], &[3.5, 5.5, s, s], 1e-6, 0.0);
        // Updated in place.
        assert_close(&what, &rm.to_f32().unwrap()[..2], &[0.35, 0.9 + 0.55], 1e-6, 0.0);
        let uv = 17.0 / 3.0 * 0.1;
        assert_close(&what, &rv.to_f32().unwrap()[..2], &[0.9 + uv, 1.8 + uv], 1e-6, 0.0);

        // weight 2, bias -1, ReLU: channel 0's xhat is (-2.5, -1.5, 1.5, 2.5)·s.
        let w = Buffer::from_f32(&dev, &[2.0, 1.0]).unwrap();
        let b = Buffer::from_f32(&dev, &[-1.0, 0.0]).unwrap();
        let y = batch_norm_forward(&x, d, Centre::Stats(&stats), Some(&w), Some(&b), None, true, F32).unwrap();
        let relu = |v: f32| v.max(0.0);
        let want = [
            relu(-5.0 * s - 1.0),
            relu(-3.0 * s - 1.0),
            relu(-2.5 * s),
            relu(-1.5 * s),
            relu(3.0 * s - 1.0),
            relu(5.0 * s - 1.0),
            relu(1.5 * s),
            relu(2.5 * s),
        ];
        assert_close(&what, &y.to_f32().unwrap()[..8], &want, 1e-6, 1e-7);

        // dy = 1 everywhere: the sums count the unmasked outputs and add their xhat.
        let ones = Buffer::from_f32(&dev, &[1.0; 8]).unwrap();
        let (db, dw) = batch_norm_grad_sums(&ones, &x, Some(&y), d, Centre::Stats(&stats), F32).unwrap();
        assert_close(&what, &db.to_f32().unwrap()[..2], &[2.0, 2.0], 1e-6, 1e-7);
        assert_close(&what, &dw.to_f32().unwrap()[..2], &[4.0 * s, 4.0 * s], 1e-6, 1e-7);
        // Without the mask a constant dy is removed entirely by the centring.
        let (db, dw) = batch_norm_grad_sums(&ones, &x, None, d, Centre::Stats(&stats), F32).unwrap();
        let (dx, _) =
            batch_norm_backward(&ones, &x, None, d, Centre::Stats(&stats), Some(&w), Some((&db, &dw)), false, F32)
                .unwrap();
        assert_close(&what, &dx.to_f32().unwrap()[..8], &[0.0; 8], 0.0, 1e-6);
    }
}

#[test]
fn zero_size_and_errors() {
    let mut devs = vec![Device::cpu_reference()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("batch_norm_zero_size_and_errors"));
    for dev in devs {
        let empty = Buffer::from_f32(&dev, &[]).unwrap();
        let d = ChannelDims { outer: 0, channels: 3, inner: 4 };
        // No values per channel: no statistics (PyTorch returns an empty output and
        // leaves the running statistics alone; autograd does that without calling this).
        let err = batch_norm_stats(&empty, d, 1e-5, None, F32).unwrap_err().to_string();
        assert!(err.contains("no values per channel"), "{err}");
        // The elementwise kernels and the sums accept empty input.
        let stats = Buffer::from_f32(&dev, &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
        batch_norm_forward(&empty, d, Centre::Stats(&stats), None, None, None, true, F32).unwrap();
        let (db, dw) = batch_norm_grad_sums(&empty, &empty, None, d, Centre::Stats(&stats), F32).unwrap();
        assert_close("empty sums", &db.to_f32().unwrap()[..3], &[0.0; 3], 0.0, 0.0);
        assert_close("empty sums", &dw.to_f32().unwrap()[..3], &[0.0; 3], 0.0, 0.0);
        // Short buffers are errors naming the op.
        let x = Buffer::from_f32(&dev, &[1.0; 5]).unwrap();
        let d = ChannelDims { outer: 2, channels: 1, inner: 3 };
        let err = batch_norm_stats(&x, d, 1e-5, None, F32).unwrap_err().to_string();
        assert!(err.contains("batch_norm_stats"), "{err}");
        let short = Buffer::from_f32(&dev, &[0.0]).unwrap();
        let err = batch_norm_forward(
            &x,
            ChannelDims { outer: 1, channels: 1, inner: 5 },
            Centre::Stats(&short),
            None,
            None,
            None,
            false,
            F32,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("stats"), "{err}");
    }
}

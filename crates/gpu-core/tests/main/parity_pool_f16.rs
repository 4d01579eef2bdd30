//! Pooling on f16 values (`Operands::F16`: the input and output gradient
//! read as f16, the output and input gradient written as f16, the argmax
//! u32, the arithmetic f32). Every f16 variant (the reference and fast CPU
//! twins, the GPU's packed and native f16 loads) against the oracle: the
//! reference twin's f32 kernels on the widened values, rounded to f16 (max
//! pooling and its backward: the same bits; averages: within one f16 ulp,
//! the same bits on the CPU). On the f32 tests' geometries plus odd output
//! and input counts (the last packed word half used, its high half 0),
//! adaptive sizes that do not divide, data with subnormals and ±65504; then
//! hand-made cases that only pass with f32 sums rounded once (an average
//! whose f16 sum would overflow, a gradient sum that f16 steps would lose).

use crate::common;
use common::*;
use half::f16;
use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::ops::pool::{
    adaptive_avg_pool2d_backward_io, adaptive_avg_pool2d_io, avg_pool2d_backward_io, avg_pool2d_io,
    max_pool2d_backward_io, max_pool2d_io, PoolWindow,
};
use wgrad_gpu_core::testing::gpu_or_skip;
use wgrad_gpu_core::{Buffer, Device};

type Pair = (usize, usize);

#[derive(Clone, Copy, Debug)]
enum Pool {
    Max(PoolWindow),
    /// The window and count_include_pad.
    Avg(PoolWindow, bool),
    /// output size
    Adaptive(Pair),
}

impl Pool {
    fn forward(self, x: &Buffer, shape: &[usize], io: Operands) -> (Buffer, Option<Buffer>, Vec<usize>) {
        match self {
            Pool::Max(w) => {
                let (y, arg, out) = max_pool2d_io(x, shape, w, io).unwrap();
                (y, Some(arg), out.to_vec())
            }
            Pool::Avg(w, c) => {
                let (y, out) = avg_pool2d_io(x, shape, w, c, io).unwrap();
                (y, None, out.to_vec())
            }
            Pool::Adaptive(o) => {
                let (y, out) = adaptive_avg_pool2d_io(x, shape, o, io).unwrap();
                (y, None, out.to_vec())
            }
        }
    }

    fn backward(self, g: &Buffer, arg: Option<&Buffer>, shape: &[usize], io: Operands) -> Buffer {
        match self {
            Pool::Max(w) => max_pool2d_backward_io(g, arg.unwrap(), shape, w, io).unwrap(),
            Pool::Avg(w, c) => avg_pool2d_backward_io(g, shape, w, c, io).unwrap(),
            Pool::Adaptive(o) => adaptive_avg_pool2d_backward_io(g, shape, o, io).unwrap(),
        }
    }

    fn is_max(self) -> bool {
        matches!(self, Pool::Max(..))
    }
}

/// The geometries: parity_pool.rs's, plus odd element counts, each also
/// with `ceil_mode`.
fn cases() -> Vec<(Vec<usize>, Pool)> {
    let mut v = Vec::new();
    let fixed: &[(&[usize], Pair, Pair, Pair)] = &[
        (&[2, 3, 7, 9], (3, 3), (2, 2), (1, 1)),
        (&[2, 1, 5, 6], (3, 3), (1, 1), (0, 0)),
        (&[1, 2, 6, 11], (2, 4), (3, 2), (1, 2)),
        (&[3, 2, 1, 1], (1, 1), (1, 1), (0, 0)),
        (&[2, 4, 33, 35], (3, 3), (2, 2), (1, 1)),
        // odd counts: 243 in, 75 out; 1 in, 1 out; 35 in, 9 out
        (&[1, 3, 9, 9], (3, 3), (2, 2), (1, 1)),
        (&[1, 1, 1, 1], (1, 1), (1, 1), (0, 0)),
        (&[1, 1, 7, 5], (3, 2), (2, 2), (1, 1)),
    ];
    for (&(shape, k, s, p), ceil) in fixed.iter().flat_map(|c| [(c, false), (c, true)]) {
        let w = window(k, s, p, (1, 1)).ceil_mode(ceil);
        v.push((shape.to_vec(), Pool::Max(w)));
        for c in [true, false] {
            v.push((shape.to_vec(), Pool::Avg(w, c)));
        }
    }
    // Dilated (max only); the last has 63 inputs and 21 outputs.
    let dilated: &[(&[usize], Pair, Pair, Pair, Pair)] = &[
        (&[1, 2, 9, 8], (3, 2), (1, 2), (1, 0), (2, 2)),
        (&[2, 3, 11, 7], (3, 3), (2, 1), (1, 1), (2, 3)),
        (&[1, 1, 9, 7], (3, 2), (1, 2), (1, 0), (2, 2)),
    ];
    for &(shape, k, s, p, d) in dilated {
        v.push((shape.to_vec(), Pool::Max(window(k, s, p, d))));
    }
    let adaptive: &[(&[usize], Pair)] = &[
        (&[2, 3, 7, 5], (3, 2)),
        (&[1, 2, 10, 9], (4, 3)),
        (&[2, 2, 5, 7], (5, 7)),
        (&[3, 4, 6, 9], (1, 1)),
        (&[1, 1, 5, 2], (8, 3)),
        (&[2, 8, 17, 19], (5, 6)),
        (&[1, 3, 7, 5], (3, 3)), // 105 in, 27 out
        (&[1, 1, 3, 1], (1, 1)), // one output
    ];
    for &(shape, o) in adaptive {
        v.push((shape.to_vec(), Pool::Adaptive(o)));
    }
    v
}

/// `n` f16 values, mostly uniform in [lo, hi), every 7th one from f16's
/// ends (subnormals, the smallest normal, ±65504, zeros).
fn halves(r: &mut wgrad_gpu_core::testing::Rng, n: usize, lo: f32, hi: f32) -> Vec<f16> {
    let special = [5.96e-8, -1.2e-7, 3.0e-5, -6.0e-5, 6.1035e-5, 0.0, -0.0, 65504.0, -65504.0, 7.5];
    (0..n)
        .map(|i| {
            let v = if i % 7 == 6 { special[i / 7 % special.len()] } else { r.uniform(lo, hi) };
            f16::from_f32(v)
        })
        .collect()
}

/// The first `n` f16 values of a packed buffer, after checking that an odd
/// count leaves the last word's high half 0.
#[track_caller]
fn read_halves(what: &str, b: &Buffer, n: usize) -> Vec<f16> {
    if n % 2 == 1 {
        let last = b.to_u32().unwrap()[n / 2];
        assert_eq!(last >> 16, 0, "{what}: the unused high half of the last word is {:#06x}", last >> 16);
    }
    b.to_f16().unwrap()[..n].to_vec()
}

/// Runs `pool` on f16 `x` (and output gradient `gy`) in every f16 run and
/// compares with the reference twin's f32 kernels on the widened values,
/// rounded; on a GPU also with its own f32 kernels, rounded.
fn check(runs: &[HalfRun], what: &str, shape: &[usize], pool: Pool, x: &[f16], gy: impl FnOnce(usize) -> Vec<f16>) {
    let reference = runs[0].dev;
    let (y32, arg32, out_shape) = pool.forward(&Buffer::from_f32(reference, &widen(x)).unwrap(), shape, Operands::F32);
    let n_out: usize = out_shape.iter().product();
    let n_in = x.len();
    let gy = gy(n_out);
    let dx32 = pool.backward(&Buffer::from_f32(reference, &widen(&gy)).unwrap(), arg32.as_ref(), shape, Operands::F32);
    let want_y = round(&y32.to_f32().unwrap()[..n_out]);
    let want_dx = round(&dx32.to_f32().unwrap()[..n_in]);
    let want_arg = arg32.map(|a| a.to_u32().unwrap()[..n_out].to_vec());
    for run in runs {
        let what = format!("{what} [{}]", run.name());
        let dev = run.dev;
        let (xb, gb) = (Buffer::from_f16(dev, x).unwrap(), Buffer::from_f16(dev, &gy).unwrap());
        let (y, arg, dx) = run.with(|| {
            let (y, arg, s) = pool.forward(&xb, shape, Operands::F16);
            assert_eq!(s, out_shape, "{what}: shape");
            let dx = pool.backward(&gb, arg.as_ref(), shape, Operands::F16);
            (y, arg, dx)
        });
        let (y, dx) = (read_halves(&format!("{what}: y"), &y, n_out), read_halves(&format!("{what}: dx"), &dx, n_in));
        if let Some(want) = &want_arg {
            assert_eq!(&arg.unwrap().to_u32().unwrap()[..n_out], &want[..], "{what}: argmax");
        }
        // Max pooling is exact, its backward adds the same terms in the
        // same order in f32; averages may differ in the last f32 bit on a GPU.
        let tol = if pool.is_max() || !dev.is_gpu() { 0 } else { 1 };
        within(&format!("{what}: forward"), &y, &want_y, tol);
        within(&format!("{what}: backward"), &dx, &want_dx, tol);
        if dev.is_gpu() {
            // Against this GPU's own f32 kernels, rounded.
            let (y32, arg32, _) = pool.forward(&Buffer::from_f32(dev, &widen(x)).unwrap(), shape, Operands::F32);
            let g32 = Buffer::from_f32(dev, &widen(&gy)).unwrap();
            let dx32 = pool.backward(&g32, arg32.as_ref(), shape, Operands::F32);
            within(&format!("{what}: forward vs f32 kernel"), &y, &round(&y32.to_f32().unwrap()[..n_out]), tol);
            within(&format!("{what}: backward vs f32 kernel"), &dx, &round(&dx32.to_f32().unwrap()[..n_in]), tol);
        }
    }
}

fn devices3(test: &str) -> (Device, Device, Option<Device>) {
    (Device::cpu_reference(), Device::cpu(), gpu_or_skip(test))
}

#[test]
fn f16_pooling_matches_the_f32_kernels_rounded() {
    let (reference, fast, gpu) = devices3("f16_pooling_matches_the_f32_kernels_rounded");
    let runs = half_runs(&reference, &fast, gpu.as_ref());
    let all = cases();
    let odd = |s: &[usize]| s.iter().product::<usize>() % 2 == 1;
    assert!(all.iter().any(|(s, _)| odd(s)), "an odd input count");
    let mut r = rng(40);
    for (shape, pool) in all {
        let n: usize = shape.iter().product();
        for ties in [false, true] {
            if ties && !pool.is_max() {
                continue;
            }
            let mut x = halves(&mut r, n, -3.0, 3.0);
            if ties {
                x = x.iter().map(|h| f16::from_f32((h.to_f32() * 2.0).round() / 2.0)).collect();
            }
            let what = format!("{pool:?} on {shape:?} ties {ties}");
            let mut rg = rng(n as u64);
            check(&runs, &what, &shape, pool, &x, |m| halves(&mut rg, m, -1.0, 1.0));
        }
    }
}

/// Each case only passes when sums are f32 and rounded once to f16, and
/// f16 inputs and outputs are read and written exactly at f16's limits.
#[test]
fn f16_pooling_limits_sum_in_f32() {
    let (reference, fast, gpu) = devices3("f16_pooling_limits_sum_in_f32");
    let runs = half_runs(&reference, &fast, gpu.as_ref());
    let h = |v: &[f32]| round(v);
    let tiny = 2f32.powi(-11);
    for run in &runs {
        let dev = run.dev;
        let what = run.name();
        run.with(|| {
            let buf = |v: &[f32]| Buffer::from_f16(dev, &h(v)).unwrap();
            // 60000 · 4 overflows f16 (65504) but not f32: the average is 60000.
            let x = buf(&[60000.0, 60000.0, 60000.0, 60000.0, -65504.0]);
            let (y, _) =
                avg_pool2d_io(&x, &[1, 1, 1, 4], window((1, 4), (1, 1), (0, 0), (1, 1)), true, Operands::F16).unwrap();
            assert_eq!(read_halves(&what, &y, 1), h(&[60000.0]), "{what}: avg of 60000s");
            let (y, _) = adaptive_avg_pool2d_io(&x, &[1, 1, 1, 5], (1, 3), Operands::F16).unwrap();
            // windows [0,2), [1,4), [3,5)
            assert_eq!(read_halves(&what, &y, 3), h(&[60000.0, 60000.0, (60000.0 - 65504.0) / 2.0]), "{what}");
            // 1 + 2⁻¹¹ + 2⁻¹¹: f16 steps would round to 1 twice; f32 keeps 1 + 2⁻¹⁰.
            let x = buf(&[1.0, tiny, tiny, 0.0]);
            let (y, _) =
                avg_pool2d_io(&x, &[1, 1, 1, 4], window((1, 4), (1, 1), (0, 0), (1, 1)), true, Operands::F16).unwrap();
            assert_eq!(read_halves(&what, &y, 1)[0].to_bits(), 0x3401, "{what}: (1 + 2^-10) / 4");
            // Max pooling: 9 is the argmax of windows 1, 2 and 3.
            let x = buf(&[0.0, 0.0, 9.0, 0.0, 0.0]);
            let shape = [1, 1, 1, 5];
            let (y, arg, s) = max_pool2d_io(&x, &shape, window((1, 3), (1, 1), (0, 1), (1, 1)), Operands::F16).unwrap();
            assert_eq!(s, vec![1, 1, 1, 5]);
            assert_eq!(read_halves(&what, &y, 5), h(&[0.0, 9.0, 9.0, 9.0, 0.0]), "{what}");
            assert_eq!(arg.to_u32().unwrap()[..5], [0, 2, 2, 2, 3], "{what}");
            let g = buf(&[0.0, 1.0, tiny, tiny, 0.0]);
            let dx = max_pool2d_backward_io(&g, &arg, &shape, window((1, 3), (1, 1), (0, 1), (1, 1)), Operands::F16)
                .unwrap();
            assert_eq!(read_halves(&what, &dx, 5)[2].to_bits(), 0x3c01, "{what}: 1 + 2^-10");
            // 3 · 65504 overflows to +inf (f32 sum, rounded once).
            let g = buf(&[0.0, 65504.0, 65504.0, 65504.0, -65504.0]);
            let dx = max_pool2d_backward_io(&g, &arg, &shape, window((1, 3), (1, 1), (0, 1), (1, 1)), Operands::F16)
                .unwrap();
            let dx = read_halves(&what, &dx, 5);
            assert_eq!(dx[2], f16::INFINITY, "{what}");
            assert_eq!(dx[3], f16::from_f32(-65504.0), "{what}");
            // Subnormals and ±65504 come through max pooling bit for bit.
            let vals = [5.96e-8, -5.96e-8, 6.0e-5, 65504.0, -65504.0, -1.2e-7, 3.0e-5];
            let x = Buffer::from_f16(dev, &h(&vals)).unwrap();
            let (y, _, _) =
                max_pool2d_io(&x, &[1, 7, 1, 1], window((1, 1), (1, 1), (0, 0), (1, 1)), Operands::F16).unwrap();
            assert_eq!(read_halves(&what, &y, 7), h(&vals), "{what}: max pooling copies");
            // Averages of subnormals: exact in f32, rounded once.
            let x = buf(&[5.96e-8, 1.788e-7, 5.96e-8, 5.96e-8]);
            let (y, _) = adaptive_avg_pool2d_io(&x, &[1, 1, 2, 2], (1, 1), Operands::F16).unwrap();
            let s = (h(&[5.96e-8])[0].to_f32() * 3.0 + h(&[1.788e-7])[0].to_f32()) / 4.0;
            assert_eq!(read_halves(&what, &y, 1), h(&[s]), "{what}: subnormal average");
            // NaN wins and stays NaN.
            let x = buf(&[1.0, f32::NAN, 2.0, 3.0]);
            let (y, arg, _) =
                max_pool2d_io(&x, &[1, 1, 2, 2], window((2, 2), (2, 2), (0, 0), (1, 1)), Operands::F16).unwrap();
            assert!(read_halves(&what, &y, 1)[0].is_nan(), "{what}: NaN");
            assert_eq!(arg.to_u32().unwrap()[0], 1, "{what}: NaN's index");
        });
    }
}

#[test]
fn f16_lengths_are_checked_in_halves() {
    let dev = Device::cpu_reference();
    let x = Buffer::from_f16(&dev, &[f16::ONE; 3]).unwrap();
    // 4 halves need 8 bytes; 3 halves have 6 (rounded up to 8 by the word):
    // a 5-element input is too short.
    let e = max_pool2d_io(&x, &[1, 1, 1, 5], window((1, 1), (1, 1), (0, 0), (1, 1)), Operands::F16).unwrap_err();
    assert!(e.to_string().contains("input buffer"), "{e}");
    let (y, _) = avg_pool2d_io(&x, &[1, 1, 1, 3], window((1, 2), (1, 1), (0, 0), (1, 1)), true, Operands::F16).unwrap();
    assert_eq!(read_halves("avg", &y, 2), [f16::ONE, f16::ONE]);
}

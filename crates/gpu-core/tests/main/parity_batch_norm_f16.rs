//! Batch norm on f16 activations (`Operands::F16`: x, dy, the saved ReLU
//! output and the residual read as f16; y, dx and the residual gradient
//! written as f16; statistics, parameters and sums f32). On awkward shapes
//! (B = 1, 3, 7, 49 and multiples of 4, odd totals, one and three channels),
//! every kernel variant (the GPU's packed and native f16 loads, the fast CPU
//! backend) against the reference twin, the two GPU variants against each
//! other bit for bit, and each f16 run against the f32 kernels on the same
//! (f16-representable) inputs with the results rounded to f16. Then f16's
//! limits: subnormal inputs read exactly, results past 65504 become inf, NaN
//! stays NaN.

use crate::common;
use common::*;
use half::f16;
use wgrad_gpu_core::ops::batch_norm::{
    batch_norm_backward, batch_norm_eval_stats, batch_norm_forward, batch_norm_grad_sums, batch_norm_stats, Centre,
    ChannelDims, Running,
};
use wgrad_gpu_core::ops::operands::{with_half_loads, HalfLoads, Operands};
use wgrad_gpu_core::testing::{assert_close, gpu_or_skip};
use wgrad_gpu_core::{Buffer, Device};

/// (N, C, H·W): odd totals with B = 1, 3, 7 and 49 (7x7) for the scalar
/// entries (two elements per thread in f16, so a half-used last word),
/// B = 4 and 64 for the vec4 entries, one and three channels, and a batch
/// long enough to be split into row chunks.
const SHAPES: &[(usize, usize, usize)] = &[
    (1, 1, 3),
    (2, 3, 1),
    (7, 3, 1),
    (17, 1, 1),
    (1, 3, 49),
    (3, 1, 49),
    (5, 3, 49),
    (3, 3, 7),
    (1, 3, 4),
    (3, 3, 64),
    (64, 3, 1),
    (40, 3, 49),
];

/// One way of running the ops: a device, the activations' storage and (on
/// a GPU) how f16 is loaded.
#[derive(Clone, Copy)]
struct Run<'a> {
    dev: &'a Device,
    io: Operands,
    loads: HalfLoads,
}

impl Run<'_> {
    fn name(&self) -> String {
        format!("{} {:?} {:?}", self.dev.name(), self.io, self.loads)
    }

    /// An activation in this run's storage (f32 runs get the values widened).
    fn act(&self, v: &[f16]) -> Buffer {
        match self.io {
            Operands::F16 => Buffer::from_f16(self.dev, v).unwrap(),
            Operands::F32 => Buffer::from_f32(self.dev, &widen(v)).unwrap(),
        }
    }

    fn f32s(&self, v: &[f32]) -> Buffer {
        Buffer::from_f32(self.dev, v).unwrap()
    }

    /// An activation output as f16: its bits for f16 runs, the f32 result
    /// rounded to nearest even for f32 runs.
    fn halves(&self, b: &Buffer, n: usize) -> Vec<f16> {
        match self.io {
            Operands::F16 => b.to_f16().unwrap()[..n].to_vec(),
            Operands::F32 => b.to_f32().unwrap()[..n].iter().map(|&v| f16::from_f32(v)).collect(),
        }
    }

    fn call<R>(&self, f: impl FnOnce() -> R) -> R {
        with_half_loads(self.loads, f)
    }
}

fn floats(b: &Buffer, n: usize) -> Vec<f32> {
    b.to_f32().unwrap()[..n].to_vec()
}

/// f16 results within one ulp of `want`, or (for a value of cancellation
/// near zero, where an f32 difference spans many f16 ulps) within the f32
/// parity tests' `atol + rtol·|want|`; infinities and NaNs must match.
#[track_caller]
fn halves_close(what: &str, got: &[f16], want: &[f16], tol: Option<(f32, f32)>) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = match ulps(g, w) {
            None => false,
            Some(u) => {
                u <= 1
                    || tol.is_some_and(|(rtol, atol)| (g.to_f32() - w.to_f32()).abs() <= atol + rtol * w.to_f32().abs())
            }
        };
        assert!(ok, "{what}: element {i}: got {g} ({:#06x}), want {w} ({:#06x})", g.to_bits(), w.to_bits());
    }
}

/// Bit-identical f16 results (NaNs with any payload alike).
#[track_caller]
fn same_bits(what: &str, a: &[f16], b: &[f16]) {
    let bits = |v: &[f16]| v.iter().map(|h| if h.is_nan() { 0x7e00 } else { h.to_bits() }).collect::<Vec<_>>();
    assert_eq!(bits(a), bits(b), "{what}: not the same bits");
}

/// `n` f16 values, mostly uniform in [lo, hi), with every 11th one from
/// f16's small end (subnormals, the smallest normal) or a larger value.
fn halves(r: &mut wgrad_gpu_core::testing::Rng, n: usize, lo: f32, hi: f32) -> Vec<f16> {
    let special = [5.96e-8, -1.2e-7, 3.0e-5, -6.0e-5, 6.1035e-5, 0.0, -0.0, 7.5];
    (0..n)
        .map(|i| {
            let v = if i % 11 == 10 { special[i / 11 % special.len()] } else { r.uniform(lo, hi) };
            f16::from_f32(v)
        })
        .collect()
}

/// Every run of a test: the reference twin first (the oracle), then the
/// fast CPU backend, each in f16 and f32, then the GPU's f16 variants
/// (packed, and native where the adapter has SHADER_F16) and its f32.
fn runs<'a>(reference: &'a Device, fast: &'a Device, gpu: &'a Device) -> Vec<Run<'a>> {
    let run = |dev, io, loads| Run { dev, io, loads };
    let mut v = vec![
        run(reference, Operands::F16, HalfLoads::Auto),
        run(reference, Operands::F32, HalfLoads::Auto),
        run(fast, Operands::F16, HalfLoads::Auto),
        run(fast, Operands::F32, HalfLoads::Auto),
        run(gpu, Operands::F16, HalfLoads::Packed),
    ];
    if gpu.has_shader_f16() {
        v.push(run(gpu, Operands::F16, HalfLoads::Native));
    } else {
        eprintln!("{} has no SHADER_F16: native f16 loads not run", gpu.name());
    }
    if gpu.name().contains("llvmpipe") {
        assert!(gpu.has_shader_f16(), "lavapipe offers SHADER_F16, so both f16 loads run");
    }
    v.push(run(gpu, Operands::F32, HalfLoads::Auto));
    v
}

/// Compares the f16 outputs of every run with the reference twin's f16 run
/// (index 0): within one ulp (or the f32 tolerance near zero) across
/// devices. Against the f32 kernels of the same device on the same inputs,
/// rounded: the same bits on the CPU (the same code), within one ulp on a
/// GPU. The GPU's packed and native loads bit for bit.
#[track_caller]
fn check_halves(what: &str, runs: &[Run], outs: &[Vec<f16>], tol: (f32, f32)) {
    for (k, run) in runs.iter().enumerate().skip(1) {
        halves_close(&format!("{what} [{} vs reference f16]", run.name()), &outs[k], &outs[0], Some(tol));
    }
    // Same device, f16 storage vs the f32 kernels on the same inputs, rounded.
    for (k, a) in runs.iter().enumerate().filter(|(_, r)| r.io == Operands::F16) {
        for (j, b) in runs.iter().enumerate().filter(|(_, r)| r.io == Operands::F32 && r.dev == a.dev) {
            let what = format!("{what} [{} vs {} rounded]", a.name(), b.name());
            if a.dev.is_gpu() {
                halves_close(&what, &outs[k], &outs[j], None);
            } else {
                same_bits(&what, &outs[k], &outs[j]);
            }
        }
    }
    let gpu: Vec<usize> = (0..runs.len()).filter(|&k| runs[k].dev.is_gpu() && runs[k].io == Operands::F16).collect();
    for w in gpu.windows(2) {
        same_bits(what, &outs[w[0]], &outs[w[1]]);
    }
}

/// Compares f32 outputs (statistics, sums) of every run with the reference
/// twin's, and the GPU's packed and native f16 loads bit for bit.
#[track_caller]
fn check_floats(what: &str, runs: &[Run], outs: &[Vec<f32>], (rtol, atol): (f32, f32)) {
    for (k, run) in runs.iter().enumerate().skip(1) {
        assert_close(&format!("{what} [{} vs reference f16]", run.name()), &outs[k], &outs[0], rtol, atol);
    }
    let gpu: Vec<usize> = (0..runs.len()).filter(|&k| runs[k].dev.is_gpu() && runs[k].io == Operands::F16).collect();
    for w in gpu.windows(2) {
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&outs[w[0]]), bits(&outs[w[1]]), "{what}: packed and native f16 loads differ");
    }
}

/// The inputs of one shape: f16 activations, f32 parameters and statistics.
struct Data {
    x: Vec<f16>,
    dy: Vec<f16>,
    res: Vec<f16>,
    w: Vec<f32>,
    b: Vec<f32>,
    run_mean: Vec<f32>,
    run_var: Vec<f32>,
}

impl Data {
    fn new(seed: u64, d: ChannelDims) -> Data {
        let (n, c) = (d.numel(), d.channels);
        let mut r = rng(seed);
        Data {
            x: halves(&mut r, n, -3.0, 3.0),
            dy: halves(&mut r, n, -1.0, 1.0),
            res: halves(&mut r, n, -1.0, 1.0),
            w: r.vec(c, -2.0, 2.0),
            b: r.vec(c, -1.0, 1.0),
            run_mean: r.vec(c, -1.0, 1.0),
            run_var: r.vec(c, 0.5, 2.0),
        }
    }
}

/// Statistics with the running update and the evaluation statistics in
/// every run; returns the reference's `[mean; rstd]` for training and evaluation.
fn check_stats(runs: &[Run], data: &Data, d: ChannelDims, what: &str) -> (Vec<f32>, Vec<f32>) {
    let ch = d.channels;
    let with_running = d.count() > 1;
    let mut outs: [Vec<Vec<f32>>; 4] = Default::default();
    for run in runs {
        let (x, rm, rv) = (run.act(&data.x), run.f32s(&data.run_mean), run.f32s(&data.run_var));
        let running = with_running.then_some(Running { mean: &rm, var: &rv, momentum: 0.1 });
        let stats = run.call(|| batch_norm_stats(&x, d, 1e-5, running, run.io)).unwrap();
        outs[0].push(floats(&stats, 2 * ch));
        // Updated in place (the evaluation statistics below read the updated values).
        let (m, v) = if with_running { (floats(&rm, ch), floats(&rv, ch)) } else { (vec![], vec![]) };
        outs[1].push(m);
        outs[2].push(v);
        outs[3].push(floats(&batch_norm_eval_stats(&rm, &rv, ch, 1e-3).unwrap(), 2 * ch));
    }
    check_floats(&format!("{what}: stats"), runs, &outs[0], (1e-4, 1e-5));
    check_floats(&format!("{what}: running_mean"), runs, &outs[1], (1e-5, 1e-6));
    check_floats(&format!("{what}: running_var"), runs, &outs[2], (1e-4, 1e-6));
    check_floats(&format!("{what}: eval stats"), runs, &outs[3], (1e-5, 1e-6));
    (outs[0][0].clone(), outs[3][0].clone())
}

/// Every forward variant (training and evaluation statistics, normalised
/// input; with and without weight and bias, residual, ReLU), then the
/// gradient sums and the input gradient with and without the training
/// formula, all from the reference's statistics and (for the ReLU mask) the
/// reference's f16 output.
fn check_rest(runs: &[Run], data: &Data, stats: &[(&str, Option<&[f32]>)], d: ChannelDims, what: &str) {
    let (n, ch) = (d.numel(), d.channels);
    for &(centre_name, stats) in stats {
        for (affine, residual, relu) in
            [(true, false, false), (true, false, true), (true, true, true), (false, true, false), (false, false, true)]
        {
            let what = format!("{what} {centre_name} affine={affine} residual={residual} relu={relu}");
            let mut ys = Vec::new();
            for run in runs {
                let s = stats.map(|s| run.f32s(s));
                let centre = s.as_ref().map_or(Centre::Normalized, Centre::Stats);
                let (x, res, w, b) = (run.act(&data.x), run.act(&data.res), run.f32s(&data.w), run.f32s(&data.b));
                let pick = |b, on: bool| on.then_some(b);
                let y = run
                    .call(|| {
                        batch_norm_forward(
                            &x,
                            d,
                            centre,
                            pick(&w, affine),
                            pick(&b, affine),
                            pick(&res, residual),
                            relu,
                            run.io,
                        )
                    })
                    .unwrap();
                ys.push(run.halves(&y, n));
            }
            check_halves(&format!("{what}: y"), runs, &ys, (1e-4, 1e-5));
            if relu {
                assert!(ys[0].iter().all(|v| v.to_f32() >= 0.0 || v.is_nan()), "{what}: ReLU output has negatives");
            }

            // Backward: the mask from the reference's f16 output in every run.
            let mut sums: [Vec<Vec<f32>>; 2] = Default::default();
            let mut grads: [Vec<Vec<f16>>; 4] = Default::default();
            for run in runs {
                let s = stats.map(|s| run.f32s(s));
                let centre = s.as_ref().map_or(Centre::Normalized, Centre::Stats);
                let (x, dy, y, w) = (run.act(&data.x), run.act(&data.dy), run.act(&ys[0]), run.f32s(&data.w));
                let mask = relu.then_some(&y);
                let (db, dw) = run.call(|| batch_norm_grad_sums(&dy, &x, mask, d, centre, run.io)).unwrap();
                sums[0].push(floats(&db, ch));
                sums[1].push(floats(&dw, ch));
                // The training formula from the reference's sums, as autograd passes them.
                let (db, dw) = (run.f32s(&sums[0][0]), run.f32s(&sums[1][0]));
                for train in [false, true] {
                    if train && stats.is_none() {
                        continue;
                    }
                    let weight = affine.then_some(&w);
                    let (dx, dres) = run
                        .call(|| {
                            let sums = train.then_some((&db, &dw));
                            batch_norm_backward(&dy, &x, mask, d, centre, weight, sums, residual, run.io)
                        })
                        .unwrap();
                    assert_eq!(dres.is_some(), residual, "{what}: residual gradient presence");
                    grads[2 * train as usize].push(run.halves(&dx, n));
                    grads[2 * train as usize + 1].push(dres.map_or(vec![], |r| run.halves(&r, n)));
                }
            }
            check_floats(&format!("{what}: Σdy'"), runs, &sums[0], (1e-4, 1e-4));
            check_floats(&format!("{what}: Σdy'·xhat"), runs, &sums[1], (1e-4, 1e-4));
            for (k, name) in ["dx (eval)", "dres (eval)", "dx (train)", "dres (train)"].iter().enumerate() {
                if !grads[k].is_empty() {
                    check_halves(&format!("{what}: {name}"), runs, &grads[k], (1e-4, 1e-4));
                }
            }
        }
    }
}

#[test]
fn f16_batch_norm_matches_twin_and_f32_kernels() {
    let Some(gpu) = gpu_or_skip("f16_batch_norm_matches_twin_and_f32_kernels") else { return };
    let (reference, fast) = (Device::cpu_reference(), Device::cpu());
    let runs = runs(&reference, &fast, &gpu);
    for (k, &(outer, channels, inner)) in SHAPES.iter().enumerate() {
        let d = ChannelDims { outer, channels, inner };
        let data = Data::new(60 + k as u64, d);
        let what = format!("batch_norm f16 {:?}", (outer, channels, inner));
        let (train, eval) = check_stats(&runs, &data, d, &what);
        let stats = [("train stats", Some(&train[..])), ("eval stats", Some(&eval[..])), ("normalized", None)];
        check_rest(&runs, &data, &stats, d, &what);
    }
}

/// Every device and f16 load: the reference twin, the fast CPU backend, the
/// GPU's packed loads and (with SHADER_F16) its native ones.
fn f16_runs(devs: &(Device, Device, Option<Device>)) -> Vec<Run<'_>> {
    let mut v = vec![
        Run { dev: &devs.0, io: Operands::F16, loads: HalfLoads::Auto },
        Run { dev: &devs.1, io: Operands::F16, loads: HalfLoads::Auto },
    ];
    if let Some(g) = &devs.2 {
        v.push(Run { dev: g, io: Operands::F16, loads: HalfLoads::Packed });
        if g.has_shader_f16() {
            v.push(Run { dev: g, io: Operands::F16, loads: HalfLoads::Native });
        }
    }
    v
}

fn hs(v: &[f32]) -> Vec<f16> {
    v.iter().map(|&v| f16::from_f32(v)).collect()
}

/// Values equal (±0 alike, NaN matching NaN), naming the run and index.
#[track_caller]
fn equal(what: &str, got: &[f16], want: &[f16]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g.is_nan() && w.is_nan()) || g == w, "{what}: element {i}: got {g}, want {w}");
    }
}

#[test]
fn f16_limits_subnormals_overflow_and_nan() {
    let devs =
        (Device::cpu_reference(), Device::cpu(), gpu_or_skip("f16_batch_norm_limits_subnormals_overflow_and_nan"));
    // Subnormals (the smallest, its negative and a larger one, the largest),
    // the smallest normal, f16's largest finite values, ±inf and NaN.
    let specials = [
        0.0,
        -0.0,
        5.96e-8,
        -5.96e-8,
        1.2e-7,
        6.097e-5,
        6.1035e-5,
        1.0,
        -2.5,
        65504.0,
        -65504.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        3.0e-5,
        -1.5,
    ];
    for run in f16_runs(&devs) {
        // Odd, even (scalar entries) and a multiple of 4 (vec4 entries).
        for len in [15, 14, 16] {
            let what = format!("{} len {len}", run.name());
            let x = hs(&specials[..len]);
            let d = ChannelDims { outer: 1, channels: 1, inner: len };
            let xb = run.act(&x);
            let fwd = |w: Option<&Buffer>, relu| {
                let y = run.call(|| batch_norm_forward(&xb, d, Centre::Normalized, w, None, None, relu, run.io));
                run.halves(&y.unwrap(), len)
            };
            // Normalised input, no affine: y is x, subnormals and all.
            equal(&format!("{what}: identity"), &fwd(None, false), &x);
            // The unary table's ReLU, PyTorch's x < 0 ? 0 : x: NaN and -0.0 kept.
            let relu: Vec<f32> = x.iter().map(|h| h.to_f32()).map(|v| if v < 0.0 { 0.0 } else { v }).collect();
            equal(&format!("{what}: relu"), &fwd(None, true), &hs(&relu));
            // Doubled: exact for subnormals, 65504 overflows to inf.
            let two = run.f32s(&[2.0]);
            let doubled: Vec<f32> = x.iter().map(|h| 2.0 * h.to_f32()).collect();
            let got = fwd(Some(&two), false);
            equal(&format!("{what}: doubled"), &got, &hs(&doubled));
            assert_eq!(got[9], f16::INFINITY, "{what}: 2·65504 is inf");
            assert_eq!(got[10], f16::NEG_INFINITY, "{what}: -2·65504 is -inf");
            // The smallest subnormal (bits 1) doubled is bits 2, not 0.
            assert_eq!((x[2].to_bits(), got[2].to_bits()), (1, 2), "{what}: smallest subnormal doubled");

            // dy read exactly: the eval-form input gradient of a plain
            // normalised input is dy, and so is the residual gradient.
            let (dx, dres) = run
                .call(|| batch_norm_backward(&xb, &xb, None, d, Centre::Normalized, None, None, true, run.io))
                .unwrap();
            equal(&format!("{what}: dx = dy"), &run.halves(&dx, len), &x);
            equal(&format!("{what}: dres = dy"), &run.halves(&dres.unwrap(), len), &x);
        }

        // Rounding to nearest even, through the weight (f32): 65512 rounds
        // down to 65504, 65520 (the halfway point) up to inf; halfway
        // between 1 and its neighbours goes to the even one.
        let what = format!("{} rounding", run.name());
        let d = ChannelDims { outer: 2, channels: 8, inner: 1 };
        let x = run.act(&hs(&[1.0; 16]));
        let (half_up, half_down) = (1.0 + 3.0 * 2f32.powi(-11), 1.0 + 2f32.powi(-11));
        let w = run.f32s(&[65512.0, 65519.996, 65520.0, -1.0e6, 3.0, half_down, half_up, -half_up]);
        let y =
            run.call(|| batch_norm_forward(&x, d, Centre::Normalized, Some(&w), None, None, false, run.io)).unwrap();
        let up = 1.0 + 2f32.powi(-9);
        let want = [65504.0, 65504.0, f32::INFINITY, f32::NEG_INFINITY, 3.0, 1.0, up, -up];
        let got = run.halves(&y, 16);
        assert!(got.iter().zip([want, want].concat()).all(|(g, w)| g.to_f32() == w), "{what}: {got:?} vs {want:?}");

        // Statistics of subnormal inputs: the mean of k·2^-24, k = 1..8, is
        // 4.5·2^-24 (0 if the loads flushed subnormals to zero).
        let tiny: Vec<f16> = (1..=8).map(f16::from_bits).collect();
        let d = ChannelDims { outer: 2, channels: 1, inner: 4 };
        let stats = run.call(|| batch_norm_stats(&run.act(&tiny), d, 1e-5, None, run.io)).unwrap();
        let mean = floats(&stats, 2)[0];
        assert_close(&format!("{what}: subnormal mean"), &[mean], &[4.5 * 2f32.powi(-24)], 1e-5, 0.0);
    }
}

#[test]
fn f16_checks_lengths_and_accepts_empty_input() {
    let devs = (Device::cpu_reference(), Device::cpu(), gpu_or_skip("f16_batch_norm_lengths_and_empty"));
    for run in f16_runs(&devs) {
        let what = run.name();
        // Five halves are 10 bytes: enough for f16, short for f32.
        let x = run.act(&hs(&[1.0; 5]));
        let d = ChannelDims { outer: 1, channels: 1, inner: 5 };
        run.call(|| batch_norm_stats(&x, d, 1e-5, None, Operands::F16)).unwrap();
        let err = run.call(|| batch_norm_stats(&x, d, 1e-5, None, Operands::F32)).unwrap_err().to_string();
        assert!(err.contains("batch_norm_stats") && err.contains("needs 20"), "{what}: {err}");
        let stats = run.f32s(&[0.0, 1.0]);
        let err = batch_norm_forward(&x, d, Centre::Stats(&stats), None, None, None, false, Operands::F32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_norm_forward"), "{what}: {err}");
        // A residual has the input's storage: 8 bytes hold 4 halves, not 5.
        let short = run.act(&hs(&[0.0; 4]));
        let err = batch_norm_forward(&x, d, Centre::Stats(&stats), None, None, Some(&short), false, Operands::F16)
            .unwrap_err()
            .to_string();
        assert!(err.contains("residual") && err.contains("needs 10"), "{what}: {err}");
        // Empty input.
        let empty = run.act(&[]);
        let d = ChannelDims { outer: 0, channels: 3, inner: 4 };
        let s = run.f32s(&[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        run.call(|| batch_norm_forward(&empty, d, Centre::Stats(&s), None, None, None, true, run.io)).unwrap();
        let (db, _) = run.call(|| batch_norm_grad_sums(&empty, &empty, None, d, Centre::Stats(&s), run.io)).unwrap();
        assert_close(&what, &floats(&db, 3), &[0.0; 3], 0.0, 0.0);
    }
}

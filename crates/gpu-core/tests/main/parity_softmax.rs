//! Softmax, log-softmax, fused cross-entropy and dropout masks: GPU kernels vs
//! their CPU twins, the twins vs direct formulas, and mask statistics.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::random::dropout_mask;
use wgrad_gpu_core::ops::random::{counters_used, uniform};
use wgrad_gpu_core::ops::softmax::{
    cross_entropy_rows, cross_entropy_rows_backward, softmax_rows, softmax_rows_backward, CeArgs, CeTarget,
};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip, gpu_or_skip};
use wgrad_gpu_core::{Buffer, Device, Error};

/// 130 rows run one thread per row on CPU adapters (`softmax_*_serial`,
/// 64 rows a workgroup, the last one ragged); fewer, a workgroup per row.
const ROWS: &[usize] = &[1, 7, 33, 130];
const COLS: &[usize] = &[1, 7, 33, 1023, 5000];

/// Row data in [-6, 6), or spread over ±5000 (far past exp's f32 range) when `large`.
fn row_data(seed: u64, n: usize, large: bool) -> Vec<f32> {
    let scale = if large { 5000.0 } else { 6.0 };
    rng(seed).vec(n, -scale, scale)
}

#[test]
fn softmax_of_large_nearby_values_is_stable() {
    let mut devs = vec![Device::cpu_reference()];
    devs.extend(devices("softmax_of_large_nearby_values_is_stable").map(|d| d.0));
    for d in devs {
        let x = Buffer::from_f32(&d, &[1000.0, 1001.0, 1002.0]).unwrap();
        let y = softmax_rows(&x, 1, 3, false).unwrap().to_f32().unwrap();
        assert_close(&format!("softmax on {}", d.name()), &y, &[0.090_030_57, 0.244_728_47, 0.665_240_94], 1e-5, 0.0);
        let ly = softmax_rows(&x, 1, 3, true).unwrap().to_f32().unwrap();
        assert_close(&format!("log_softmax on {}", d.name()), &ly, &[-2.407_606, -1.407_606, -0.407_606], 1e-5, 0.0);
    }
}

#[test]
fn softmax_rows_match_twin() {
    let Some((g, c)) = devices("softmax_rows_match_twin") else { return };
    let mut seed = 0;
    for &rows in ROWS {
        for &cols in COLS {
            for large in [false, true] {
                seed += 1;
                let n = rows * cols;
                let (xg, xc) = both(&g, &c, &row_data(seed, n, large));
                for log in [false, true] {
                    let what = format!("rows {rows} cols {cols} log {log} large {large}");
                    let (yg, yc) =
                        (softmax_rows(&xg, rows, cols, log).unwrap(), softmax_rows(&xc, rows, cols, log).unwrap());
                    let (rtol, atol) = if log { (1e-5, 1e-5) } else { (2e-5, 1e-7) };
                    same(&what, &yg, &yc, n, rtol, atol);
                    if !log {
                        // Each row sums to one.
                        let y = yc.to_f32().unwrap();
                        for r in y.chunks(cols) {
                            let s: f32 = r.iter().sum();
                            assert!((s - 1.0).abs() < 1e-4, "{what}: row sums to {s}");
                        }
                    }
                }
            }
        }
    }
    // Empty inputs give empty outputs.
    let e = Buffer::from_f32(&g, &[]).unwrap();
    assert_eq!(softmax_rows(&e, 0, 5, false).unwrap().len_bytes(), 0);
    assert_eq!(softmax_rows(&e, 3, 0, true).unwrap().len_bytes(), 0);
}

#[test]
fn softmax_backward_matches_twin() {
    let Some((g, c)) = devices("softmax_backward_matches_twin") else { return };
    let mut seed = 100;
    for &rows in ROWS {
        for &cols in COLS {
            seed += 1;
            let n = rows * cols;
            let (xg, xc) = both(&g, &c, &row_data(seed, n, false));
            let (dg, dc) = both(&g, &c, &rng(seed + 1000).vec(n, -1.0, 1.0));
            for log in [false, true] {
                let what = format!("backward rows {rows} cols {cols} log {log}");
                let (yg, yc) =
                    (softmax_rows(&xg, rows, cols, log).unwrap(), softmax_rows(&xc, rows, cols, log).unwrap());
                let bg = softmax_rows_backward(&yg, &dg, rows, cols, log).unwrap();
                let bc = softmax_rows_backward(&yc, &dc, rows, cols, log).unwrap();
                same(&what, &bg, &bc, n, 1e-4, 1e-6);
            }
        }
    }
}

/// Central differences of `Σ dy · f(x)` on the CPU twin agree with the backward kernel.
#[test]
fn softmax_backward_twin_matches_finite_differences() {
    let c = Device::cpu_reference();
    let (rows, cols) = (3, 5);
    let x = rng(7).vec(rows * cols, -2.0, 2.0);
    let dy = rng(8).vec(rows * cols, -1.0, 1.0);
    for log in [false, true] {
        let f = |v: &[f32]| -> f64 {
            let y = softmax_rows(&Buffer::from_f32(&c, v).unwrap(), rows, cols, log).unwrap().to_f32().unwrap();
            y.iter().zip(&dy).map(|(&a, &b)| a as f64 * b as f64).sum()
        };
        let y = softmax_rows(&Buffer::from_f32(&c, &x).unwrap(), rows, cols, log).unwrap();
        let dx =
            softmax_rows_backward(&y, &Buffer::from_f32(&c, &dy).unwrap(), rows, cols, log).unwrap().to_f32().unwrap();
        let h = 1e-2;
        for j in 0..x.len() {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[j] += h;
            b[j] -= h;
            let numeric = (f(&a) - f(&b)) / (2.0 * h as f64);
            assert!((dx[j] as f64 - numeric).abs() < 1e-3, "log {log} element {j}: {} vs {numeric}", dx[j]);
        }
    }
}

/// One cross-entropy configuration on host data.
struct CeCase {
    rows: usize,
    cols: usize,
    classes: Vec<u32>,
    probs: Option<Vec<f32>>,
    weight: Option<Vec<f32>>,
    ignore: Option<u32>,
    smoothing: f32,
}

impl CeCase {
    fn args<'a>(&self, target: &'a Buffer, weight: Option<&'a Buffer>) -> CeArgs<'a> {
        CeArgs {
            rows: self.rows,
            cols: self.cols,
            target: if self.probs.is_some() { CeTarget::Probs(target) } else { CeTarget::Classes(target) },
            weight,
            ignore_index: self.ignore,
            label_smoothing: self.smoothing,
        }
    }

    /// Runs forward and backward on `d`: (loss, weight, probs, dlogits).
    fn run(&self, d: &Device, logits: &[f32], grad: &[f32]) -> [Vec<f32>; 4] {
        let x = Buffer::from_f32(d, logits).unwrap();
        let t = match &self.probs {
            Some(p) => Buffer::from_f32(d, p).unwrap(),
            None => Buffer::from_u32(d, &self.classes).unwrap(),
        };
        let w = self.weight.as_ref().map(|w| Buffer::from_f32(d, w).unwrap());
        let args = self.args(&t, w.as_ref());
        let (loss, weight, probs) = cross_entropy_rows(&x, &args).unwrap();
        let dx = cross_entropy_rows_backward(&probs, &args, &Buffer::from_f32(d, grad).unwrap()).unwrap();
        [loss, weight, probs, dx].map(|b| b.to_f32().unwrap())
    }

    /// PyTorch's composite formula in f64, straight from its source:
    /// `(1 − e)·nll(logp, t, w) + (e / C)·smooth`, with `smooth = −Σ_c w_c·logp_c`
    /// masked on ignored rows; for probability targets `−Σ_c w_c·logp_c·((1 − e)·y_c + e / C)`.
    fn reference(&self, logits: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (cols, e) = (self.cols, self.smoothing as f64);
        let w = |c: usize| self.weight.as_ref().map_or(1.0, |w| w[c] as f64);
        let mut loss = vec![];
        let mut weight = vec![];
        for r in 0..self.rows {
            let xr: Vec<f64> = logits[r * cols..(r + 1) * cols].iter().map(|&v| v as f64).collect();
            let m = xr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + xr.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            let logp: Vec<f64> = xr.iter().map(|v| v - lse).collect();
            match &self.probs {
                Some(p) => {
                    let y = &p[r * cols..(r + 1) * cols];
                    loss.push(
                        -(0..cols).map(|c| w(c) * logp[c] * ((1.0 - e) * y[c] as f64 + e / cols as f64)).sum::<f64>(),
                    );
                    weight.push(1.0);
                }
                None => {
                    let t = self.classes[r];
                    if self.ignore == Some(t) {
                        loss.push(0.0);
                        weight.push(0.0);
                    } else {
                        let t = t as usize;
                        let smooth = -(0..cols).map(|c| w(c) * logp[c]).sum::<f64>();
                        loss.push((1.0 - e) * (-w(t) * logp[t]) + e / cols as f64 * smooth);
                        weight.push(w(t));
                    }
                }
            }
        }
        (loss, weight)
    }
}

/// Every combination of target kind, class weights, ignore index and smoothing.
fn ce_cases(rows: usize, cols: usize, seed: u64) -> Vec<CeCase> {
    let mut r = rng(seed);
    let classes: Vec<u32> = (0..rows).map(|_| r.below(cols as u32)).collect();
    let probs: Vec<f32> = (0..rows)
        .flat_map(|_| {
            let raw = r.vec(cols, 0.0, 1.0);
            let s: f32 = raw.iter().sum();
            raw.into_iter().map(move |v| v / s)
        })
        .collect();
    let weight = r.vec(cols, 0.2, 2.0);
    let mut out = vec![];
    for smoothing in [0.0, 0.1] {
        for weight in [None, Some(weight.clone())] {
            // An ignore index that occurs in the targets, and PyTorch's default -100 seen as u32.
            for ignore in [None, Some(classes[0]), Some(-100i32 as u32)] {
                let case = CeCase {
                    rows,
                    cols,
                    classes: classes.clone(),
                    probs: None,
                    weight: weight.clone(),
                    ignore,
                    smoothing,
                };
                out.push(case);
            }
            let case = CeCase {
                rows,
                cols,
                classes: vec![],
                probs: Some(probs.clone()),
                weight: weight.clone(),
                ignore: None,
                smoothing,
            };
            out.push(case);
        }
    }
    out
}

#[test]
fn cross_entropy_matches_twin_and_pytorch_formula() {
    let Some((g, c)) = devices("cross_entropy_matches_twin_and_pytorch_formula") else { return };
    let mut seed = 300;
    for &rows in ROWS {
        for &cols in COLS {
            seed += 1;
            let logits = row_data(seed, rows * cols, false);
            let grad = rng(seed + 1).vec(rows, -1.0, 1.0);
            for case in ce_cases(rows, cols, seed) {
                let what = format!(
                    "rows {rows} cols {cols} probs {} weight {} ignore {:?} smoothing {}",
                    case.probs.is_some(),
                    case.weight.is_some(),
                    case.ignore,
                    case.smoothing
                );
                let [lg, wg, pg, dg] = case.run(&g, &logits, &grad);
                let [lc, wc, pc, dc] = case.run(&c, &logits, &grad);
                assert_close(&format!("loss {what}"), &lg, &lc, 2e-5, 2e-5);
                assert_close(&format!("weight {what}"), &wg, &wc, 0.0, 0.0);
                assert_close(&format!("probs {what}"), &pg, &pc, 2e-5, 1e-7);
                assert_close(&format!("dlogits {what}"), &dg, &dc, 1e-4, 1e-6);
                let (loss, weight) = case.reference(&logits);
                let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<_>>();
                assert_close(&format!("loss vs formula {what}"), &lc, &f(loss), 1e-5, 1e-5);
                assert_close(&format!("weight vs formula {what}"), &wc, &f(weight), 0.0, 0.0);
            }
        }
    }
}

/// Masked logits (-inf at classes other than the target) give PyTorch
/// 2.x's `F.cross_entropy(reduction='none')`: finite losses with class
/// targets (also with class weights), +inf with label smoothing, NaN with
/// probability targets (0 · -inf there), and no gradient at the masked
/// classes; on both CPU paths and the GPU.
#[test]
fn cross_entropy_of_masked_logits_is_pytorchs() {
    let inf = f32::INFINITY;
    let (rows, cols) = (2, 3);
    let logits = [0.0, -inf, 1.0, 2.0, 0.5, -inf];
    let classes = [0u32, 1];
    let onehot = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0];
    let mut devs = vec![Device::cpu_reference(), Device::cpu()];
    devs.extend(gpu_or_skip("cross_entropy_of_masked_logits_is_pytorchs"));
    for d in &devs {
        let x = Buffer::from_f32(d, &logits).unwrap();
        let (t, p) = (Buffer::from_u32(d, &classes).unwrap(), Buffer::from_f32(d, &onehot).unwrap());
        let w = Buffer::from_f32(d, &[1.0, 2.0, 3.0]).unwrap();
        let base = CeArgs {
            rows,
            cols,
            target: CeTarget::Classes(&t),
            weight: None,
            ignore_index: None,
            label_smoothing: 0.0,
        };
        let loss = |args: &CeArgs| cross_entropy_rows(&x, args).unwrap().0.to_f32().unwrap();
        let name = d.name();
        assert_close(&format!("{name}: classes"), &loss(&base), &[1.3133, 1.7014], 1e-4, 1e-4);
        let weighted = CeArgs { weight: Some(&w), ..base };
        assert_close(&format!("{name}: weighted"), &loss(&weighted), &[1.3133, 3.4028], 1e-4, 1e-4);
        assert_eq!(loss(&CeArgs { label_smoothing: 0.1, ..base }), [inf, inf], "{name}: label smoothing");
        let probs = loss(&CeArgs { target: CeTarget::Probs(&p), ..base });
        assert!(probs.iter().all(|l| l.is_nan()), "{name}: probability targets: {probs:?}");
        let (_, _, pr) = cross_entropy_rows(&x, &base).unwrap();
        let ones = Buffer::from_f32(d, &[0.5, 0.5]).unwrap();
        let dx = cross_entropy_rows_backward(&pr, &base, &ones).unwrap().to_f32().unwrap();
        // PyTorch's gradient of the mean over the two rows.
        let want = [-0.3655, 0.0, 0.3655, 0.4088, -0.4088, 0.0];
        assert_close(&format!("{name}: gradient"), &dx, &want, 1e-3, 1e-4);
    }
}

/// The twin's gradient is the derivative of its loss (central differences).
#[test]
fn cross_entropy_backward_twin_matches_finite_differences() {
    let c = Device::cpu_reference();
    let (rows, cols) = (3, 4);
    let logits = rng(9).vec(rows * cols, -2.0, 2.0);
    let grad = rng(10).vec(rows, 0.5, 1.5);
    for case in ce_cases(rows, cols, 11) {
        let f = |x: &[f32]| -> f64 {
            let loss = case.run(&c, x, &grad)[0].clone();
            loss.iter().zip(&grad).map(|(&l, &g)| l as f64 * g as f64).sum()
        };
        let dx = case.run(&c, &logits, &grad)[3].clone();
        let h = 1e-2;
        for j in 0..logits.len() {
            let (mut a, mut b) = (logits.clone(), logits.clone());
            a[j] += h;
            b[j] -= h;
            let numeric = (f(&a) - f(&b)) / (2.0 * h as f64);
            assert!(
                (dx[j] as f64 - numeric).abs() < 2e-3,
                "probs {} weight {} ignore {:?} smoothing {} element {j}: {} vs {numeric}",
                case.probs.is_some(),
                case.weight.is_some(),
                case.ignore,
                case.smoothing,
                dx[j]
            );
        }
    }
}

#[test]
fn cross_entropy_flags_bad_targets_and_arguments() {
    let mut devs = vec![Device::cpu_reference()];
    // A GPU device of its own: the index error it records must not reach other tests' reads.
    devs.extend(fresh_gpu_or_skip("cross_entropy_flags_bad_targets_and_arguments"));
    for d in devs {
        let x = Buffer::from_f32(&d, &[0.5, -1.0, 2.0, 0.0, 1.0, 3.0]).unwrap();
        // Class 7 of 3 is out of range: an index error (on the CPU from the
        // op, on a GPU from the next readback, with that row NaN meanwhile).
        let t = Buffer::from_u32(&d, &[7, 1]).unwrap();
        let args = CeArgs {
            rows: 2,
            cols: 3,
            target: CeTarget::Classes(&t),
            weight: None,
            ignore_index: None,
            label_smoothing: 0.0,
        };
        let expect_index_error = |r: Result<_, Error>| match r {
            Err(Error::IndexOutOfRange { op: "cross_entropy", index: 7, size: 3 }) => {}
            other => panic!("{}: expected the index error, got {other:?}", d.name()),
        };
        if d.is_gpu() {
            let (loss, weight, probs) = cross_entropy_rows(&x, &args).unwrap();
            expect_index_error(loss.to_f32().map(|_| ()));
            let (loss, weight) = (loss.to_f32().unwrap(), weight.to_f32().unwrap());
            assert!(
                loss[0].is_nan() && weight[0].is_nan() && loss[1].is_finite() && weight[1] == 1.0,
                "{loss:?} {weight:?}"
            );
            let dx = cross_entropy_rows_backward(&probs, &args, &Buffer::from_f32(&d, &[1.0, 1.0]).unwrap()).unwrap();
            let dx = dx.to_f32().unwrap();
            assert!(dx[..3].iter().all(|v| v.is_nan()) && dx[3..].iter().all(|v| v.is_finite()), "{dx:?}");
        } else {
            expect_index_error(cross_entropy_rows(&x, &args).map(|_| ()));
        }
        // An out-of-range ignore index (PyTorch's -100) is not an error.
        let ignored = Buffer::from_u32(&d, &[100, 1]).unwrap();
        let a = CeArgs { target: CeTarget::Classes(&ignored), ignore_index: Some(100), ..args };
        let (loss, _, _) = cross_entropy_rows(&x, &a).unwrap();
        assert_eq!(loss.to_f32().unwrap()[0], 0.0, "{}", d.name());

        let p = Buffer::from_f32(&d, &[0.2; 6]).unwrap();
        let bad = [
            CeArgs { target: CeTarget::Probs(&p), ignore_index: Some(0), ..args },
            CeArgs { label_smoothing: 1.5, ..args },
            CeArgs { cols: 0, ..args },
            CeArgs { rows: 3, ..args },
        ];
        for a in bad {
            assert!(cross_entropy_rows(&x, &a).is_err(), "accepted {a:?}");
        }
    }
}

#[test]
fn dropout_masks_match_twin_bit_exactly() {
    let Some((g, c)) = devices("dropout_masks_match_twin_bit_exactly") else { return };
    let streams: &[(u64, u64)] = &[(0, 0), (42, 7), (u64::MAX, 0xffff_fff0), (0xdead_beef_0000_0001, 1 << 40)];
    for &(seed, offset) in streams {
        for &n in SIZES.iter().chain(&[4096 + 3]) {
            for p in [0.0, 0.1, 0.5, 1.0] {
                let mg = dropout_mask(&g, n, p, seed, offset).unwrap().to_u32().unwrap();
                let mc = dropout_mask(&c, n, p, seed, offset).unwrap().to_u32().unwrap();
                assert_eq!(mg, mc, "seed {seed:#x} offset {offset:#x} n {n} p {p}");
                // A dropped element is exactly one whose uniform draw is below p.
                let u = uniform(&c, n, seed, offset, 0.0, 1.0).unwrap().to_f32().unwrap();
                let want: Vec<u32> =
                    u.iter().map(|&u| if u < p { 0.0f32 } else { 1.0 / (1.0 - p) }).map(f32::to_bits).collect();
                if p < 1.0 {
                    assert_eq!(mc, want, "mask vs uniform, seed {seed:#x} n {n} p {p}");
                } else {
                    assert!(mc.iter().all(|&b| b == 0), "p = 1 keeps an element");
                }
            }
        }
    }
}

fn check_mask_statistics(dev: &Device) {
    let n = 100_000;
    for (k, p) in [0.1f32, 0.5].into_iter().enumerate() {
        let m = dropout_mask(dev, n, p, 11, k as u64 * counters_used(n)).unwrap().to_f32().unwrap();
        let scale = 1.0 / (1.0 - p);
        assert!(m.iter().all(|&v| v == 0.0 || v == scale), "p {p}: a value other than 0 and {scale}");
        let dropped = m.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
        // About five standard errors of a binomial proportion.
        let tol = 5.0 * (p as f64 * (1.0 - p as f64) / n as f64).sqrt();
        assert!((dropped - p as f64).abs() < tol, "p {p}: dropped fraction {dropped} on {}", dev.name());
        let mean = m.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.02, "p {p}: the mask's mean {mean} is not 1");
    }
    assert!(dropout_mask(dev, 8, 0.0, 1, 0).unwrap().to_f32().unwrap().iter().all(|&v| v == 1.0));
    assert!(dropout_mask(dev, 8, -0.1, 1, 0).is_err() && dropout_mask(dev, 8, 1.5, 1, 0).is_err());
}

#[test]
fn dropout_masks_have_the_right_statistics() {
    check_mask_statistics(&Device::cpu_reference());
    if let Some((g, _)) = devices("dropout_masks_have_the_right_statistics") {
        check_mask_statistics(&g);
    }
}

/// On CPU adapters the row kernels (softmax and the row norm, forward and
/// backward) run one thread per row (`*_serial` entries) from 64 rows on and
/// a workgroup per row below; GPUs always take a workgroup per row. The
/// parity tests above cover both sizes; this checks that both entries ran.
#[test]
fn row_kernels_pick_thread_per_row_on_cpu_adapters() {
    use wgrad_gpu_core::ops::norm::{normalize_rows, normalize_rows_backward};
    // A device of its own: the profile must not see the other tests' launches.
    let Some(g) = fresh_gpu_or_skip("row_kernels_pick_thread_per_row_on_cpu_adapters") else { return };
    let cpu_adapter = g.info().device_type == "Cpu";
    for rows in [63, 64] {
        let cols = 10;
        let x = Buffer::from_f32(&g, &rng(9).vec(rows * cols, -2.0, 2.0)).unwrap();
        let classes = Buffer::from_u32(&g, &(0..rows as u32).map(|r| r % cols as u32).collect::<Vec<_>>()).unwrap();
        let ones = Buffer::from_f32(&g, &vec![1.0; rows]).unwrap();
        let (_, p) = g
            .profile(|| {
                let y = softmax_rows(&x, rows, cols, false).unwrap();
                softmax_rows_backward(&y, &x, rows, cols, false).unwrap();
                let (y, _, rstd) = normalize_rows(&x, rows, cols, 1e-5).unwrap();
                normalize_rows_backward(&x, &y, &rstd, rows, cols).unwrap();
                let args = CeArgs {
                    rows,
                    cols,
                    target: CeTarget::Classes(&classes),
                    weight: None,
                    ignore_index: None,
                    label_smoothing: 0.0,
                };
                let (_, _, probs) = cross_entropy_rows(&x, &args).unwrap();
                cross_entropy_rows_backward(&probs, &args, &ones).unwrap();
            })
            .unwrap();
        let entries: Vec<String> =
            p.launches.iter().map(|l| l.family.rsplit(':').next().unwrap().to_string()).collect();
        let serial = cpu_adapter && rows >= 64;
        let want: Vec<String> =
            ["softmax_fwd", "softmax_bwd", "normalize_rows", "normalize_rows_backward", "ce_fwd", "ce_bwd"]
                .iter()
                .map(|e| if serial { format!("{e}_serial") } else { e.to_string() })
                .collect();
        assert_eq!(entries, want, "{rows} rows on {}", g.name());
    }
}

/// The thread-per-row cross-entropy (CPU adapters, 64 rows or more) reports
/// an out-of-range class like the workgroup entry: the index error at the
/// next readback, that row's loss, weight and gradient NaN, the others finite.
#[test]
fn cross_entropy_thread_per_row_flags_bad_targets() {
    // A device of its own: the index error it records must not reach other tests' reads.
    let Some(g) = fresh_gpu_or_skip("cross_entropy_thread_per_row_flags_bad_targets") else { return };
    let (rows, cols) = (70, 3);
    let x = Buffer::from_f32(&g, &rng(12).vec(rows * cols, -2.0, 2.0)).unwrap();
    let mut classes: Vec<u32> = (0..rows as u32).map(|r| r % 3).collect();
    classes[65] = 7;
    let t = Buffer::from_u32(&g, &classes).unwrap();
    let args =
        CeArgs { rows, cols, target: CeTarget::Classes(&t), weight: None, ignore_index: None, label_smoothing: 0.0 };
    let (loss, weight, probs) = cross_entropy_rows(&x, &args).unwrap();
    match loss.to_f32() {
        Err(Error::IndexOutOfRange { op: "cross_entropy", index: 7, size: 3 }) => {}
        other => panic!("expected the index error, got {other:?}"),
    }
    let (loss, weight) = (loss.to_f32().unwrap(), weight.to_f32().unwrap());
    for r in 0..rows {
        let bad = r == 65;
        assert_eq!(loss[r].is_nan(), bad, "row {r}: loss {}", loss[r]);
        assert_eq!(weight[r].is_nan(), bad, "row {r}: weight {}", weight[r]);
    }
    let dx = cross_entropy_rows_backward(&probs, &args, &Buffer::from_f32(&g, &vec![1.0; rows]).unwrap()).unwrap();
    let dx = dx.to_f32().unwrap();
    for (i, v) in dx[..rows * cols].iter().enumerate() {
        assert_eq!(v.is_nan(), i / cols == 65, "dlogits[{i}] = {v}");
    }
}

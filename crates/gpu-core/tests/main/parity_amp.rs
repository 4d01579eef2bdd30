//! Loss scaling on the device (`ops::amp`): unscaling, GPU kernel vs CPU
//! twin on awkward sizes with NaN, ±inf and huge finite values injected;
//! the found_inf flag's semantics (set by the input's finiteness, never
//! cleared by unscaling, accumulated over launches); the gate that fills and marks an
//! optimizer's rows skipped; the scale update against PyTorch's rule
//! computed in f64 on the host; argument errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::amp::{
    gate, state_words, unscale_and_check, unscale_and_check_all, update_scale, FOUND_INF, INV_SCALE, SCALE,
    STATE_WORDS, TRACKER, VERDICT,
};
use wgrad_gpu_core::{Buffer, Device};

fn upload(d: &Device, v: &[f32]) -> Buffer {
    Buffer::from_f32(d, v).unwrap()
}

/// A scaler state whose inverse scale is `inv` (the scale is not read by unscaling).
fn state(d: &Device, inv: f32) -> Buffer {
    let mut w = state_words(1.0 / inv, 0);
    w[INV_SCALE] = inv.to_bits();
    Buffer::from_u32(d, &w).unwrap()
}

fn found(state: &Buffer) -> f32 {
    f32::from_bits(state.to_u32().unwrap()[FOUND_INF])
}

/// Gradient data of `n` elements with the given specials written at spread
/// positions (none when `specials` is empty).
fn data(seed: u64, n: usize, specials: &[f32]) -> Vec<f32> {
    let mut v = rng(seed).vec(n, -1e4, 1e4);
    for (k, &s) in specials.iter().enumerate() {
        // Spread over the buffer, the last element included.
        let i = if k == 0 { n - 1 } else { (k * 7919 + n / 2) % n };
        v[i] = s;
    }
    v
}

/// Same values, NaNs compared as NaNs (their payloads may differ).
#[track_caller]
fn same_bits(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{what}: element {i}: {x} vs {y}");
    }
}

#[test]
fn unscale_and_check_matches_its_twin() {
    let Some((g, c)) = devices("unscale_and_check_matches_its_twin") else { return };
    let cases: &[(&str, &[f32])] = &[
        ("finite", &[]),
        ("huge finite", &[3.0e38, -3.4e38]),
        ("nan", &[f32::NAN]),
        ("+inf", &[f32::INFINITY]),
        ("-inf", &[f32::NEG_INFINITY]),
        ("mixed", &[f32::NAN, f32::INFINITY, 3.0e38, f32::NEG_INFINITY]),
    ];
    for &n in &[1usize, 7, 1000, 65537] {
        for (ci, (name, specials)) in cases.iter().enumerate() {
            // 1/65536 (a power of two), 1/3 (rounded), 1 (values untouched), 4 (huge values overflow).
            for (si, &inv) in [1.0f32 / 65536.0, 1.0 / 3.0, 1.0, 4.0].iter().enumerate() {
                let specials = if n == 1 { &specials[..specials.len().min(1)] } else { specials };
                let v = data((n * 100 + ci * 10 + si) as u64, n, specials);
                let what = format!("n={n} {name} inv_scale={inv}");
                let expect_inf = v.iter().any(|x| !x.is_finite());
                let mut flags = Vec::new();
                let mut grads = Vec::new();
                for d in [&g, &c] {
                    let grad = upload(d, &v);
                    let st = state(d, inv);
                    unscale_and_check(&grad, n, &st).unwrap();
                    grads.push(grad.to_f32().unwrap());
                    flags.push(found(&st));
                    assert_eq!(
                        st.to_u32().unwrap()[INV_SCALE],
                        inv.to_bits(),
                        "{what}: inv_scale written on {}",
                        d.name()
                    );
                }
                same_bits(&format!("{what}: gradient"), &grads[0][..n], &grads[1][..n]);
                assert_eq!(flags[0], flags[1], "{what}: found_inf GPU vs CPU");
                assert_eq!(flags[1], if expect_inf { 1.0 } else { 0.0 }, "{what}: found_inf");
                // The twin itself against the definition.
                let want: Vec<f32> = v.iter().map(|&x| if inv == 1.0 { x } else { x * inv }).collect();
                same_bits(&format!("{what}: CPU twin vs definition"), &grads[1][..n], &want);
            }
        }
    }
}

/// Many gradients at once (seven per launch, the rest one each): the bits
/// and verdict of one launch per gradient, on the GPU and the CPU twin, in
/// 5 launches for 17 gradients (two groups of seven, three alone); empty
/// gradients are skipped. The overflow sits in each position of a group in
/// turn, the last gradient of the last group included.
#[test]
fn unscale_and_check_all_equals_one_launch_each() {
    // A device of its own: the test counts its launches.
    let Some(g) = wgrad_gpu_core::testing::fresh_gpu_or_skip("unscale_and_check_all_equals_one_launch_each") else {
        return;
    };
    let c = Device::cpu_reference();
    let sizes = [1usize, 300, 0, 7, 1000, 65, 2, 4097, 9, 33, 0, 1, 513, 70, 3, 256, 257, 5, 8];
    for bad in [None, Some(0), Some(3), Some(8), Some(16), Some(18)] {
        let inputs: Vec<Vec<f32>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                let specials: &[f32] = if Some(k) == bad { &[f32::INFINITY] } else { &[] };
                if n == 0 {
                    vec![0.0]
                } else {
                    data(k as u64, n, specials)
                }
            })
            .collect();
        let mut results = Vec::new();
        for (gpu, d, all) in [(true, &g, true), (true, &g, false), (false, &c, true)] {
            let grads: Vec<Buffer> = inputs.iter().map(|v| upload(d, v)).collect();
            let st = state(d, 1.0 / 3.0);
            d.flush().unwrap();
            let before = d.stats().dispatches;
            if all {
                let list: Vec<(&Buffer, usize)> = grads.iter().zip(sizes).collect();
                unscale_and_check_all(&list, &st).unwrap();
            } else {
                for (b, &n) in grads.iter().zip(&sizes) {
                    unscale_and_check(b, n, &st).unwrap();
                }
            }
            d.flush().unwrap();
            let launches = d.stats().dispatches - before;
            if gpu {
                assert_eq!(launches, if all { 5 } else { 17 }, "launches, all at once: {all}");
            }
            let values: Vec<Vec<f32>> = grads.iter().map(|b| b.to_f32().unwrap()).collect();
            results.push((values, found(&st)));
        }
        let what = format!("overflow in gradient {bad:?}");
        for (k, n) in sizes.iter().enumerate() {
            same_bits(
                &format!("{what}: gradient {k}, one launch each"),
                &results[0].0[k][..*n],
                &results[1].0[k][..*n],
            );
            same_bits(&format!("{what}: gradient {k}, CPU twin"), &results[0].0[k][..*n], &results[2].0[k][..*n]);
        }
        let want = if bad.is_some() { 1.0 } else { 0.0 };
        assert_eq!([results[0].1, results[1].1, results[2].1], [want; 3], "{what}: found_inf");
    }
    // One buffer twice is refused before anything runs.
    let b = upload(&c, &[1.0, 2.0]);
    let st = state(&c, 0.5);
    let err = unscale_and_check_all(&[(&b, 2), (&b, 1)], &st).unwrap_err().to_string();
    assert!(err.contains("listed twice"), "{err}");
    assert_eq!(b.to_f32().unwrap(), [1.0, 2.0]);
}

#[test]
fn found_inf_is_only_ever_set_by_unscaling() {
    let mut devs = vec![Device::cpu_reference(), Device::cpu()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("found_inf_is_only_ever_set_by_unscaling"));
    for d in &devs {
        let s = state(d, 0.5);
        // A clean gradient leaves the flag at 0.
        let a = upload(d, &[1.0, 2.0, 3.0]);
        unscale_and_check(&a, 3, &s).unwrap();
        assert_eq!(found(&s), 0.0, "{}", d.name());
        // A bad one sets it; a clean one after it does not clear it.
        let b = upload(d, &[1.0, f32::INFINITY]);
        unscale_and_check(&b, 2, &s).unwrap();
        unscale_and_check(&a, 3, &s).unwrap();
        assert_eq!(found(&s), 1.0, "{}", d.name());
        assert_eq!(a.to_f32().unwrap(), vec![0.25, 0.5, 0.75], "{}: unscaled twice", d.name());
        // Elements past n are neither read for the check nor scaled.
        let c = upload(d, &[2.0, f32::NAN, 8.0]);
        let s2 = state(d, 0.5);
        unscale_and_check(&c, 1, &s2).unwrap();
        let cv = c.to_f32().unwrap();
        assert_eq!((cv[0], cv[2]), (1.0, 8.0), "{}", d.name());
        assert_eq!(found(&s2), 0.0, "{}: element past n checked", d.name());
    }
}

#[test]
fn unscale_bad_arguments_are_errors() {
    let c = Device::cpu_reference();
    let grad = upload(&c, &[1.0; 8]);
    let s = state(&c, 0.5);
    let err = |r: wgrad_gpu_core::Result<()>| r.unwrap_err().to_string();
    assert!(err(unscale_and_check(&grad, 9, &s)).contains("gradient buffer"));
    assert!(err(unscale_and_check(&grad, 4, &grad)).contains("different buffers"));
    assert!(err(unscale_and_check(&grad, 4, &upload(&c, &[0.5]))).contains("state"));
    let other = Device::cpu_reference();
    assert!(err(unscale_and_check(&grad, 4, &state(&other, 0.5))).contains("different devices"));
    // n = 0 is a no-op.
    unscale_and_check(&grad, 0, &s).unwrap();
    assert_eq!(grad.to_f32().unwrap(), vec![1.0; 8]);
}

/// The gate fills each row asked for from the candidate its skip word
/// picks (a row marked skipped takes the second table), writes the flag
/// into the skip word, and touches nothing else, on every backend.
#[test]
fn gate_fills_the_rows_from_the_candidate_and_marks_them() {
    let mut devs = vec![Device::cpu_reference(), Device::cpu()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("gate_fills_the_rows_from_the_candidate_and_marks_them"));
    for d in &devs {
        for (rows, flag) in [(1usize, 1.0f32), (3, 0.0), (300, 1.0)] {
            let (words, skip) = (10, 9);
            // One row more than asked for, which must stay; rows alternate
            // between marked applied and skipped.
            let before: Vec<u32> = (0..(rows + 1) * words)
                .map(|i| if i % words == skip { ((i / words) % 2) as u32 } else { i as u32 * 7 + 1 })
                .collect();
            let choices: Vec<u32> = (0..2 * rows * words).map(|i| 1_000_000 + i as u32 * 3).collect();
            let table = Buffer::from_u32(d, &before).unwrap();
            let cb = Buffer::from_u32(d, &choices).unwrap();
            let mut w = state_words(8.0, 0);
            w[FOUND_INF] = flag.to_bits();
            let st = Buffer::from_u32(d, &w).unwrap();
            gate(&table, &cb, rows, (words, skip), &st).unwrap();
            let mut want = before.clone();
            for r in 0..rows {
                let from = r * words + if before[r * words + skip] != 0 { rows * words } else { 0 };
                want[r * words..(r + 1) * words].copy_from_slice(&choices[from..from + words]);
                want[r * words + skip] = u32::from(flag != 0.0);
            }
            assert_eq!(table.to_u32().unwrap(), want, "{} rows {rows} flag {flag}", d.name());
            assert_eq!(st.to_u32().unwrap(), w.to_vec(), "{}: the state is only read", d.name());
            assert_eq!(cb.to_u32().unwrap(), choices, "{}: the choices are only read", d.name());
        }
        let t = Buffer::from_u32(d, &[0; 20]).unwrap();
        let c = Buffer::from_u32(d, &[0; 40]).unwrap();
        let st = Buffer::from_u32(d, &state_words(1.0, 0)).unwrap();
        assert!(gate(&t, &c, 3, (10, 9), &st).is_err(), "a table too short");
        assert!(gate(&t, &t, 2, (10, 9), &st).is_err(), "the table as its own choices");
        assert!(gate(&t, &c, 2, (10, 10), &st).is_err(), "a skip word outside the row");
        let short = Buffer::from_u32(d, &[0; 30]).unwrap();
        assert!(gate(&t, &short, 2, (10, 9), &st).is_err(), "choices too short");
    }
}

/// PyTorch's `_amp_update_scale_` in f64 on the host: the new (scale,
/// tracker) after a step with `found`.
fn torch_update(scale: f32, tracker: u32, found: bool, (growth, backoff, interval): (f64, f64, u32)) -> (f32, u32) {
    if found {
        return ((scale as f64 * backoff) as f32, 0);
    }
    let successful = tracker + 1;
    if successful == interval {
        let grown = (scale as f64 * growth) as f32;
        (if grown.is_finite() { grown } else { scale }, 0)
    } else {
        (scale, successful)
    }
}

/// Sequences of verdicts through `update_scale` on every backend: the
/// scale and tracker follow PyTorch's rule bit for bit, the inverse scale
/// is `1/scale` as PyTorch computes it, the flag is cleared and kept as the
/// verdict; growth past f32's range keeps the scale.
#[test]
fn update_scale_follows_pytorch() {
    let mut devs = vec![Device::cpu_reference(), Device::cpu()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("update_scale_follows_pytorch"));
    let configs = [(2.0, 0.5, 3u32), (4.0, 0.25, 1), (2.0, 0.125, 0)];
    for d in &devs {
        for (ci, &(growth, backoff, interval)) in configs.iter().enumerate() {
            for init in [65536.0f32, 1000.0, 2.0f32.powi(126)] {
                let st = Buffer::from_u32(d, &state_words(init, 0)).unwrap();
                let (mut scale, mut tracker) = (init, 0u32);
                let mut h = rng(ci as u64 * 31 + init.to_bits() as u64);
                for step in 0..40 {
                    let flag = h.vec(1, 0.0, 1.0)[0] < 0.3;
                    if flag {
                        let mut w = st.to_u32().unwrap();
                        w[FOUND_INF] = 1.0f32.to_bits();
                        st.write_bytes(&w.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
                    }
                    update_scale(&st, growth, backoff, interval).unwrap();
                    (scale, tracker) = torch_update(scale, tracker, flag, (growth, backoff, interval));
                    let w = st.to_u32().unwrap();
                    let what = format!("{} config {ci} init {init} step {step}", d.name());
                    assert_eq!(f32::from_bits(w[SCALE]), scale, "{what}: scale");
                    assert_eq!(w[INV_SCALE], state_words(scale, 0)[INV_SCALE], "{what}: inverse scale");
                    assert_eq!(w[TRACKER], tracker, "{what}: tracker");
                    assert_eq!(w[FOUND_INF], 0, "{what}: the flag is cleared");
                    assert_eq!(w[VERDICT], if flag { 1.0f32.to_bits() } else { 0 }, "{what}: verdict");
                }
            }
        }
        let st = Buffer::from_u32(d, &[0; STATE_WORDS]).unwrap();
        assert!(update_scale(&st, 1.5, 0.5, 10).is_err(), "a growth factor that is not a power of two");
        assert!(update_scale(&st, 2.0, 0.3, 10).is_err(), "a backoff factor that is not a power of two");
    }
}

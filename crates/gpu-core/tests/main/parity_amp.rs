//! Mixed-precision unscaling (`ops::amp::unscale_and_check`): GPU kernel vs
//! CPU twin on awkward sizes with NaN, ±inf and huge finite values injected;
//! the found_inf flag's semantics (set by the input's finiteness, never
//! cleared, accumulated over launches); argument errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::amp::unscale_and_check;
use wgrad_gpu_core::{Buffer, Device};

fn upload(d: &Device, v: &[f32]) -> Buffer {
    Buffer::from_f32(d, v).unwrap()
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
                    let (s, f) = (upload(d, &[inv]), upload(d, &[0.0]));
                    unscale_and_check(&grad, n, &s, &f).unwrap();
                    grads.push(grad.to_f32().unwrap());
                    flags.push(f.to_f32().unwrap()[0]);
                    assert_eq!(s.to_f32().unwrap(), vec![inv], "{what}: inv_scale written on {}", d.name());
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

#[test]
fn found_inf_is_only_ever_set() {
    let mut devs = vec![Device::cpu_reference(), Device::cpu()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("found_inf_is_only_ever_set"));
    for d in &devs {
        let s = upload(d, &[0.5]);
        let f = upload(d, &[0.0]);
        // A clean gradient leaves the flag at 0.
        let a = upload(d, &[1.0, 2.0, 3.0]);
        unscale_and_check(&a, 3, &s, &f).unwrap();
        assert_eq!(f.to_f32().unwrap(), vec![0.0], "{}", d.name());
        // A bad one sets it; a clean one after it does not clear it.
        let b = upload(d, &[1.0, f32::INFINITY]);
        unscale_and_check(&b, 2, &s, &f).unwrap();
        unscale_and_check(&a, 3, &s, &f).unwrap();
        assert_eq!(f.to_f32().unwrap(), vec![1.0], "{}", d.name());
        assert_eq!(a.to_f32().unwrap(), vec![0.25, 0.5, 0.75], "{}: unscaled twice", d.name());
        // Elements past n are neither read for the check nor scaled.
        let c = upload(d, &[2.0, f32::NAN, 8.0]);
        let f2 = upload(d, &[0.0]);
        unscale_and_check(&c, 1, &s, &f2).unwrap();
        let cv = c.to_f32().unwrap();
        assert_eq!((cv[0], cv[2]), (1.0, 8.0), "{}", d.name());
        assert_eq!(f2.to_f32().unwrap(), vec![0.0], "{}: element past n checked", d.name());
    }
}

#[test]
fn unscale_bad_arguments_are_errors() {
    let c = Device::cpu_reference();
    let grad = upload(&c, &[1.0; 4]);
    let s = upload(&c, &[0.5]);
    let f = upload(&c, &[0.0]);
    let err = |r: wgrad_gpu_core::Result<()>| r.unwrap_err().to_string();
    assert!(err(unscale_and_check(&grad, 5, &s, &f)).contains("gradient buffer"));
    assert!(err(unscale_and_check(&grad, 4, &grad, &f)).contains("different buffers"));
    assert!(err(unscale_and_check(&grad, 4, &s, &s)).contains("different buffers"));
    let other = Device::cpu_reference();
    assert!(err(unscale_and_check(&grad, 4, &s, &upload(&other, &[0.0]))).contains("different devices"));
    // n = 0 is a no-op.
    unscale_and_check(&grad, 0, &s, &f).unwrap();
    assert_eq!(grad.to_f32().unwrap(), vec![1.0; 4]);
}

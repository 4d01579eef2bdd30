//! Fused optimizer updates: GPU kernel vs CPU twin for every rule and
//! variant, over several steps on awkward sizes; argument errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::optim::{update, Rule};
use wgrad_gpu_core::{Buffer, Device};

/// Every rule and variant, with the (lr, weight decay) it is run with.
fn variants() -> Vec<(Rule, f32, f32)> {
    let sgd = |momentum, dampening, nesterov| Rule::Sgd { momentum, dampening, nesterov };
    let adagrad = |lr_decay, eps_inside_sqrt| Rule::AdaGrad { lr_decay, eps: 1e-10, eps_inside_sqrt };
    let rms = |momentum, centered| Rule::RmsProp { alpha: 0.99, eps: 1e-8, momentum, centered };
    let adam = |amsgrad, decoupled| Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad, decoupled };
    vec![
        (sgd(0.0, 0.0, false), 0.1, 0.0),
        (sgd(0.0, 0.0, false), 0.1, 0.01),
        (sgd(0.9, 0.1, false), 0.05, 0.01),
        (sgd(0.9, 0.0, true), 0.05, 0.0),
        (adagrad(0.0, false), 0.1, 0.0),
        (adagrad(0.01, false), 0.1, 0.02),
        (adagrad(0.0, true), 0.1, 0.0),
        (rms(0.0, false), 0.01, 0.0),
        (rms(0.9, false), 0.01, 0.01),
        (rms(0.0, true), 0.01, 0.0),
        (rms(0.5, true), 0.01, 0.01),
        (adam(false, false), 1e-3, 0.0),
        (adam(false, false), 1e-3, 0.01),
        (adam(true, false), 1e-3, 0.01),
        (adam(false, true), 1e-3, 0.01),
        (adam(true, true), 1e-3, 0.1),
        (Rule::Lion { beta1: 0.9, beta2: 0.99 }, 1e-4, 0.0),
        (Rule::Lion { beta1: 0.9, beta2: 0.99 }, 1e-4, 0.1),
    ]
}

/// Initial state values that keep every square root real (second moments
/// positive, a centred RMSProp's mean gradient below their root).
fn initial_state(name: &str, r: &mut wgrad_gpu_core::testing::Rng, n: usize) -> Vec<f32> {
    match name {
        "sum" | "square_avg" | "exp_avg_sq" | "max_exp_avg_sq" => r.vec(n, 0.5, 2.0),
        "grad_avg" => r.vec(n, -0.5, 0.5),
        _ => r.vec(n, -1.0, 1.0),
    }
}

fn upload(d: &Device, v: &[f32]) -> Buffer {
    Buffer::from_f32(d, v).unwrap()
}

/// Three steps of every rule variant on devices `a` and `b` from the same
/// data; `check(what, a's buffer, b's buffer, n)` compares each result.
fn three_steps_of_every_rule(a: &Device, b: &Device, check: impl Fn(&str, &Buffer, &Buffer, usize)) {
    let mut r = rng(11);
    for &n in &[1usize, 2, 4, 7, 33, 1023, 70_001] {
        for (rule, lr, wd) in variants() {
            let names = rule.state_names();
            let p0 = r.vec(n, -2.0, 2.0);
            let s0: Vec<Vec<f32>> = names.iter().map(|s| initial_state(s, &mut r, n)).collect();
            let (pa, pb) = (upload(a, &p0), upload(b, &p0));
            let sa: Vec<Buffer> = s0.iter().map(|v| upload(a, v)).collect();
            let sb: Vec<Buffer> = s0.iter().map(|v| upload(b, v)).collect();
            for step in 1..=3u64 {
                let grad = r.vec(n, -1.5, 1.5);
                let (ga, gb) = (upload(a, &grad), upload(b, &grad));
                update(&rule, lr, wd, step, &pa, &ga, &sa.iter().collect::<Vec<_>>(), n).unwrap();
                update(&rule, lr, wd, step, &pb, &gb, &sb.iter().collect::<Vec<_>>(), n).unwrap();
            }
            let what = format!("{rule:?} lr={lr} wd={wd} n={n}");
            check(&format!("{what}: parameter"), &pa, &pb, n);
            for (j, name) in names.iter().enumerate() {
                check(&format!("{what}: {name}"), &sa[j], &sb[j], n);
            }
            // The update moved the parameter (a kernel that wrote nothing would pass the comparison).
            assert_ne!(pb.to_f32().unwrap()[..n], p0[..], "{what}: parameter unchanged");
        }
    }
}

#[test]
fn every_rule_matches_its_twin_over_three_steps() {
    let Some((g, c)) = devices("every_rule_matches_its_twin_over_three_steps") else { return };
    three_steps_of_every_rule(&g, &c, |what, x, y, n| same(what, x, y, n, 1e-5, 1e-6));
}

/// The fast CPU update runs the reference's per-element rule over chunks
/// on all cores: the same bits. Needs no GPU.
#[test]
fn fast_cpu_updates_equal_the_reference_bit_for_bit() {
    three_steps_of_every_rule(&Device::cpu(), &Device::cpu_reference(), |what, x, y, n| {
        assert_eq!(x.to_u32().unwrap()[..n], y.to_u32().unwrap()[..n], "{what}");
    });
}

#[test]
fn elements_past_n_are_left_alone() {
    // The kernel works on quads; the last one straddles n and must write only its live part.
    let Some((g, c)) = devices("elements_past_n_are_left_alone") else { return };
    let rule = Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: true, decoupled: true };
    for n in [1usize, 2, 3, 5, 37] {
        let total = n + 7;
        for d in [&g, &c] {
            let p = upload(d, &vec![1.0; total]);
            let grad = upload(d, &vec![0.5; total]);
            let s: Vec<Buffer> = (0..3).map(|_| upload(d, &vec![0.25; total])).collect();
            update(&rule, 0.1, 0.01, 1, &p, &grad, &s.iter().collect::<Vec<_>>(), n).unwrap();
            let (pv, sv) = (p.to_f32().unwrap(), s[0].to_f32().unwrap());
            assert!(pv[..n].iter().all(|&v| v != 1.0), "n={n} on {}: parameter not updated", d.name());
            assert_eq!(pv[n..], vec![1.0; 7][..], "n={n} on {}: parameter written past n", d.name());
            for b in &s {
                assert_eq!(b.to_f32().unwrap()[n..], vec![0.25; 7][..], "n={n} on {}: state written past n", d.name());
            }
            assert!(sv[..n].iter().all(|&v| v != 0.25));
        }
    }
}

/// A row whose skip word is set (a loss scaler's gate) leaves the
/// parameter and every state buffer untouched, for every rule and variant,
/// on every backend; the same row with the word clear updates.
#[test]
fn a_skipped_row_changes_nothing() {
    use wgrad_gpu_core::ops::optim::{scalars, update_row, SKIP_WORD};
    let mut devs = vec![Device::cpu_reference(), Device::cpu()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("a_skipped_row_changes_nothing"));
    let mut r = rng(5);
    for d in &devs {
        for (rule, lr, wd) in variants() {
            let n = 37;
            let p0 = r.vec(n, -2.0, 2.0);
            let s0: Vec<Vec<f32>> = rule.state_names().iter().map(|s| initial_state(s, &mut r, n)).collect();
            let g = upload(d, &r.vec(n, -1.0, 1.0));
            for skip in [true, false] {
                let p = upload(d, &p0);
                let s: Vec<Buffer> = s0.iter().map(|v| upload(d, v)).collect();
                let mut row = scalars(&rule, lr, wd, 3);
                row[SKIP_WORD] = skip as u32;
                let rows = Buffer::from_u32(d, &row).unwrap();
                update_row(&rule, (&rows, 0), &p, &g, &s.iter().collect::<Vec<_>>(), n).unwrap();
                let unchanged = p.to_f32().unwrap()[..n] == p0[..]
                    && s.iter().zip(&s0).all(|(b, v)| b.to_f32().unwrap()[..n] == v[..]);
                assert_eq!(unchanged, skip, "{rule:?} on {}: skip {skip}", d.name());
            }
        }
    }
}

#[test]
fn one_adam_step_matches_the_formula() {
    // Step 1 from zero state: m = 0.1 g, v = 0.001 g², so the update is
    // lr · g / (|g| + eps·…) ≈ lr · sign(g) whatever the gradient's scale.
    for dev in [Device::cpu_reference()].into_iter().chain(wgrad_gpu_core::testing::gpu_or_skip("one_adam_step")) {
        let p = upload(&dev, &[1.0, -2.0, 0.5]);
        let grad = upload(&dev, &[0.3, -40.0, 1e-3]);
        let (m, v) = (upload(&dev, &[0.0; 3]), upload(&dev, &[0.0; 3]));
        let rule = Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: false, decoupled: false };
        update(&rule, 0.01, 0.0, 1, &p, &grad, &[&m, &v], 3).unwrap();
        wgrad_gpu_core::testing::assert_close("adam step 1", &p.to_f32().unwrap(), &[0.99, -1.99, 0.49], 1e-6, 1e-5);
        wgrad_gpu_core::testing::assert_close("exp_avg", &m.to_f32().unwrap(), &[0.03, -4.0, 1e-4], 1e-6, 0.0);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let c = Device::cpu_reference();
    let p = upload(&c, &[1.0; 4]);
    let grad = upload(&c, &[1.0; 4]);
    let m = upload(&c, &[0.0; 4]);
    let short = upload(&c, &[0.0; 2]);
    let adam = Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, amsgrad: false, decoupled: false };
    let err = |r: wgrad_gpu_core::Result<()>| r.unwrap_err().to_string();
    assert!(err(update(&adam, 0.1, 0.0, 1, &p, &grad, &[&m], 4)).contains("2 state buffers"));
    assert!(err(update(&adam, 0.1, 0.0, 1, &p, &grad, &[&m, &short], 4)).contains("exp_avg_sq"));
    assert!(err(update(&adam, 0.1, 0.0, 1, &p, &p, &[&m, &grad], 4)).contains("also passed"));
    assert!(err(update(&adam, 0.1, 0.0, 1, &p, &grad, &[&m, &m], 4)).contains("also passed"));
    let sgd = Rule::Sgd { momentum: 0.0, dampening: 0.0, nesterov: false };
    let other = Device::cpu_reference();
    let g2 = upload(&other, &[1.0; 4]);
    assert!(err(update(&sgd, 0.1, 0.0, 1, &p, &g2, &[], 4)).contains("different devices"));
    // n = 0 is a no-op.
    update(&sgd, 0.1, 0.0, 1, &p, &grad, &[], 0).unwrap();
    assert_eq!(p.to_f32().unwrap(), vec![1.0; 4]);
}

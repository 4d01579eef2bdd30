//! Learning-rate schedules: hand-checked values, warm-up composed with every
//! schedule, state-dict round trips that resume identically, lrs set from
//! outside, and clear errors. (Values against PyTorch: the root test
//! tests/main/schedule_reference.rs.)

use wgrad_gpu_core::testing::assert_close;
use wgrad_nn::optim::{Optimizer, ParamGroup};
use wgrad_nn::schedule::{
    Anneal, CosineAnnealingLR, ExponentialLR, InverseTimeDecay, LinearWarmup, LrScheduler, MultiStepLR, OneCycleLR,
    OneCycleOptions, PlateauMode, PlateauOptions, ReduceLROnPlateau, StepLR, ThresholdMode,
};
use wgrad_nn::state::StateDict;

/// A parameter-less optimizer: the schedules only touch the group lrs.
struct Stub {
    groups: Vec<ParamGroup>,
}

impl Stub {
    fn new(lrs: &[f32]) -> Self {
        Stub { groups: lrs.iter().map(|&lr| ParamGroup::new(vec![], lr, 0.0)).collect() }
    }

    fn lrs(&self) -> Vec<f32> {
        self.groups.iter().map(|g| g.lr).collect()
    }
}

impl Optimizer for Stub {
    fn step(&mut self) {}

    fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    fn groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.groups
    }

    /// The group lrs, as a real optimizer saves them.
    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        for (i, g) in self.groups.iter().enumerate() {
            sd.meta.insert(format!("groups.{i}.lr"), format!("{:?}", g.lr));
        }
        sd
    }

    fn load_state_dict(&mut self, sd: &StateDict) -> wgrad_autograd::Result<()> {
        for (i, g) in self.groups.iter_mut().enumerate() {
            g.lr = sd.meta[&format!("groups.{i}.lr")].parse().unwrap();
        }
        Ok(())
    }
}

/// The lr of group 0 at construction and after each of `steps` steps.
fn trace(opt: &mut Stub, s: &mut dyn LrScheduler, steps: usize) -> Vec<f32> {
    let mut v = vec![s.last_lr()[0]];
    for _ in 0..steps {
        opt.step();
        s.step(opt);
        assert_eq!(s.last_lr(), opt.lrs(), "last_lr reports what the groups hold");
        v.push(s.last_lr()[0]);
    }
    v
}

fn close(what: &str, got: &[f32], want: &[f64]) {
    let want: Vec<f32> = want.iter().map(|&w| w as f32).collect();
    assert_close(what, got, &want, 1e-6, 1e-9);
}

#[test]
fn step_lr_decays_every_step_size_steps() {
    let mut opt = Stub::new(&[1.0]);
    let mut s = StepLR::new(&mut opt, 3, 0.1);
    close("StepLR", &trace(&mut opt, &mut s, 7), &[1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01]);
    assert_eq!(s.last_epoch(), 7);
}

#[test]
fn multi_step_lr_decays_at_milestones_and_repeats_compound() {
    let mut opt = Stub::new(&[1.0]);
    let mut s = MultiStepLR::new(&mut opt, &[4, 2, 4], 0.5);
    close("MultiStepLR", &trace(&mut opt, &mut s, 5), &[1.0, 1.0, 0.5, 0.5, 0.125, 0.125]);
    // A milestone at 0 decays the starting lr, as PyTorch's constructor does.
    let mut opt = Stub::new(&[1.0]);
    let mut s = MultiStepLR::new(&mut opt, &[0, 1], 0.5);
    close("MultiStepLR at 0", &trace(&mut opt, &mut s, 2), &[0.5, 0.25, 0.25]);
    assert_eq!(s.base_lrs(), vec![1.0], "base lrs are the undecayed ones");
}

#[test]
fn exponential_lr_decays_every_step() {
    let mut opt = Stub::new(&[1.0, 0.5]);
    let mut s = ExponentialLR::new(&mut opt, 0.5);
    close("ExponentialLR", &trace(&mut opt, &mut s, 3), &[1.0, 0.5, 0.25, 0.125]);
    assert_eq!(opt.lrs(), vec![0.125, 0.0625]);
}

#[test]
fn cosine_annealing_reaches_eta_min_at_t_max_and_rises_after() {
    let mut opt = Stub::new(&[1.1]);
    let mut s = CosineAnnealingLR::new(&mut opt, 4, 0.1);
    let got = trace(&mut opt, &mut s, 8);
    let c = (std::f64::consts::FRAC_PI_4).cos();
    let want = [
        1.1,
        0.1 + (1.0 + c) / 2.0,
        0.6,
        0.1 + (1.0 - c) / 2.0,
        0.1,
        0.1 + (1.0 - c) / 2.0,
        0.6,
        0.1 + (1.0 + c) / 2.0,
        1.1,
    ];
    close("CosineAnnealingLR", &got, &want);
    for (t, &lr) in got.iter().enumerate() {
        close(&format!("closed form at {t}"), &[lr], &s.closed_form(t));
    }
}

#[test]
fn inverse_time_decay_smooth_and_staircase() {
    let mut opt = Stub::new(&[1.0]);
    let mut s = InverseTimeDecay::new(&mut opt, 1.0, 2, false);
    close("smooth", &trace(&mut opt, &mut s, 4), &[1.0, 1.0 / 1.5, 0.5, 1.0 / 2.5, 1.0 / 3.0]);
    let mut opt = Stub::new(&[1.0]);
    let mut s = InverseTimeDecay::new(&mut opt, 1.0, 2, true);
    close("staircase", &trace(&mut opt, &mut s, 4), &[1.0, 1.0, 0.5, 0.5, 1.0 / 3.0]);
}

#[test]
fn one_cycle_rises_to_max_then_anneals_to_the_final_lr() {
    // Phase 1 ends at step 0.3 * 10 - 1 = 2, phase 2 at step 9.
    let opts = OneCycleOptions { pct_start: 0.3, div_factor: 10.0, final_div_factor: 100.0, ..Default::default() };
    let mut opt = Stub::new(&[123.0]);
    let mut s = OneCycleLR::new(&mut opt, &[1.0], 10, opts);
    let got = trace(&mut opt, &mut s, 12);
    let cos_anneal = |a: f64, b: f64, pct: f64| b + (a - b) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0);
    let mut want = vec![0.1, 0.55, 1.0];
    want.extend((3..=10).map(|t| cos_anneal(1.0, 0.001, (t as f64 - 2.0) / 7.0)));
    // Past total_steps the final lr holds (PyTorch raises instead).
    want.extend([0.001, 0.001]);
    close("OneCycleLR cos", &got, &want);
    assert!((got[9] - 0.001).abs() < 1e-9, "step total_steps - 1 ends at max_lr / div / final_div");

    let lin = OneCycleOptions { anneal: Anneal::Linear, ..opts };
    let mut opt = Stub::new(&[0.0]);
    let mut s = OneCycleLR::new(&mut opt, &[1.0], 10, lin);
    let got = trace(&mut opt, &mut s, 5);
    close(
        "OneCycleLR linear",
        &got,
        &[0.1, 0.55, 1.0, 1.0 - 0.999 / 7.0, 1.0 - 0.999 * 2.0 / 7.0, 1.0 - 0.999 * 3.0 / 7.0],
    );

    // Three phases: up over steps 0..2, back down to the start over 2..4, then to the final lr.
    let three = OneCycleOptions { three_phase: true, anneal: Anneal::Linear, ..opts };
    let mut opt = Stub::new(&[0.0]);
    let mut s = OneCycleLR::new(&mut opt, &[1.0], 10, three);
    let got = trace(&mut opt, &mut s, 9);
    let mut want = vec![0.1, 0.55, 1.0, 0.55, 0.1];
    want.extend((5..=9).map(|t| 0.1 + (0.001 - 0.1) * (t as f64 - 4.0) / 5.0));
    close("OneCycleLR three phases", &got, &want);
}

#[test]
fn one_cycle_takes_one_max_lr_per_group() {
    let mut opt = Stub::new(&[0.0, 0.0]);
    let s = OneCycleLR::new(&mut opt, &[1.0, 0.5], 10, OneCycleOptions::default());
    close("initial lrs", &s.last_lr(), &[0.04, 0.02]);
    close("base lrs", &s.base_lrs().iter().map(|&l| l as f32).collect::<Vec<_>>(), &[0.04, 0.02]);
}

fn plateau(opt: &mut Stub, options: PlateauOptions, metrics: &[f32]) -> (ReduceLROnPlateau, Vec<f32>) {
    let mut s = ReduceLROnPlateau::new(opt, options);
    let lrs = metrics
        .iter()
        .map(|&m| {
            s.step_with(m, opt);
            s.last_lr()[0]
        })
        .collect();
    (s, lrs)
}

#[test]
fn plateau_reduces_after_patience_and_honours_cooldown() {
    let options = PlateauOptions { factor: 0.5, patience: 2, cooldown: 1, threshold: 0.0, ..Default::default() };
    let mut opt = Stub::new(&[1.0]);
    // best=1; bad 1, 2, 3 > patience: reduce, cooldown 1; the next bad step
    // is forgiven in cooldown; bad 1, 2, 3: reduce; an improvement.
    let metrics = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5];
    let (s, lrs) = plateau(&mut opt, options, &metrics);
    close("lrs", &lrs, &[1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]);
    assert_eq!((s.best(), s.num_bad_epochs(), s.cooldown_counter(), s.last_epoch()), (0.5, 0, 0, 9));
}

#[test]
fn plateau_clamps_at_min_lr_and_skips_reductions_below_eps() {
    let options = PlateauOptions { factor: 0.5, patience: 0, min_lr: vec![0.3, 0.01], eps: 0.1, ..Default::default() };
    let mut opt = Stub::new(&[1.0, 0.15]);
    let mut s = ReduceLROnPlateau::new(&mut opt, options);
    s.step_with(1.0, &mut opt);
    s.step_with(2.0, &mut opt);
    // Group 1: 0.15 -> 0.075 is a change of 0.075 < eps: skipped.
    close("first reduction", &s.last_lr(), &[0.5, 0.15]);
    s.step_with(2.0, &mut opt);
    close("clamped", &s.last_lr(), &[0.3, 0.15]);
    s.step_with(2.0, &mut opt);
    close("at min_lr", &s.last_lr(), &[0.3, 0.15]);
}

#[test]
fn plateau_max_mode_with_thresholds() {
    // rel: better means above best * 1.1.
    let rel = PlateauOptions { mode: PlateauMode::Max, factor: 0.5, patience: 0, threshold: 0.1, ..Default::default() };
    let mut opt = Stub::new(&[1.0]);
    let (_, lrs) = plateau(&mut opt, rel, &[1.0, 1.05, 1.2, 1.3]);
    close("max rel", &lrs, &[1.0, 0.5, 0.5, 0.25]);
    // abs: better means above best + 0.1.
    let abs = PlateauOptions {
        mode: PlateauMode::Max,
        factor: 0.5,
        patience: 0,
        threshold: 0.1,
        threshold_mode: ThresholdMode::Abs,
        ..Default::default()
    };
    let mut opt = Stub::new(&[1.0]);
    let (_, lrs) = plateau(&mut opt, abs, &[10.0, 10.05, 10.2, 10.25]);
    close("max abs", &lrs, &[1.0, 0.5, 0.5, 0.25]);
    // A NaN metric is never an improvement.
    let mut opt = Stub::new(&[1.0]);
    let (s, lrs) = plateau(&mut opt, PlateauOptions { patience: 0, ..Default::default() }, &[1.0, f32::NAN]);
    close("nan", &lrs, &[1.0, 0.1]);
    assert_eq!(s.best(), 1.0);
}

#[test]
fn plateau_plain_step_is_a_no_op() {
    let mut opt = Stub::new(&[1.0]);
    let mut s = ReduceLROnPlateau::new(&mut opt, PlateauOptions { patience: 0, ..Default::default() });
    assert!(s.uses_metric());
    for _ in 0..5 {
        s.step(&mut opt);
    }
    assert_eq!((s.last_lr(), opt.lrs(), s.last_epoch()), (vec![1.0], vec![1.0], 0));
}

/// Every schedule, boxed, on a two-group optimizer.
type Factory = fn(&mut Stub) -> Box<dyn LrScheduler>;

fn factories() -> Vec<(&'static str, Factory)> {
    vec![
        ("StepLR", |o| Box::new(StepLR::new(o, 4, 0.5))),
        ("MultiStepLR", |o| Box::new(MultiStepLR::new(o, &[0, 3, 7, 7], 0.5))),
        ("ExponentialLR", |o| Box::new(ExponentialLR::new(o, 0.9))),
        ("CosineAnnealingLR", |o| Box::new(CosineAnnealingLR::new(o, 9, 0.01))),
        ("InverseTimeDecay", |o| Box::new(InverseTimeDecay::new(o, 0.7, 3, false))),
        ("InverseTimeDecay staircase", |o| Box::new(InverseTimeDecay::new(o, 0.7, 3, true))),
        ("OneCycleLR", |o| {
            let opts = OneCycleOptions { pct_start: 0.25, ..Default::default() };
            Box::new(OneCycleLR::new(o, &[0.4, 0.2], 30, opts))
        }),
        ("ReduceLROnPlateau", |o| {
            let opts = PlateauOptions { factor: 0.5, patience: 1, cooldown: 2, ..Default::default() };
            Box::new(ReduceLROnPlateau::new(o, opts))
        }),
    ]
}

/// A loss that improves every 5th step and creeps up in between.
fn metric(t: usize) -> f32 {
    1.0 - 0.1 * (t / 5) as f32 + 0.001 * (t % 5) as f32
}

/// Both groups' lrs at construction and after each step fed `metric(i)`.
fn run(s: &mut dyn LrScheduler, opt: &mut Stub, metrics: impl Iterator<Item = f32>) -> Vec<Vec<f32>> {
    let mut v = vec![s.last_lr()];
    for m in metrics {
        opt.step();
        s.step_with(m, opt);
        v.push(s.last_lr());
    }
    v
}

#[test]
fn warmup_composes_with_every_schedule() {
    const W: usize = 5;
    for (name, make) in factories() {
        let mut opt = Stub::new(&[0.1, 0.02]);
        let mut bare = make(&mut opt);
        // PyTorch's initial_lr: the group lrs, or max_lr / div_factor for OneCycleLR.
        let start = bare.base_lrs();
        let want = run(&mut bare, &mut opt, (0..25).map(metric));

        let mut opt = Stub::new(&[0.1, 0.02]);
        let inner = make(&mut opt);
        let mut s = LinearWarmup::new(&mut opt, inner, W, 0.2);
        assert_eq!(s.uses_metric(), name == "ReduceLROnPlateau");
        // Warm-up metrics (and the one measured at the last warm-up lr) never reach the inner schedule.
        let metrics = (0..W).map(|t| 1e3 + t as f32).chain((0..25).map(metric));
        let got = run(&mut s, &mut opt, metrics);
        for (t, lrs) in got.iter().enumerate().take(W) {
            let f = 0.2 + 0.8 * t as f64 / W as f64;
            let want: Vec<f64> = start.iter().map(|&b| b * f).collect();
            close(&format!("{name}: warm-up step {t}"), lrs, &want);
        }
        assert_eq!(&got[W..], &want[..], "{name}: after warm-up, the bare schedule from its step 0");
        assert_eq!(opt.lrs(), *want.last().unwrap());

        // No warm-up at all is the schedule alone.
        let mut opt = Stub::new(&[0.1, 0.02]);
        let inner = make(&mut opt);
        let mut s = LinearWarmup::new(&mut opt, inner, 0, 0.2);
        assert_eq!(run(&mut s, &mut opt, (0..25).map(metric)), want, "{name}: zero warm-up steps");
    }
}

#[test]
fn warmup_from_zero_starts_at_zero() {
    let mut opt = Stub::new(&[1.0]);
    let inner = ExponentialLR::new(&mut opt, 0.5);
    let mut s = LinearWarmup::new(&mut opt, inner, 4, 0.0);
    close("warm-up from 0", &trace(&mut opt, &mut s, 6), &[0.0, 0.25, 0.5, 0.75, 1.0, 0.5, 0.25]);
    assert_eq!(s.inner().last_epoch(), 2);
}

/// Runs `k` steps, saves, rebuilds on a fresh optimizer and loads both
/// states, then checks 40 more steps match the uninterrupted run bit for bit.
fn assert_resumes(
    name: &str,
    make: &dyn Fn(&mut Stub) -> Box<dyn LrScheduler>,
    remake: &dyn Fn(&mut Stub) -> Box<dyn LrScheduler>,
    k: usize,
) {
    let mut opt = Stub::new(&[0.1, 0.02]);
    let mut s = make(&mut opt);
    run(&mut s, &mut opt, (0..k).map(metric));
    let (saved, saved_opt) = (s.state_dict(), opt.state_dict());

    let mut opt2 = Stub::new(&[0.7, 0.3]);
    let mut s2 = remake(&mut opt2);
    // As in PyTorch: build the scheduler, then restore the optimizer and it.
    opt2.load_state_dict(&saved_opt).unwrap();
    s2.load_state_dict(&saved).unwrap();
    assert_eq!(s2.last_lr(), s.last_lr(), "{name}: last_lr after loading");
    assert_eq!(s2.state_dict().meta, saved.meta, "{name}: state after loading");

    let want = run(&mut s, &mut opt, (k..k + 40).map(metric));
    let got = run(&mut s2, &mut opt2, (k..k + 40).map(metric));
    assert_eq!(got, want, "{name}: resumed after {k} steps");
}

#[test]
fn state_dict_round_trip_mid_schedule_resumes_identically() {
    for (name, make) in factories() {
        for k in [0, 3, 13] {
            assert_resumes(name, &make, &make, k);
            let warm = move |o: &mut Stub| -> Box<dyn LrScheduler> {
                let inner = make(o);
                Box::new(LinearWarmup::new(o, inner, 6, 0.1))
            };
            assert_resumes(&format!("warm-up + {name}"), &warm, &warm, k);
        }
    }
    // Hyper-parameters come from the state, as PyTorch's load_state_dict does.
    let make: Factory = |o| Box::new(StepLR::new(o, 4, 0.5));
    let other: Factory = |o| Box::new(StepLR::new(o, 2, 0.9));
    assert_resumes("StepLR into another StepLR", &make, &other, 5);
}

#[test]
fn load_state_dict_rejects_foreign_and_broken_states() {
    let mut opt = Stub::new(&[0.1, 0.02]);
    let step = StepLR::new(&mut opt, 3, 0.5);
    let mut cos = CosineAnnealingLR::new(&mut opt, 10, 0.0);
    let before = cos.state_dict().meta;

    let err = cos.load_state_dict(&step.state_dict()).unwrap_err().to_string();
    assert!(err.contains("StepLR") && err.contains("CosineAnnealingLR"), "{err}");

    let mut missing = cos.state_dict();
    missing.meta.remove("eta_min");
    let err = cos.load_state_dict(&missing).unwrap_err().to_string();
    assert!(err.contains("eta_min"), "{err}");

    let mut broken = cos.state_dict();
    broken.meta.insert("last_epoch".into(), "seven".into());
    let err = cos.load_state_dict(&broken).unwrap_err().to_string();
    assert!(err.contains("last_epoch") && err.contains("seven"), "{err}");

    let mut one = Stub::new(&[0.1]);
    let err = CosineAnnealingLR::new(&mut one, 10, 0.0).load_state_dict(&cos.state_dict()).unwrap_err().to_string();
    assert!(err.contains("1 parameter groups"), "{err}");

    let mut warm = LinearWarmup::new(&mut opt, ExponentialLR::new(&mut Stub::new(&[0.1, 0.02]), 0.9), 3, 0.5);
    let mut bad = warm.state_dict();
    bad.meta.insert("inner.kind".into(), "StepLR".into());
    assert!(warm.load_state_dict(&bad).is_err());

    assert_eq!(cos.state_dict().meta, before, "a failed load leaves the scheduler unchanged");
}

#[test]
fn recursive_schedules_carry_on_from_an_lr_set_outside() {
    let mut opt = Stub::new(&[1.0]);
    let mut s = StepLR::new(&mut opt, 2, 0.5);
    s.step(&mut opt);
    opt.groups_mut()[0].lr = 0.3;
    s.step(&mut opt);
    close("StepLR", &s.last_lr(), &[0.15]);

    let mut opt = Stub::new(&[1.0]);
    let mut s = ReduceLROnPlateau::new(&mut opt, PlateauOptions { factor: 0.5, patience: 0, ..Default::default() });
    s.step_with(1.0, &mut opt);
    opt.groups_mut()[0].lr = 0.3;
    s.step_with(2.0, &mut opt);
    close("ReduceLROnPlateau", &s.last_lr(), &[0.15]);

    // Closed-form schedules (as PyTorch's LambdaLR) overwrite it.
    let mut opt = Stub::new(&[1.0]);
    let mut s = InverseTimeDecay::new(&mut opt, 1.0, 1, false);
    opt.groups_mut()[0].lr = 0.3;
    s.step(&mut opt);
    close("InverseTimeDecay", &s.last_lr(), &[0.5]);
}

#[test]
#[should_panic(expected = "the optimizer has 2 parameter groups but the scheduler was built for 1")]
fn a_group_added_after_construction_is_a_clear_panic() {
    let mut opt = Stub::new(&[1.0]);
    let mut s = ExponentialLR::new(&mut opt, 0.5);
    opt.groups.push(ParamGroup::new(vec![], 1.0, 0.0));
    s.step(&mut opt);
}

/// A state dict as the hand-written `state_dict`s wrote it (keys, float
/// format, choice names), before the field reflection derived them.
fn old_state(entries: &[(&str, &str)]) -> StateDict {
    let mut sd = StateDict::new();
    for (k, v) in entries {
        sd.meta.insert(k.to_string(), v.to_string());
    }
    sd
}

#[test]
fn states_in_the_earlier_hand_written_format_load_and_save_unchanged() {
    let cases: Vec<(Factory, StateDict)> = vec![
        (
            |o| Box::new(ReduceLROnPlateau::new(o, PlateauOptions::default())),
            old_state(&[
                ("kind", "ReduceLROnPlateau"),
                ("mode", "max"),
                ("factor", "0.5"),
                ("patience", "3"),
                ("threshold", "0.01"),
                ("threshold_mode", "abs"),
                ("cooldown", "2"),
                ("min_lrs", "0.001,0.0"),
                ("eps", "1e-8"),
                ("last_epoch", "7"),
                ("best", "0.25"),
                ("num_bad_epochs", "1"),
                ("cooldown_counter", "0"),
                ("base_lrs", "0.1,0.02"),
                ("last_lr", "0.05,0.01"),
            ]),
        ),
        (
            |o| Box::new(OneCycleLR::new(o, &[1.0], 10, OneCycleOptions::default())),
            old_state(&[
                ("kind", "OneCycleLR"),
                ("max_lrs", "0.4,0.2"),
                ("total_steps", "30"),
                ("pct_start", "0.25"),
                ("anneal", "linear"),
                ("div_factor", "25.0"),
                ("final_div_factor", "10000.0"),
                ("three_phase", "true"),
                ("last_epoch", "4"),
                ("last_lr", "0.2,0.1"),
            ]),
        ),
        (
            |o| Box::new(MultiStepLR::new(o, &[2], 0.1)),
            old_state(&[
                ("kind", "MultiStepLR"),
                ("milestones", "0,3,7,7"),
                ("gamma", "0.5"),
                ("last_epoch", "3"),
                ("base_lrs", "0.1,0.02"),
                ("last_lr", "0.025,0.005"),
            ]),
        ),
        (
            |o| {
                let inner = InverseTimeDecay::new(o, 0.5, 2, false);
                Box::new(LinearWarmup::new(o, inner, 3, 0.5))
            },
            old_state(&[
                ("kind", "LinearWarmup"),
                ("warmup_steps", "6"),
                ("start_factor", "0.1"),
                ("last_epoch", "2"),
                ("base_lrs", "0.1,0.02"),
                ("last_lr", "0.04,0.008"),
                ("inner.kind", "InverseTimeDecay"),
                ("inner.decay_rate", "0.7"),
                ("inner.decay_steps", "3"),
                ("inner.staircase", "true"),
                ("inner.last_epoch", "0"),
                ("inner.base_lrs", "0.1,0.02"),
                ("inner.last_lr", "0.1,0.02"),
            ]),
        ),
    ];
    for (make, old) in cases {
        let mut opt = Stub::new(&[0.1, 0.02]);
        let mut s = make(&mut opt);
        s.load_state_dict(&old).unwrap();
        assert_eq!(s.state_dict().meta, old.meta);
    }
    // Every field is in the state: a key missing from an old-format state is an error.
    let mut opt = Stub::new(&[0.1, 0.02]);
    let mut s = StepLR::new(&mut opt, 4, 0.5);
    let mut sd = s.state_dict();
    let keys: Vec<&str> = sd.meta.keys().map(String::as_str).collect();
    assert_eq!(keys, ["base_lrs", "gamma", "kind", "last_epoch", "last_lr", "step_size"]);
    sd.meta.remove("gamma");
    assert!(s.load_state_dict(&sd).unwrap_err().to_string().contains("\"gamma\""));
}

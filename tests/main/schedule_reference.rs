//! wgrad's learning-rate schedules against PyTorch's `get_last_lr()`: the
//! first 200 values of each schedule, alone and behind a linear warm-up, on
//! two parameter groups (fixture made by `tests/fixtures/gen_schedule.py`).

use serde_json::Value;
use wgrad::nn::optim::{Optimizer, ParamGroup};
use wgrad::nn::schedule::{
    Anneal, CosineAnnealingLR, ExponentialLR, InverseTimeDecay, LinearWarmup, LrScheduler, MultiStepLR, OneCycleLR,
    OneCycleOptions, PlateauMode, PlateauOptions, ReduceLROnPlateau, StepLR, ThresholdMode,
};
use wgrad::nn::state::StateDict;

/// A parameter-less optimizer: the schedules only touch the group lrs.
struct Stub(Vec<ParamGroup>);

impl Optimizer for Stub {
    fn step(&mut self) {}
    fn groups(&self) -> &[ParamGroup] {
        &self.0
    }
    fn groups_mut(&mut self) -> &mut [ParamGroup] {
        &mut self.0
    }
    fn state_dict(&self) -> StateDict {
        StateDict::new()
    }
    fn load_state_dict(&mut self, _: &StateDict) -> wgrad::Result<()> {
        Ok(())
    }
}

fn f(p: &Value, key: &str) -> f64 {
    p[key].as_f64().unwrap_or_else(|| panic!("fixture parameter {key}"))
}

fn u(p: &Value, key: &str) -> usize {
    p[key].as_u64().unwrap_or_else(|| panic!("fixture parameter {key}")) as usize
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("a list").iter().map(|x| x.as_f64().unwrap()).collect()
}

/// The schedule a fixture case describes, with the constructor PyTorch got.
fn build(p: &Value, opt: &mut Stub) -> Box<dyn LrScheduler> {
    match p["kind"].as_str().unwrap() {
        "step" => Box::new(StepLR::new(opt, u(p, "step_size"), f(p, "gamma"))),
        "multistep" => {
            let m: Vec<usize> =
                p["milestones"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
            Box::new(MultiStepLR::new(opt, &m, f(p, "gamma")))
        }
        "exponential" => Box::new(ExponentialLR::new(opt, f(p, "gamma"))),
        "cosine" => Box::new(CosineAnnealingLR::new(opt, u(p, "t_max"), f(p, "eta_min"))),
        "one_cycle" => {
            let options = OneCycleOptions {
                pct_start: f(p, "pct_start"),
                anneal: if p["anneal"] == "cos" { Anneal::Cos } else { Anneal::Linear },
                div_factor: f(p, "div_factor"),
                final_div_factor: f(p, "final_div_factor"),
                three_phase: p["three_phase"].as_bool().unwrap(),
            };
            Box::new(OneCycleLR::new(opt, &floats(&p["max_lr"]), u(p, "total_steps"), options))
        }
        "inverse_time" => Box::new(InverseTimeDecay::new(
            opt,
            f(p, "decay_rate"),
            u(p, "decay_steps"),
            p["staircase"].as_bool().unwrap(),
        )),
        "plateau" => Box::new(ReduceLROnPlateau::new(
            opt,
            PlateauOptions {
                mode: if p["mode"] == "min" { PlateauMode::Min } else { PlateauMode::Max },
                factor: f(p, "factor"),
                patience: u(p, "patience"),
                threshold: f(p, "threshold"),
                threshold_mode: if p["threshold_mode"] == "rel" { ThresholdMode::Rel } else { ThresholdMode::Abs },
                cooldown: u(p, "cooldown"),
                min_lr: floats(&p["min_lr"]),
                eps: f(p, "eps"),
            },
        )),
        other => panic!("unknown schedule kind {other}"),
    }
}

/// |got - want| <= 1e-6 * |want| + 1e-10 (the floor for cosine's zeros).
fn assert_lrs(what: &str, got: &[f32], want: &[f64]) {
    let want: Vec<f32> = want.iter().map(|&w| w as f32).collect();
    wgrad::gpu_core::testing::assert_close(what, got, &want, 1e-6, 1e-10);
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schedule.json"))
        .expect("fixture file");
    serde_json::from_str(&text).expect("fixture is JSON")
}

#[test]
fn schedules_match_pytorch_for_200_steps() {
    let fx = fixture();
    let base: Vec<f32> = floats(&fx["base_lrs"]).iter().map(|&l| l as f32).collect();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 17, "fixture holds {} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut opt = Stub(base.iter().map(|&lr| ParamGroup::new(vec![], lr, 0.0)).collect());
        let inner = build(&case["params"], &mut opt);
        let mut s: Box<dyn LrScheduler> = match &case["warmup"] {
            Value::Null => inner,
            w => Box::new(LinearWarmup::new(&mut opt, inner, u(w, "steps"), f(w, "start_factor"))),
        };
        let metrics =
            case["metrics"].as_array().map(|m| m.iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<_>>());
        assert_eq!(s.uses_metric(), metrics.is_some(), "{name}");
        assert_lrs(&format!("{name}: initial lrs"), &s.last_lr(), &floats(&case["initial"]));
        let steps = case["lrs"].as_array().unwrap();
        assert_eq!(steps.len(), 200, "{name}");
        for (t, want) in steps.iter().enumerate() {
            opt.step();
            match &metrics {
                Some(m) => s.step_with(m[t], &mut opt),
                None => s.step(&mut opt),
            }
            assert_lrs(&format!("{name}: step {}", t + 1), &s.last_lr(), &floats(want));
            let held: Vec<f32> = opt.groups().iter().map(|g| g.lr).collect();
            assert_eq!(held, s.last_lr(), "{name}: step {}: the groups hold last_lr", t + 1);
        }
    }
}

/// PyTorch reports cosine annealing from its recursive update; the closed
/// form `eta_min + (base - eta_min)(1 + cos(pi t / T_max)) / 2` must agree.
#[test]
fn cosine_closed_form_matches_pytorchs_recursive_values() {
    let fx = fixture();
    let base: Vec<f32> = floats(&fx["base_lrs"]).iter().map(|&l| l as f32).collect();
    let mut checked = 0;
    for case in fx["cases"].as_array().unwrap() {
        let p = &case["params"];
        if p["kind"] != "cosine" || !case["warmup"].is_null() {
            continue;
        }
        let mut opt = Stub(base.iter().map(|&lr| ParamGroup::new(vec![], lr, 0.0)).collect());
        let s = CosineAnnealingLR::new(&mut opt, u(p, "t_max"), f(p, "eta_min"));
        for (t, want) in case["lrs"].as_array().unwrap().iter().enumerate() {
            let closed: Vec<f32> = s.closed_form(t + 1).iter().map(|&l| l as f32).collect();
            assert_lrs(&format!("{}: closed form at step {}", case["name"], t + 1), &closed, &floats(want));
        }
        checked += 1;
    }
    assert_eq!(checked, 2, "the fixture's cosine cases");
}

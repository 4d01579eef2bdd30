//! The optimizers against PyTorch (fixture `tests/fixtures/optim.json`, made
//! by `tests/fixtures/gen_optim.py`): every optimizer and variant (weight
//! decay, momentum, dampening, Nesterov, AMSGrad, centred, learning-rate
//! decay, parameter groups with their own lr and weight decay) runs 20 steps
//! of a tiny linear regression from the same start; the parameters must
//! agree within 1e-5 relative, on CPU and GPU. Lion, absent from PyTorch, is
//! compared with the paper's algorithm written in PyTorch ops.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::nn::optim::*;
use wgrad::prelude::*;

fn f(options: &Value, key: &str, default: f32) -> f32 {
    options.get(key).map_or(default, |v| v.as_f64().unwrap() as f32)
}

fn b(options: &Value, key: &str) -> bool {
    options.get(key).is_some_and(|v| v.as_bool().unwrap())
}

fn betas(options: &Value, default: (f32, f32)) -> (f32, f32) {
    options.get("betas").map_or(default, |v| {
        let v = floats(v);
        (v[0], v[1])
    })
}

/// The case's optimizer over `params`, configured as in the fixture.
fn build(case: &Value, params: &[Tensor]) -> Box<dyn Optimizer> {
    let o = &case["options"];
    let groups: Vec<ParamGroup> = case["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let ps = g["params"].as_array().unwrap().iter().map(|i| params[i.as_u64().unwrap() as usize].clone());
            ParamGroup::new(ps.collect(), g["lr"].as_f64().unwrap() as f32, g["weight_decay"].as_f64().unwrap() as f32)
        })
        .collect();
    match case["optimizer"].as_str().unwrap() {
        "sgd" => Box::new(Sgd::with_groups(
            groups,
            SgdOptions {
                momentum: f(o, "momentum", 0.0),
                dampening: f(o, "dampening", 0.0),
                nesterov: b(o, "nesterov"),
                ..Default::default()
            },
        )),
        "adagrad" => Box::new(AdaGrad::with_groups(
            groups,
            AdaGradOptions {
                lr_decay: f(o, "lr_decay", 0.0),
                initial_accumulator_value: f(o, "initial_accumulator_value", 0.0),
                ..Default::default()
            },
        )),
        "rmsprop" => Box::new(RmsProp::with_groups(
            groups,
            RmsPropOptions {
                alpha: f(o, "alpha", 0.99),
                momentum: f(o, "momentum", 0.0),
                centered: b(o, "centered"),
                ..Default::default()
            },
        )),
        "adam" => Box::new(Adam::with_groups(
            groups,
            AdamOptions { betas: betas(o, (0.9, 0.999)), amsgrad: b(o, "amsgrad"), ..Default::default() },
        )),
        "adamw" => Box::new(AdamW::with_groups(
            groups,
            AdamWOptions { betas: betas(o, (0.9, 0.999)), amsgrad: b(o, "amsgrad"), ..Default::default() },
        )),
        "lion" => {
            Box::new(Lion::with_groups(groups, LionOptions { betas: betas(o, (0.9, 0.99)), ..Default::default() }))
        }
        other => panic!("unknown optimizer {other}"),
    }
}

#[test]
fn twenty_steps_of_every_optimizer_match_pytorch() {
    let fx = fixture("optim.json");
    let steps = fx["steps"].as_u64().unwrap() as usize;
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for dev in devices("twenty_steps_of_every_optimizer_match_pytorch") {
        let x = Tensor::from_vec(&floats(&fx["x"]), &[8, 3], &dev);
        let y = Tensor::from_vec(&floats(&fx["y"]), &[8, 2], &dev);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let params = vec![
                Tensor::from_vec(&floats(&fx["w0"]), &[3, 2], &dev).requires_grad_(),
                Tensor::from_vec(&floats(&fx["b0"]), &[2], &dev).requires_grad_(),
            ];
            let mut opt = build(case, &params);
            for _ in 0..steps {
                opt.zero_grad();
                (x.matmul(&params[0]) + &params[1] - &y).square().mean_all().backward();
                opt.step();
            }
            let what = |p: &str| format!("{name}: {p} after {steps} steps on {}", dev.name());
            let close = wgrad::gpu_core::testing::assert_close;
            close(&what("W"), &params[0].to_vec(), &floats(&case["w"]), 1e-5, 1e-6);
            close(&what("b"), &params[1].to_vec(), &floats(&case["b"]), 1e-5, 1e-6);
        }
    }
}

//! Dynamic loss scaling against PyTorch (fixture
//! `tests/fixtures/grad_scaler.json`, made by
//! `tests/fixtures/gen_grad_scaler.py` with `torch.amp.GradScaler("cpu")`):
//! 13 scripted steps of SGD (momentum, weight decay) under a scaler with a
//! non-power-of-two initial scale, growth interval 3 and non-default
//! factors, where some steps' gradients hold +inf, -inf, NaN or a finite
//! value that overflows only once scaled. Every step's scale before and
//! after `update`, skip decision, growth tracker, unscaled gradients and
//! parameters must match, on the CPU backend and on the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::gpu_core::testing::assert_close;
use wgrad::nn::amp::{GradScaler, GradScalerOptions};
use wgrad::nn::optim::{Optimizer, Sgd, SgdOptions};
use wgrad::prelude::*;

/// A JSON number, or one of the strings "inf", "-inf", "nan".
fn value(v: &Value) -> f32 {
    match v {
        Value::String(s) => match s.as_str() {
            "inf" => f32::INFINITY,
            "-inf" => f32::NEG_INFINITY,
            "nan" => f32::NAN,
            other => panic!("unexpected special {other:?}"),
        },
        v => v.as_f64().unwrap_or_else(|| panic!("expected a number, got {v}")) as f32,
    }
}

fn values(v: &Value) -> Vec<f32> {
    v.as_array().unwrap_or_else(|| panic!("expected an array, got {v}")).iter().map(value).collect()
}

#[test]
fn thirteen_scaled_steps_match_pytorch() {
    let fx = fixture("grad_scaler.json");
    let o = &fx["options"];
    let num = |k: &str| o[k].as_f64().unwrap();
    let shapes: Vec<Vec<usize>> = fx["shapes"].as_array().unwrap().iter().map(shape).collect();
    let steps = fx["steps"].as_array().unwrap();
    assert!(steps.len() >= 12 && steps.iter().filter(|s| !s["stepped"].as_bool().unwrap()).count() >= 3);
    for dev in devices("thirteen_scaled_steps_match_pytorch") {
        let params: Vec<Tensor> = fx["params0"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&shapes)
            .map(|(v, s)| Tensor::from_vec(&values(v), s, &dev).requires_grad_())
            .collect();
        let mut opt = Sgd::with_options(
            params.clone(),
            num("lr") as f32,
            SgdOptions {
                momentum: num("momentum") as f32,
                weight_decay: num("weight_decay") as f32,
                ..Default::default()
            },
        );
        let mut scaler = GradScaler::with_options(
            GradScalerOptions::default()
                .init_scale(num("init_scale") as f32)
                .growth_factor(num("growth_factor"))
                .backoff_factor(num("backoff_factor"))
                .growth_interval(o["growth_interval"].as_u64().unwrap() as u32),
        );
        for (t, step) in steps.iter().enumerate() {
            let what = |x: &str| format!("step {t} on {}: {x}", dev.name());
            opt.zero_grad();
            let c = step["c"].as_array().unwrap();
            let loss = params
                .iter()
                .zip(c)
                .zip(&shapes)
                .map(|((p, c), s)| (p * &Tensor::from_vec(&values(c), s, &dev)).sum_all())
                .reduce(|a, b| &a + &b)
                .unwrap();
            assert_eq!(scaler.get_scale(), value(&step["scale_before"]), "{}", what("scale before"));
            scaler.scale(&loss).backward();
            if step["explicit_unscale"].as_bool().unwrap() {
                scaler.unscale_(&mut opt);
            }
            let stepped = scaler.step(&mut opt);
            assert_eq!(stepped, step["stepped"].as_bool().unwrap(), "{}", what("stepped"));
            for (i, p) in params.iter().enumerate() {
                let g = p.grad().unwrap().to_vec();
                assert_close(&what(&format!("grad {i}")), &g, &values(&step["grads"][i]), 1e-6, 0.0);
            }
            scaler.update();
            assert_eq!(scaler.get_scale(), value(&step["scale_after"]), "{}", what("scale after"));
            assert_eq!(
                scaler.growth_tracker() as u64,
                step["growth_tracker"].as_u64().unwrap(),
                "{}",
                what("growth tracker")
            );
            for (i, p) in params.iter().enumerate() {
                assert_close(&what(&format!("param {i}")), &p.to_vec(), &values(&step["params"][i]), 1e-6, 1e-7);
            }
        }
        // The saved state under PyTorch's keys and values.
        let sd = scaler.state_dict();
        let want = fx["state_dict"].as_object().unwrap();
        assert_eq!(sd.meta.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (k, v) in want {
            let got: f64 = sd.meta[k].parse().unwrap();
            assert_eq!(got, v.as_f64().unwrap(), "state_dict[{k:?}]");
        }
    }
}

//! Pooling and normalisation against PyTorch (fixture made by
//! `tests/fixtures/gen_pool_norm.py`): outputs, input gradients and batch
//! norm's updated running statistics, on the CPU backend and the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::prelude::*;

fn sizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("a list of sizes").iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn pair(v: &Value) -> (usize, usize) {
    let s = sizes(v);
    (s[0], s[1])
}

/// |got − want| <= 1e-4·|want| + 1e-5 (the atol lets values near zero compare).
#[track_caller]
fn assert_rel(what: &str, got: &[f32], want: &[f32]) {
    wgrad::gpu_core::testing::assert_close(what, got, want, 1e-4, 1e-5);
}

/// Runs one fixture case on `dev` and compares everything it records.
fn check_case(c: &Value, dev: &Device) {
    let name = format!("{} on {}", c["name"].as_str().unwrap(), dev.name());
    let p = &c["params"];
    let grads = c["grads"].as_object().unwrap();
    let input = |k: &str| -> Option<Tensor> {
        let e = c["inputs"].get(k)?;
        let t = Tensor::from_vec(&floats(&e["data"]), &sizes(&e["shape"]), dev);
        Some(if grads.contains_key(k) { t.requires_grad_() } else { t })
    };
    let x = input("x").unwrap();
    let (weight, bias) = (input("weight"), input("bias"));
    let (running_mean, running_var) = (input("running_mean"), input("running_var"));
    let eps = || p["eps"].as_f64().unwrap() as f32;
    // PyTorch's window (`ceil_mode` false where a case leaves it out).
    let window = || {
        let w = PoolWindow::new(pair(&p["kernel"])).stride(pair(&p["stride"])).padding(pair(&p["padding"]));
        w.ceil_mode(p.get("ceil_mode").is_some_and(|c| c.as_bool().unwrap()))
    };
    let y = match c["op"].as_str().unwrap() {
        "max_pool2d" => x.max_pool2d_window(window().dilation(pair(&p["dilation"]))),
        "avg_pool2d" => x.avg_pool2d_window(window(), p["count_include_pad"].as_bool().unwrap()),
        "adaptive_avg_pool2d" => x.adaptive_avg_pool2d(pair(&p["output_size"])),
        "batch_norm" => x.batch_norm(
            running_mean.as_ref(),
            running_var.as_ref(),
            weight.as_ref(),
            bias.as_ref(),
            p["training"].as_bool().unwrap(),
            p["momentum"].as_f64().unwrap() as f32,
            eps(),
        ),
        "layer_norm" => x.layer_norm(&sizes(&p["normalized_shape"]), weight.as_ref(), bias.as_ref(), eps()),
        "group_norm" => x.group_norm(p["groups"].as_u64().unwrap() as usize, weight.as_ref(), bias.as_ref(), eps()),
        op => panic!("{name}: unknown op {op}"),
    };
    assert_eq!(y.shape(), sizes(&c["output"]["shape"]), "{name}: output shape");
    assert_rel(&format!("{name}: output"), &y.to_vec(), &floats(&c["output"]["data"]));

    for (key, t) in [("running_mean_after", &running_mean), ("running_var_after", &running_var)] {
        if let Some(want) = c.get(key) {
            let t = t.as_ref().unwrap_or_else(|| panic!("{name}: {key} without its tensor"));
            assert_rel(&format!("{name}: {key}"), &t.to_vec(), &floats(want));
        }
    }

    y.backward_with(&Tensor::from_vec(&floats(&c["grad_out"]), &y.shape(), dev));
    for (k, want) in grads {
        let t = match k.as_str() {
            "x" => &x,
            "weight" => weight.as_ref().unwrap(),
            "bias" => bias.as_ref().unwrap(),
            other => panic!("{name}: unexpected gradient {other}"),
        };
        let g = t.grad().unwrap_or_else(|| panic!("{name}: no gradient reached {k}"));
        assert_rel(&format!("{name}: grad {k}"), &g.to_vec(), &floats(want));
    }
}

#[test]
fn pooling_and_normalization_match_pytorch() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pool_norm.json"))
        .expect("fixture file");
    let f: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let cases = f["cases"].as_array().expect("fixture cases");
    // Every op family is present, so a regenerated fixture cannot silently drop one.
    for op in ["max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm", "layer_norm", "group_norm"] {
        assert!(cases.iter().any(|c| c["op"] == op), "fixture lacks {op}");
    }
    let mut devices = vec![Device::cpu()];
    devices.extend(wgrad::gpu_core::testing::gpu_or_skip("pooling_and_normalization_match_pytorch"));
    for dev in &devices {
        for c in cases {
            check_case(c, dev);
        }
    }
}

//! wgrad's convolutions against PyTorch (fixture `tests/fixtures/conv.json`,
//! made by `tests/fixtures/gen_conv.py`): conv2d, conv1d and
//! conv_transpose2d outputs and the gradients of input, weight and bias for
//! `loss = sum(out * r)`, within 1e-4 relative, on the CPU backend and the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::autograd::{Conv2dOptions, ConvTranspose2dOptions, Tensor};
use wgrad::prelude::*;

fn sizes(v: &Value) -> Vec<usize> {
    v.as_array().expect("array of sizes").iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

fn pair(v: &Value) -> (usize, usize) {
    let s = sizes(v);
    (s[0], s[1])
}

/// 1e-4 relative, plus a tiny absolute term for values that cancel to near zero.
#[track_caller]
fn close(what: &str, got: &[f32], want: &[f32]) {
    wgrad::gpu_core::testing::assert_close(what, got, want, 1e-4, 1e-5);
}

/// Runs one fixture case on `dev` and compares output and gradients.
fn check_case(case: &Value, dev: &Device) {
    let name = format!("{} on {}", case["name"].as_str().unwrap(), dev.name());
    let tensor = |key: &str| Tensor::from_vec(&floats(&case[key]), &sizes(&case["shapes"][key]), dev);
    let (x, w, b) = (tensor("x").requires_grad_(), tensor("w").requires_grad_(), tensor("b").requires_grad_());
    let groups = case["groups"].as_u64().unwrap() as usize;
    let out = match case["op"].as_str().unwrap() {
        "conv2d" => {
            let p = sizes(&case["padding"]);
            let opts = Conv2dOptions {
                stride: pair(&case["stride"]),
                padding: [p[0], p[1], p[2], p[3]],
                dilation: pair(&case["dilation"]),
                groups,
            };
            x.conv2d(&w, Some(&b), &opts)
        }
        "conv1d" => {
            let scalar = |k: &str| case[k].as_u64().unwrap() as usize;
            x.conv1d(&w, Some(&b), scalar("stride"), pair(&case["padding"]), scalar("dilation"), groups)
        }
        "conv_transpose2d" => {
            let opts = ConvTranspose2dOptions {
                stride: pair(&case["stride"]),
                padding: pair(&case["padding"]),
                output_padding: pair(&case["output_padding"]),
                dilation: pair(&case["dilation"]),
                groups,
            };
            x.conv_transpose2d(&w, Some(&b), &opts)
        }
        op => panic!("fixture has unknown op {op}"),
    };
    assert_eq!(out.shape(), sizes(&case["shapes"]["out"]), "{name}: output shape");
    close(&format!("{name}: out"), &out.to_vec(), &floats(&case["out"]));
    let r = Tensor::from_vec(&floats(&case["r"]), &out.shape(), dev);
    (&out * &r).sum_all().backward();
    for (key, t) in [("grad_x", &x), ("grad_w", &w), ("grad_b", &b)] {
        let grad = t.grad().unwrap_or_else(|| panic!("{name}: no {key}"));
        close(&format!("{name}: {key}"), &grad.to_vec(), &floats(&case[key]));
    }
}

#[test]
fn convolutions_match_pytorch() {
    let f = fixture("conv.json");
    let cases = f["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10, "fixture holds {} cases", cases.len());
    let mut devices = vec![Device::cpu()];
    devices.extend(wgrad::gpu_core::testing::gpu_or_skip("convolutions_match_pytorch"));
    for dev in &devices {
        for case in cases {
            check_case(case, dev);
        }
    }
}

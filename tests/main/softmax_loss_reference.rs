//! softmax, log_softmax, cross_entropy, nll_loss, embedding and dropout
//! against PyTorch (fixture made by `tests/fixtures/gen_softmax_loss.py`):
//! outputs and gradients within 1e-4 relative, on the CPU backend and the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::autograd::{CrossEntropyOptions, Generator, Reduction};
use wgrad::prelude::*;

fn uints(v: &Value, key: &str) -> Vec<u32> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture lacks {key}"))
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// |got − want| ≤ 1e-4·|want| + 1e-6 (the atol only matters next to zero).
fn assert_rel(what: &str, got: &[f32], want: &[f32]) {
    wgrad::gpu_core::testing::assert_close(what, got, want, 1e-4, 1e-6);
}

#[test]
fn softmax_and_log_softmax_match_pytorch() {
    let f = fixture("softmax_loss.json");
    for dev in devices("softmax_and_log_softmax_match_pytorch") {
        for case in f["softmax"].as_array().unwrap() {
            let (dim, log) = (case["dim"].as_i64().unwrap() as isize, case["log"].as_bool().unwrap());
            let what = format!(
                "{} {:?} dim {dim} on {}",
                if log { "log_softmax" } else { "softmax" },
                shape(&case["shape"]),
                dev.name()
            );
            let x = Tensor::from_vec(&floats(&case["x"]), &shape(&case["shape"]), &dev).requires_grad_();
            let y = if log { x.log_softmax(dim) } else { x.softmax(dim) };
            assert_rel(&what, &y.to_vec(), &floats(&case["y"]));
            let c = Tensor::from_vec(&floats(&case["c"]), &shape(&case["shape"]), &dev);
            (&y * &c).sum_all().backward();
            assert_rel(&format!("grad of {what}"), &x.grad().unwrap().to_vec(), &floats(&case["grad"]));
        }
    }
}

fn reduction(case: &Value) -> Reduction {
    match case["reduction"].as_str().unwrap() {
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        "none" => Reduction::None,
        r => panic!("unknown reduction {r}"),
    }
}

#[test]
fn cross_entropy_and_nll_loss_match_pytorch() {
    let f = fixture("softmax_loss.json");
    for dev in devices("cross_entropy_and_nll_loss_match_pytorch") {
        for case in f["losses"].as_array().unwrap() {
            let kind = case["kind"].as_str().unwrap();
            let probs = case["probs_target"].as_bool().unwrap();
            let ignore = case["ignore_index"].as_u64().map(|i| i as u32);
            let smoothing = case["label_smoothing"].as_f64().unwrap() as f32;
            let what = format!(
                "{kind} {:?} probs {probs} weight {} ignore {ignore:?} smoothing {smoothing} {} on {}",
                shape(&case["shape"]),
                !case["weight"].is_null(),
                case["reduction"],
                dev.name()
            );
            let x = Tensor::from_vec(&floats(&case["x"]), &shape(&case["shape"]), &dev).requires_grad_();
            let tshape = shape(&case["target_shape"]);
            let target = if probs {
                Tensor::from_vec(&floats(&case["target"]), &tshape, &dev)
            } else {
                Tensor::from_u32(&uints(case, "target"), &tshape, &dev)
            };
            let weight = (!case["weight"].is_null()).then(|| {
                let w = floats(&case["weight"]);
                Tensor::from_vec(&w, &[w.len()], &dev)
            });
            let loss = if kind == "cross_entropy" {
                let opts = CrossEntropyOptions {
                    weight,
                    ignore_index: ignore,
                    label_smoothing: smoothing,
                    reduction: reduction(case),
                };
                x.cross_entropy(&target, &opts)
            } else {
                x.nll_loss(&target, weight.as_ref(), ignore, reduction(case))
            };
            assert_rel(&what, &loss.to_vec(), &floats(&case["loss"]));
            let upstream = Tensor::from_vec(&floats(&case["upstream"]), &loss.shape(), &dev);
            loss.backward_with(&upstream);
            assert_rel(&format!("grad of {what}"), &x.grad().unwrap().to_vec(), &floats(&case["grad"]));
        }
    }
}

#[test]
fn embedding_matches_pytorch() {
    let f = fixture("softmax_loss.json");
    for dev in devices("embedding_matches_pytorch") {
        for case in f["embedding"].as_array().unwrap() {
            let pad = case["padding_idx"].as_u64().map(|p| p as u32);
            let what = format!("embedding padding {pad:?} on {}", dev.name());
            let w = Tensor::from_vec(&floats(&case["weight"]), &shape(&case["weight_shape"]), &dev).requires_grad_();
            let ids = Tensor::from_u32(&uints(case, "ids"), &shape(&case["ids_shape"]), &dev);
            let y = ids.embedding(&w, pad);
            assert_rel(&what, &y.to_vec(), &floats(&case["y"]));
            let c = Tensor::from_vec(&floats(&case["c"]), &y.shape(), &dev);
            (&y * &c).sum_all().backward();
            assert_rel(&format!("grad of {what}"), &w.grad().unwrap().to_vec(), &floats(&case["grad"]));
        }
    }
}

/// Masks come from different generators than PyTorch's, so the comparison is
/// statistical: the dropped fraction (as PyTorch's, within five standard
/// errors of p), the scale of kept values (PyTorch's 1/(1−p)), and kept values
/// otherwise unchanged.
#[test]
fn dropout_statistics_match_pytorch() {
    let f = fixture("softmax_loss.json");
    for dev in devices("dropout_statistics_match_pytorch") {
        for (k, case) in f["dropout"].as_array().unwrap().iter().enumerate() {
            let p = case["p"].as_f64().unwrap();
            let n = case["n"].as_u64().unwrap() as usize;
            let torch_scale = case["scale"].as_f64().unwrap() as f32;
            let x = Tensor::rand(&[n], 40 + k as u64, &dev).add_scalar(0.5);
            let y = x.dropout(p as f32, true, &mut Generator::new(3 + k as u64)).to_vec();
            let xv = x.to_vec();
            let mut dropped = 0;
            for (a, b) in y.iter().zip(&xv) {
                if *a == 0.0 {
                    dropped += 1;
                } else {
                    assert!(
                        (a / b - torch_scale).abs() <= 1e-5 * torch_scale,
                        "p {p}: kept {a} from {b}, PyTorch scales by {torch_scale}"
                    );
                }
            }
            let frac = dropped as f64 / n as f64;
            let tol = 5.0 * (p * (1.0 - p) / n as f64).sqrt();
            assert!((frac - p).abs() < tol, "p {p}: dropped {frac} on {}", dev.name());
            let torch_frac = case["dropped_fraction"].as_f64().unwrap();
            assert!((torch_frac - p).abs() < tol, "the fixture's PyTorch fraction {torch_frac} for p {p}");
        }
    }
}

//! `normalize` and `cosine_similarity` against PyTorch (fixture made by
//! `tests/fixtures/gen_similarity.py`): values and the input gradient, for
//! p = 1, 2, 3, broadcast operands and norms below eps, on the CPU backend
//! and the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::prelude::*;

fn check_case(c: &Value, dev: &Device) {
    let name = format!("{} on {}", c["name"].as_str().unwrap(), dev.name());
    let p = &c["params"];
    let x = Tensor::from_vec(&floats(&c["x"]["data"]), &shape(&c["x"]["shape"]), dev).requires_grad_();
    let (dim, eps) = (p["dim"].as_i64().unwrap() as isize, p["eps"].as_f64().unwrap() as f32);
    let y = match c["op"].as_str().unwrap() {
        "normalize" => x.normalize(p["p"].as_f64().unwrap() as f32, dim, eps),
        "cosine_similarity" => {
            let o = &p["other"];
            x.cosine_similarity(&Tensor::from_vec(&floats(&o["data"]), &shape(&o["shape"]), dev), dim, eps)
        }
        op => panic!("{name}: unknown op {op}"),
    };
    let want = &c["outputs"][0];
    assert_eq!(y.shape(), shape(&want["shape"]), "{name}: shape");
    let close = |what: &str, got: &[f32], want: &[f32]| {
        wgrad::gpu_core::testing::assert_close(&format!("{name}: {what}"), got, want, 1e-5, 1e-6)
    };
    close("output", &y.to_vec(), &floats(&want["data"]));
    y.backward_with(&Tensor::from_vec(&floats(&c["grad_outs"][0]), &y.shape(), dev));
    close("grad x", &x.grad().expect("a gradient").to_vec(), &floats(&c["grad_x"]));
}

#[test]
fn normalize_and_cosine_similarity_match_pytorch() {
    let f = fixture("similarity.json");
    let cases = f["cases"].as_array().expect("fixture cases");
    for op in ["normalize", "cosine_similarity"] {
        assert!(cases.iter().any(|c| c["op"] == op), "fixture lacks {op}");
    }
    for dev in &devices("normalize_and_cosine_similarity_match_pytorch") {
        for c in cases {
            check_case(c, dev);
        }
    }
}

/// A zero fiber normalises to zeros with PyTorch's gradient (1 / eps), not
/// NaN; its cosine similarity is 0 with a finite gradient.
#[test]
fn a_zero_fiber_has_a_finite_gradient() {
    for dev in &devices("normalize a_zero_fiber_has_a_finite_gradient") {
        let x = Tensor::from_vec(&[0.0, 0.0, 3.0, 4.0], &[2, 2], dev).requires_grad_();
        let y = x.normalize(2.0, 1, 1e-6);
        assert_eq!(y.to_vec(), [0.0, 0.0, 0.6, 0.8], "{}", dev.name());
        y.sum(&[], false).backward();
        let g = x.grad().unwrap().to_vec();
        wgrad::gpu_core::testing::assert_close(
            &format!("zero fiber on {}", dev.name()),
            &g[..2],
            &[1e6, 1e6],
            1e-5,
            0.0,
        );
        let x = Tensor::from_vec(&[0.0, 0.0, 3.0, 4.0], &[2, 2], dev).requires_grad_();
        let c = x.cosine_similarity(&Tensor::from_vec(&[1.0, 2.0, 2.0, 1.0], &[2, 2], dev), 1, 1e-8);
        assert_eq!(c.to_vec()[0], 0.0, "{}", dev.name());
        c.sum(&[], false).backward();
        let g = x.grad().unwrap().to_vec();
        assert!(g.iter().all(|v| v.is_finite()), "{}: {g:?}", dev.name());
    }
}

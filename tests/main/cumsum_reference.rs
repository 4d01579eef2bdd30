//! `Tensor::cumsum` against PyTorch (fixture made by
//! `tests/fixtures/gen_cumsum.py`): values and the input gradient, along
//! every kind of dim (first, middle, last, negative, size 1, 257 long, a
//! 0-d tensor, a transposed view), on the CPU backend and the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::prelude::*;

fn check_case(c: &Value, dev: &Device) {
    let name = format!("{} on {}", c["name"].as_str().unwrap(), dev.name());
    let x = Tensor::from_vec(&floats(&c["x"]["data"]), &shape(&c["x"]["shape"]), dev).requires_grad_();
    let arg = if c["transpose_first"].as_bool().unwrap() { x.transpose(0, -1) } else { x.clone() };
    let y = arg.cumsum(c["params"]["dim"].as_i64().unwrap() as isize);
    let want = &c["outputs"][0];
    assert_eq!(y.shape(), shape(&want["shape"]), "{name}: shape");
    // PyTorch's CPU loop accumulates f32 in f64; wgrad adds in f32, in order.
    let close = |what: &str, got: &[f32], want: &[f32]| {
        wgrad::gpu_core::testing::assert_close(&format!("{name}: {what}"), got, want, 1e-5, 1e-5)
    };
    close("output", &y.to_vec(), &floats(&want["data"]));
    y.backward_with(&Tensor::from_vec(&floats(&c["grad_outs"][0]), &y.shape(), dev));
    close("grad x", &x.grad().expect("a gradient").to_vec(), &floats(&c["grad_x"]));
}

#[test]
fn cumsum_matches_pytorch() {
    let f = fixture("cumsum.json");
    let cases = f["cases"].as_array().expect("fixture cases");
    assert!(cases.len() >= 8, "fixture lost cases");
    for dev in &devices("cumsum_matches_pytorch") {
        for c in cases {
            check_case(c, dev);
        }
    }
}

//! Interpolation against PyTorch (fixture made by
//! `tests/fixtures/gen_interpolate.py`): `F.interpolate`'s outputs and input
//! gradients, nearest and bilinear (either `align_corners`), to sizes and by
//! scale factors, on the CPU backend and the GPU.

use crate::common;
use common::*;
use serde_json::Value;
use wgrad::prelude::*;

fn pair<T>(v: &Value, f: impl Fn(&Value) -> T) -> (T, T) {
    let a = v.as_array().expect("a pair");
    (f(&a[0]), f(&a[1]))
}

fn check_case(c: &Value, dev: &Device) {
    let name = format!("{} on {}", c["name"].as_str().unwrap(), dev.name());
    let p = &c["params"];
    let mode = match p["mode"].as_str().unwrap() {
        "nearest" => Interpolation::Nearest,
        "bilinear" => Interpolation::Bilinear { align_corners: p["align_corners"].as_bool().unwrap() },
        other => panic!("{name}: unknown mode {other}"),
    };
    let e = &c["inputs"]["x"];
    let shape: Vec<usize> = e["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let x = Tensor::from_vec(&floats(&e["data"]), &shape, dev).requires_grad_();
    let y = match p.get("size") {
        Some(size) => x.interpolate(pair(size, |v| v.as_u64().unwrap() as usize), mode),
        None => x.interpolate_scale(pair(&p["scale_factor"], |v| v.as_f64().unwrap()), mode),
    };
    let out = &c["output"];
    let want_shape: Vec<usize> =
        out["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(y.shape(), want_shape, "{name}: output shape");
    let close = |what: &str, got: &[f32], want: &[f32]| {
        wgrad::gpu_core::testing::assert_close(&format!("{name}: {what}"), got, want, 1e-4, 1e-5)
    };
    close("output", &y.to_vec(), &floats(&out["data"]));
    y.backward_with(&Tensor::from_vec(&floats(&c["grad_out"]), &y.shape(), dev));
    close("input gradient", &x.grad().expect("a gradient").to_vec(), &floats(&c["grads"]["x"]));
}

#[test]
fn interpolation_matches_pytorch() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/interpolate.json"))
        .expect("fixture file");
    let f: Value = serde_json::from_str(&text).expect("fixture is JSON");
    let cases = f["cases"].as_array().expect("fixture cases");
    // Both modes, sizes and scale factors are present, so a regenerated
    // fixture cannot silently drop one.
    for mode in ["nearest", "bilinear"] {
        for key in ["size", "scale_factor"] {
            let has = cases.iter().any(|c| c["params"]["mode"] == mode && c["params"].get(key).is_some());
            assert!(has, "fixture lacks {mode} by {key}");
        }
    }
    let mut devices = vec![Device::cpu(), Device::cpu_reference()];
    devices.extend(wgrad::gpu_core::testing::gpu_or_skip("interpolation_matches_pytorch"));
    for dev in &devices {
        for c in cases {
            check_case(c, dev);
        }
    }
}

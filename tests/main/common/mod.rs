//! Shared by the root PyTorch-reference tests: fixture loading and the
//! backends every check runs on.
#![allow(dead_code)]

use serde_json::Value;

/// `tests/fixtures/<name>` parsed as JSON.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {path} is not JSON: {e}"))
}

/// A JSON array of numbers as f32 (JSON has no NaN or infinities: the
/// strings "nan", "inf" and "-inf" stand for them).
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array of numbers, got {v}"))
        .iter()
        .map(|x| match x.as_str() {
            Some("nan") => f32::NAN,
            Some("inf") => f32::INFINITY,
            Some("-inf") => f32::NEG_INFINITY,
            _ => x.as_f64().unwrap_or_else(|| panic!("expected a number, got {x}")) as f32,
        })
        .collect()
}

/// A JSON array of sizes.
pub fn shape(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a shape, got {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// The CPU backend, plus the test GPU when there is one (a loud skip otherwise).
#[allow(unused_imports)] // not every test file runs on both backends
pub use wgrad::gpu_core::testing::backends as devices;

//! `--profile` for the benches: one more step under the step profiler, its
//! table printed and its Chrome trace written to `target/<name>-profile.json`
//! (under `CARGO_TARGET_DIR` when that is set).
//! Included with `#[path]` so that benches without `common` can take it.
#![allow(dead_code)]

use wgrad::autograd::Device;

/// Whether the bench was started with `--profile`.
pub fn requested() -> bool {
    std::env::args().any(|a| a == "--profile")
}

/// Runs `step` once under the profiler on `dev`, prints the table and writes
/// the trace; returns the step's result.
pub fn profile_step<R>(dev: &Device, name: &str, step: impl FnOnce() -> R) -> R {
    let (r, report) = dev.profile(step).expect("profiled step");
    println!("{name}: {report}");
    // The target dir need not exist under the manifest (CARGO_TARGET_DIR).
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| format!("{}/target", env!("CARGO_MANIFEST_DIR")));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir} for the trace: {e}"));
    let path = format!("{dir}/{name}-profile.json");
    report.write_chrome_trace(&path).unwrap_or_else(|e| panic!("cannot write the trace {path}: {e}"));
    println!("trace: {path} (open in https://ui.perfetto.dev)\n");
    r
}

/// [`profile_step`] on a GPU when `--profile` was given; nothing otherwise.
pub fn maybe_profile<R>(dev: &Device, name: &str, step: impl FnOnce() -> R) {
    if requested() && dev.is_gpu() {
        profile_step(dev, name, step);
    }
}

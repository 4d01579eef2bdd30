//! Shared by the parity tests: run the same op on the GPU and on the CPU twin.
#![allow(dead_code)]

use wgrad_gpu_core::testing::{assert_close, gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device};

/// The two devices under comparison, the GPU and the reference CPU twins
/// (the oracle), or `None` when the GPU test is skipped.
pub fn devices(test: &str) -> Option<(Device, Device)> {
    Some((gpu_or_skip(test)?, Device::cpu_reference()))
}

/// Uploads the same f32 data to both devices.
pub fn both(g: &Device, c: &Device, data: &[f32]) -> (Buffer, Buffer) {
    (Buffer::from_f32(g, data).unwrap(), Buffer::from_f32(c, data).unwrap())
}

/// Reads both results and compares them.
#[track_caller]
pub fn same(what: &str, gpu: &Buffer, cpu: &Buffer, n: usize, rtol: f32, atol: f32) {
    let (g, c) = (gpu.to_f32().unwrap(), cpu.to_f32().unwrap());
    assert_close(what, &g[..n], &c[..n], rtol, atol);
}

pub fn rng(seed: u64) -> Rng {
    Rng::new(seed)
}

/// The awkward sizes every kernel is checked on.
pub const SIZES: &[usize] = &[0, 1, 7, 33, 1023];

/// Bit-exact comparison of f16 results, with any NaN matching any NaN.
#[track_caller]
#[allow(dead_code)] // not every test file compares halves
pub fn same_halves(what: &str, got: &[half::f16], want: &[half::f16]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() { g.is_nan() } else { g.to_bits() == w.to_bits() };
        assert!(ok, "{what}: element {i}: got {:#06x} ({g}), want {:#06x} ({w})", g.to_bits(), w.to_bits());
    }
}

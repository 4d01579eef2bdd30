//! Helpers for tests in this and the other wgrad crates: the shared test GPU
//! (with a loud skip, or a failure under `WGRAD_REQUIRE_GPU=1`), seeded
//! host data, and closeness checks.

use std::sync::OnceLock;

use crate::select::DeviceSpec;
use crate::Device;

/// The GPU all tests of one process share, or `None` (after printing a loud
/// SKIPPED line) when no adapter exists.
///
/// # Panics
/// When `WGRAD_REQUIRE_GPU=1` and no adapter can be opened: CI must not pass
/// by skipping its GPU tests.
pub fn gpu_or_skip(test: &str) -> Option<Device> {
    static GPU: OnceLock<Option<Device>> = OnceLock::new();
    let dev = GPU
        .get_or_init(|| match Device::from_spec(&DeviceSpec::Gpu) {
            Ok(d) => Some(d),
            Err(e) => {
                if require_gpu() {
                    panic!("WGRAD_REQUIRE_GPU=1 but no GPU adapter could be opened: {e}");
                }
                None
            }
        })
        .clone();
    if dev.is_none() {
        eprintln!("\n*** SKIPPED GPU test `{test}`: no GPU adapter (install mesa-vulkan-drivers for lavapipe) ***\n");
    }
    dev
}

/// A fresh GPU device of its own (for tests that read exact counters).
pub fn fresh_gpu_or_skip(test: &str) -> Option<Device> {
    gpu_or_skip(test)?;
    Some(Device::gpu().expect("a GPU opened once opens again"))
}

/// True when `WGRAD_REQUIRE_GPU` is set to a true value.
pub fn require_gpu() -> bool {
    matches!(std::env::var("WGRAD_REQUIRE_GPU").as_deref(), Ok("1") | Ok("true") | Ok("yes"))
}

/// A small seeded generator (SplitMix64) for host-side test data.
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    /// `n` uniform values in `[lo, hi)`.
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
    /// Uniform integer in `[0, n)`.
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

/// Asserts `|a - b| <= atol + rtol * |b|` elementwise (NaNs must match), naming
/// the first offending index.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs {}", got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= atol + rtol * w.abs()
        };
        assert!(ok, "{what}: element {i}: got {g}, want {w} (rtol {rtol}, atol {atol})");
    }
}

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

/// The devices a backend-generic test runs on: the CPU backend, then the
/// shared test GPU when there is one (see [`gpu_or_skip`]).
pub fn backends(test: &str) -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu_or_skip(test));
    v
}

/// [`backends`] with a GPU device of the test's own, for tests that read
/// exact counters or leave device-wide state behind (an index-error record)
/// that other tests' readbacks must not see.
pub fn fresh_backends(test: &str) -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(fresh_gpu_or_skip(test));
    v
}

/// The matrix-unit kernel where `dev` runs it (`MatmulKernel::Cooperative`,
/// f16 operands), for the matmul parity tests to add to the families they
/// check. Adapters without matrix units (lavapipe) return none, and the
/// shader is still validated and written as SPIR-V by gpu-core's unit
/// tests; with `WGRAD_REQUIRE_MATRIX_UNITS=1` (the GPU script) a device
/// without them fails the test instead, so the parity run cannot pass
/// without checking the kernel.
pub fn matrix_unit_kernels(dev: &Device) -> Vec<crate::ops::matmul::MatmulKernel> {
    use crate::ops::matmul::MatmulKernel;
    let runs = dev.is_gpu() && MatmulKernel::Cooperative.runs_on(dev);
    let required = crate::env::switch("WGRAD_REQUIRE_MATRIX_UNITS", false);
    assert!(
        runs || !required || !dev.is_gpu(),
        "WGRAD_REQUIRE_MATRIX_UNITS is set but {} has no usable matrix units",
        dev.name()
    );
    if runs {
        vec![MatmulKernel::Cooperative]
    } else {
        vec![]
    }
}

/// True when `WGRAD_REQUIRE_GPU` is set to a true value.
pub fn require_gpu() -> bool {
    crate::env::switch("WGRAD_REQUIRE_GPU", false)
}

/// The seeded host generator, under the name the tests use for their data.
pub use crate::HostRng as Rng;

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

/// A global allocator that counts the heap allocations of the threads that
/// ask it to ([`thread_allocations`]), for tests and benches that hold the
/// recording path to a number of allocations. Install it in the binary:
/// `#[global_allocator] static A: CountingAllocator = CountingAllocator;`.
pub struct CountingAllocator;

thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static COUNT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a thread-local
// `Cell` (no allocation, no lock), skipped while the thread is torn down.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if COUNTING.try_with(std::cell::Cell::get).unwrap_or(false) {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// The heap allocations this thread makes in `f` (0 unless the binary
/// installed [`CountingAllocator`]).
pub fn thread_allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(std::cell::Cell::get)
}

/// The process's resident memory in bytes, where the OS says (Linux:
/// `/proc/self/statm`, in 4 KiB pages). On a CPU adapter it includes the
/// driver's own memory, which the device's counters do not see.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    statm.split_whitespace().nth(1)?.parse::<u64>().ok().map(|pages| pages * 4096)
}

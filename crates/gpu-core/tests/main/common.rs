//! Shared by the parity tests: run the same op on the GPU and on the CPU twin.
#![allow(dead_code)]

use wgrad_gpu_core::ops::operands::Operands;
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
pub fn same_halves(what: &str, got: &[half::f16], want: &[half::f16]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() { g.is_nan() } else { g.to_bits() == w.to_bits() };
        assert!(ok, "{what}: element {i}: got {:#06x} ({g}), want {:#06x} ({w})", g.to_bits(), w.to_bits());
    }
}

/// f32 values rounded to f16 (nearest even), as the kernels' stores do.
pub fn round(v: &[f32]) -> Vec<half::f16> {
    v.iter().map(|&x| half::f16::from_f32(x)).collect()
}

/// Each f16 result within `max_ulps` f16 ulps of the wanted one.
#[track_caller]
pub fn within(what: &str, got: &[half::f16], want: &[half::f16], max_ulps: u32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = ulps(g, w).is_some_and(|u| u <= max_ulps);
        assert!(ok, "{what}: element {i}: got {g} ({:#06x}), want {w} ({:#06x})", g.to_bits(), w.to_bits());
    }
}

/// f16 values widened to f32 (exactly).
pub fn widen(v: &[half::f16]) -> Vec<f32> {
    v.iter().map(|h| h.to_f32()).collect()
}

/// Distance in f16 ulps (±0 alike); `None` when exactly one side is NaN or
/// infinite, or they are different infinities.
pub fn ulps(a: half::f16, b: half::f16) -> Option<u32> {
    if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
        return ((a.is_nan() && b.is_nan()) || a == b).then_some(0);
    }
    let ordered = |h: half::f16| {
        let bits = h.to_bits() as i32;
        if bits & 0x8000 != 0 {
            -(bits & 0x7fff)
        } else {
            bits
        }
    };
    Some(ordered(a).abs_diff(ordered(b)))
}

/// One way of running an f16 kernel: a device and (on a GPU) how f16 is loaded.
#[derive(Clone, Copy)]
pub struct HalfRun<'a> {
    pub dev: &'a Device,
    pub loads: wgrad_gpu_core::ops::operands::HalfLoads,
}

impl HalfRun<'_> {
    pub fn name(&self) -> String {
        format!("{} {:?}", self.dev.name(), self.loads)
    }

    /// `f` under this run's f16 loads.
    pub fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        wgrad_gpu_core::ops::operands::with_half_loads(self.loads, f)
    }
}

/// Every f16 run: the reference twin first (the oracle), the fast CPU
/// backend, then the GPU's packed loads and (with SHADER_F16, which
/// lavapipe offers) its native ones.
pub fn half_runs<'a>(reference: &'a Device, fast: &'a Device, gpu: Option<&'a Device>) -> Vec<HalfRun<'a>> {
    use wgrad_gpu_core::ops::operands::HalfLoads;
    let mut v = vec![HalfRun { dev: reference, loads: HalfLoads::Auto }, HalfRun { dev: fast, loads: HalfLoads::Auto }];
    if let Some(g) = gpu {
        v.push(HalfRun { dev: g, loads: HalfLoads::Packed });
        if g.has_shader_f16() {
            v.push(HalfRun { dev: g, loads: HalfLoads::Native });
        } else {
            eprintln!("{} has no SHADER_F16: native f16 loads not run", g.name());
        }
        if g.name().contains("llvmpipe") {
            assert!(g.has_shader_f16(), "lavapipe offers SHADER_F16, so both f16 loads run");
        }
    }
    v
}

/// A fresh GPU whose binding limit is lowered to `bytes` (the split tests:
/// small tensors past it), or `None` when the GPU test is skipped.
pub fn limited_gpu(test: &str, bytes: u64) -> Option<Device> {
    let dev = wgrad_gpu_core::testing::fresh_gpu_or_skip(test)?;
    dev.set_max_binding_bytes(Some(bytes)).unwrap();
    assert_eq!(dev.max_binding_bytes(), bytes);
    Some(dev)
}

/// The first `n` f32 of `b`.
pub fn f32s_of(b: &Buffer, n: usize) -> Vec<f32> {
    b.to_f32().unwrap()[..n].to_vec()
}

/// `v` stored as `io` (f16: rounded to nearest).
pub fn upload_as(dev: &Device, v: &[f32], io: Operands) -> Buffer {
    match io {
        Operands::F32 => Buffer::from_f32(dev, v).unwrap(),
        Operands::F16 => Buffer::from_f16(dev, &round(v)).unwrap(),
    }
}

/// The first `n` values of `b` stored as `io`, as f32.
pub fn values_as(b: &Buffer, n: usize, io: Operands) -> Vec<f32> {
    match io {
        Operands::F32 => f32s_of(b, n),
        Operands::F16 => widen(&b.to_f16().unwrap()[..n]),
    }
}

/// `(op, index, size)` of an index error, or a panic naming what came instead.
#[track_caller]
pub fn index_error<T: std::fmt::Debug>(r: Result<T, wgrad_gpu_core::Error>) -> (&'static str, u64, u64) {
    match r {
        Err(wgrad_gpu_core::Error::IndexOutOfRange { op, index, size }) => (op, index, size),
        other => panic!("expected an index error, got {other:?}"),
    }
}

/// A pooling window from PyTorch's positional (kernel, stride, padding,
/// dilation), output sizes rounded down.
pub fn window(
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
) -> wgrad_gpu_core::ops::pool::PoolWindow {
    wgrad_gpu_core::ops::pool::PoolWindow::new(kernel).stride(stride).padding(padding).dilation(dilation)
}

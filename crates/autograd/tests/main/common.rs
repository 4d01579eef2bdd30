//! Shared by autograd tests: run a check on every available backend.
#![allow(dead_code)]

use wgrad_autograd::gradcheck::{check_gradients, GradCheck};
use wgrad_autograd::{Device, Tensor};
#[allow(unused_imports)] // not every test file runs on both backends
pub use wgrad_gpu_core::testing::backends;
use wgrad_gpu_core::testing::Rng;

/// Seeded random tensor in [lo, hi).
pub fn rand(shape: &[usize], seed: u64, lo: f32, hi: f32, dev: &Device) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(&Rng::new(seed).vec(n, lo, hi), shape, dev)
}

/// Finite-difference check of `f` on every backend; panics naming the op and device.
#[track_caller]
pub fn gradcheck(test: &str, shapes: &[&[usize]], f: impl Fn(&[Tensor]) -> Tensor) {
    gradcheck_in(test, shapes, (-1.0, 1.0), GradCheck::default(), f)
}

/// [`gradcheck`] with an input range and tolerances.
#[track_caller]
pub fn gradcheck_in(
    test: &str,
    shapes: &[&[usize]],
    range: (f32, f32),
    opts: GradCheck,
    f: impl Fn(&[Tensor]) -> Tensor,
) {
    for dev in backends(test) {
        let inputs: Vec<Tensor> =
            shapes.iter().enumerate().map(|(i, s)| rand(s, 100 + i as u64, range.0, range.1, &dev)).collect();
        if let Err(e) = check_gradients(&f, &inputs, opts) {
            panic!("{test} on {}: {e}", dev.name());
        }
    }
}

/// Finite-difference check on inputs built per device by `make`.
#[track_caller]
pub fn gradcheck_inputs(test: &str, make: impl Fn(&Device) -> Vec<Tensor>, f: impl Fn(&[Tensor]) -> Tensor) {
    for dev in backends(test) {
        if let Err(e) = check_gradients(&f, &make(&dev), GradCheck::default()) {
            panic!("{test} on {}: {e}", dev.name());
        }
    }
}

/// Distinct values on a 0.1 grid (a shuffled arange) plus `shift`: no two
/// elements tie, and two such tensors with shifts 0 and 0.05 never come closer
/// than 0.05, far from the kinks of max/min for eps 0.01.
pub fn grid(shape: &[usize], seed: u64, shift: f32, dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) / 10.0 + shift).collect();
    let mut r = Rng::new(seed);
    for i in (1..n).rev() {
        v.swap(i, r.below(i as u32 + 1) as usize);
    }
    Tensor::from_vec(&v, shape, dev)
}

/// Within `ulps` f16 ulps of the F32 result rounded to f16 (infinities equal).
#[track_caller]
pub fn close_to_f16_ulps(what: &str, got: &[f32], want_f32: &[f32], ulps: u16) {
    assert_eq!(got.len(), want_f32.len(), "{what}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want_f32).enumerate() {
        let (gh, wh) = (half::f16::from_f32(g), half::f16::from_f32(w));
        assert_eq!(gh.to_f32(), g, "{what}: element {i} ({g}) is no f16 value");
        let ok = if gh.is_infinite() || wh.is_infinite() {
            gh == wh
        } else {
            let key = |h: half::f16| {
                let b = h.to_bits() as i32;
                if b & 0x8000 != 0 {
                    -(b & 0x7fff)
                } else {
                    b
                }
            };
            key(gh).abs_diff(key(wh)) <= ulps as u32
        };
        assert!(ok, "{what}: element {i}: got {g}, want {wh} (the F32 op's value rounded)");
    }
}

/// `f`'s result and the device memory it holds once the recorded work has
/// run (live bytes after minus before; buffers come from a pool in rounded
/// sizes, so compare with another result's figure, not with a size).
pub fn bytes_held(dev: &Device, f: impl FnOnce() -> Tensor) -> (Tensor, u64) {
    dev.synchronize().unwrap();
    let before = dev.stats().bytes_live;
    let y = f();
    dev.synchronize().unwrap();
    let bytes = dev.stats().bytes_live - before;
    (y, bytes)
}

//! argsort: the GPU kernel and the fast CPU backend give the reference
//! twin's positions on every dim of awkward shapes, both directions, with
//! ties, NaN, infinities and signed zeros; hand-checked orders; past a
//! lowered binding limit; errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::argsort::argsort;
use wgrad_gpu_core::{Buffer, Device};

/// Sizes 1, 2, 7, 33, 257 (one past a power of two), 1,000 (many passes of
/// 256 threads), an empty dim, more fibers than a workgroup.
const SHAPES: &[&[usize]] = &[&[1], &[2], &[7], &[3, 33], &[2, 257, 3], &[1000], &[3, 0, 4], &[300, 5], &[2, 3, 4, 5]];

/// Values with ties (few distinct), NaN, ±inf and ±0 mixed in.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, -f32::NAN];
    rng(seed)
        .vec(n, -3.0, 3.0)
        .iter()
        .enumerate()
        .map(|(i, v)| if i % 11 == 10 { special[i / 11 % special.len()] } else { (v * 2.0).round() / 2.0 })
        .collect()
}

fn same_positions(a: &Device, b: &Device) {
    for (s, &shape) in SHAPES.iter().enumerate() {
        let n: usize = shape.iter().product();
        let x = values(n, 50 + s as u64);
        for dim in 0..shape.len() {
            for descending in [false, true] {
                let ia = argsort(&Buffer::from_f32(a, &x).unwrap(), shape, dim, descending).unwrap();
                let ib = argsort(&Buffer::from_f32(b, &x).unwrap(), shape, dim, descending).unwrap();
                let what = format!("{shape:?} dim {dim} descending {descending} on {} vs {}", a.name(), b.name());
                assert_eq!(ia.to_u32().unwrap()[..n], ib.to_u32().unwrap()[..n], "{what}");
            }
        }
    }
}

#[test]
fn argsort_gives_the_twins_positions() {
    let Some((g, c)) = devices("argsort_gives_the_twins_positions") else { return };
    same_positions(&g, &c);
}

#[test]
fn fast_cpu_argsort_is_the_reference() {
    same_positions(&Device::cpu(), &Device::cpu_reference());
}

#[test]
fn orders_are_pytorchs_stable_ones() {
    let mut devs = vec![Device::cpu(), Device::cpu_reference()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("argsort orders_are_pytorchs_stable_ones"));
    for dev in &devs {
        // torch.argsort(torch.tensor([2., nan, -0., 1., 0., -inf, 2.]), stable=True) and descending=True.
        let x = Buffer::from_f32(dev, &[2.0, f32::NAN, -0.0, 1.0, 0.0, f32::NEG_INFINITY, 2.0]).unwrap();
        let run = |descending| argsort(&x, &[7], 0, descending).unwrap().to_u32().unwrap()[..7].to_vec();
        assert_eq!(run(false), [5, 2, 4, 3, 0, 6, 1], "{}", dev.name());
        assert_eq!(run(true), [1, 0, 6, 3, 2, 4, 5], "{}", dev.name());
        // Along dim 0 of [3, 2].
        let x = Buffer::from_f32(dev, &[3.0, 1.0, 1.0, 2.0, 2.0, 3.0]).unwrap();
        let i = argsort(&x, &[3, 2], 0, false).unwrap().to_u32().unwrap()[..6].to_vec();
        assert_eq!(i, [1, 0, 2, 1, 0, 2], "{}", dev.name());
    }
}

#[test]
fn past_a_lowered_binding_limit_slices_run_in_chunks() {
    let Some(g) = limited_gpu("argsort past_a_lowered_binding_limit", 2048) else { return };
    let c = Device::cpu_reference();
    // 30 slices of 9 x 2: keys of 16 x 2 x 2 words a slice, 7,680 B in all.
    let shape = [30, 9, 2];
    let x = values(540, 60);
    for descending in [false, true] {
        let launches = g.stats().dispatches;
        let ig = argsort(&Buffer::from_f32(&g, &x).unwrap(), &shape, 1, descending).unwrap();
        assert!(g.stats().dispatches - launches >= 4, "chunks of slices");
        let ic = argsort(&Buffer::from_f32(&c, &x).unwrap(), &shape, 1, descending).unwrap();
        assert_eq!(ig.to_u32().unwrap()[..540], ic.to_u32().unwrap()[..540], "descending {descending}");
    }
}

#[test]
fn bad_arguments_are_errors() {
    let dev = Device::cpu();
    let x = Buffer::from_f32(&dev, &[0.0; 6]).unwrap();
    let e = argsort(&x, &[2, 3], 2, false).unwrap_err().to_string();
    assert!(e.contains("argsort") && e.contains("dim 2"), "{e}");
    let e = argsort(&x, &[2, 4], 1, false).unwrap_err().to_string();
    assert!(e.contains("argsort") && e.contains("input"), "{e}");
}

//! Cumulative sums (forward and reverse): the GPU kernel and the fast CPU
//! backend give the reference twin's bits on every dim of awkward shapes;
//! hand-checked values; past a lowered binding limit; errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::cumsum::cumsum;
use wgrad_gpu_core::{Buffer, Device};

/// Shapes with sizes 1, 7, 33, a long dim (1,023), more fibers than a
/// workgroup, and an empty dim.
const SHAPES: &[&[usize]] = &[&[7], &[1023], &[3, 33], &[2, 7, 5], &[1, 1, 1], &[5, 300], &[3, 0, 4], &[2, 3, 4, 5]];

fn bits(b: &Buffer, n: usize) -> Vec<u32> {
    b.to_u32().unwrap()[..n].to_vec()
}

/// Every dim of every shape, both directions, on `a` and `b`: the same bits.
fn same_bits(a: &Device, b: &Device) {
    let mut r = rng(41);
    for &shape in SHAPES {
        let n: usize = shape.iter().product();
        let x = r.vec(n, -2.0, 2.0);
        for dim in 0..shape.len() {
            for reverse in [false, true] {
                let ya = cumsum(&Buffer::from_f32(a, &x).unwrap(), shape, dim, reverse).unwrap();
                let yb = cumsum(&Buffer::from_f32(b, &x).unwrap(), shape, dim, reverse).unwrap();
                let what = format!("{shape:?} dim {dim} reverse {reverse} on {} vs {}", a.name(), b.name());
                assert_eq!(bits(&ya, n), bits(&yb, n), "{what}");
            }
        }
    }
}

#[test]
fn cumsum_gives_the_twins_bits() {
    let Some((g, c)) = devices("cumsum_gives_the_twins_bits") else { return };
    same_bits(&g, &c);
}

#[test]
fn fast_cpu_cumsum_is_the_reference() {
    same_bits(&Device::cpu(), &Device::cpu_reference());
}

#[test]
fn values_are_running_sums_in_order() {
    let mut devs = vec![Device::cpu(), Device::cpu_reference()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("cumsum values_are_running_sums_in_order"));
    for dev in &devs {
        let x = Buffer::from_f32(dev, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let run = |dim, reverse| f32s_of(&cumsum(&x, &[2, 3], dim, reverse).unwrap(), 6);
        assert_eq!(run(1, false), [1.0, 3.0, 6.0, 4.0, 9.0, 15.0], "{}", dev.name());
        assert_eq!(run(0, false), [1.0, 2.0, 3.0, 5.0, 7.0, 9.0], "{}", dev.name());
        assert_eq!(run(1, true), [6.0, 5.0, 3.0, 15.0, 11.0, 6.0], "{}", dev.name());
        // In order: 1e8 + 1 + ... + 1 loses each 1 (f32), as PyTorch's CPU
        // loop does; a pairwise tree would keep some.
        let y = cumsum(&Buffer::from_f32(dev, &[1e8, 1.0, 1.0, 1.0]).unwrap(), &[4], 0, false).unwrap();
        assert_eq!(f32s_of(&y, 4), [1e8; 4], "{}", dev.name());
    }
}

#[test]
fn past_a_lowered_binding_limit_slices_run_in_chunks() {
    let Some(g) = limited_gpu("cumsum past_a_lowered_binding_limit", 2048) else { return };
    let c = Device::cpu_reference();
    // 40 slices of 7 x 3 (84 B each): 3,360 B, past 2 KiB.
    let shape = [40, 7, 3];
    let x = rng(42).vec(840, -1.0, 1.0);
    for reverse in [false, true] {
        let launches = g.stats().dispatches;
        let yg = cumsum(&Buffer::from_f32(&g, &x).unwrap(), &shape, 1, reverse).unwrap();
        assert!(g.stats().dispatches - launches >= 2, "chunks of slices");
        let yc = cumsum(&Buffer::from_f32(&c, &x).unwrap(), &shape, 1, reverse).unwrap();
        assert_eq!(bits(&yg, 840), bits(&yc, 840), "reverse {reverse}");
    }
}

#[test]
fn bad_arguments_are_errors() {
    let dev = Device::cpu();
    let x = Buffer::from_f32(&dev, &[0.0; 6]).unwrap();
    let e = cumsum(&x, &[2, 3], 2, false).unwrap_err().to_string();
    assert!(e.contains("cumsum") && e.contains("dim 2"), "{e}");
    let e = cumsum(&x, &[2, 4], 1, false).unwrap_err().to_string();
    assert!(e.contains("cumsum") && e.contains("input"), "{e}");
}

//! Casts: f32 <-> f16 on packed storage against the `half`-based CPU twin,
//! u32 <-> f32 against Rust's `as`.

use crate::common;
use common::*;
use half::f16;
use wgrad_gpu_core::ops::cast::{f16_to_f32, f32_to_f16, f32_to_u32, u32_to_f32};
use wgrad_gpu_core::{Buffer, Device};

/// Values at f16's edges: signed zeros, the largest finite, the halfway point
/// to overflow, overflow, infinities, NaN, f16 subnormals and values that
/// round below them, f32 subnormals, and ties that round to even.
fn edge_values() -> Vec<f32> {
    vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        65504.0,
        65519.99,
        65520.0,
        -65520.0,
        1e6,
        -1e6,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        5.960_464_5e-8, // smallest f16 subnormal
        2.980_232_2e-8, // half of it: ties to even, 0
        4.5e-8,         // rounds up to the smallest subnormal
        6.097_555e-5,   // largest f16 subnormal
        6.103_515_6e-5, // smallest f16 normal
        1e-10,
        f32::MIN_POSITIVE / 4.0,
        1.0 + 1.0 / 2048.0, // tie between 1 and 1 + 2^-10: rounds to 1
        1.0 + 3.0 / 2048.0, // tie: rounds up to the even 1 + 2^-9
        -2049.0,
    ]
}

/// f32 values spread over f16's whole exponent range and beyond, both signs.
fn spread(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| {
            let sign = if r.below(2) == 0 { 1.0 } else { -1.0 };
            sign * r.uniform(1.0, 2.0) * 2f32.powi(r.below(50) as i32 - 30)
        })
        .collect()
}

#[test]
fn f32_to_f16_matches_twin_bit_exactly() {
    // half.wgsl rounds to nearest even in integer arithmetic, like `half`: no ulp slack.
    let Some((g, c)) = devices("f32_to_f16_matches_twin_bit_exactly") else { return };
    let mut cases: Vec<Vec<f32>> = SIZES.iter().map(|&n| spread(n, n as u64)).collect();
    cases.push(edge_values());
    cases.push(spread(4097, 99));
    for data in &cases {
        let n = data.len();
        let (xg, xc) = both(&g, &c, data);
        let (hg, hc) = (f32_to_f16(&xg, n).unwrap(), f32_to_f16(&xc, n).unwrap());
        assert_eq!(hg.len_bytes(), 2 * n as u64);
        same_halves(&format!("f32_to_f16 n={n}"), &hg.to_f16().unwrap(), &hc.to_f16().unwrap());
    }
}

/// The GPU's integer rounding (`half.wgsl`) against `half` on every
/// rounding decision f16 has: for each finite non-negative half (and its
/// negative), the half itself, the exact midpoint to the next half (a tie:
/// to even), and the f32 values one ulp either side of that midpoint.
#[test]
fn f32_to_f16_rounds_every_midpoint_like_half() {
    let Some((g, c)) = devices("f32_to_f16_rounds_every_midpoint_like_half") else { return };
    let mut data = Vec::new();
    for bits in 0..0x7c00u16 {
        let (lo, hi) = (f16::from_bits(bits).to_f32(), f16::from_bits(bits + 1).to_f32());
        let mid = (lo as f64 + hi as f64) / 2.0;
        let mid = mid as f32; // exact: f16 midpoints have at most 12 significant bits
        for v in [lo, mid, f32::from_bits(mid.to_bits() - 1), f32::from_bits(mid.to_bits() + 1)] {
            data.extend([v, -v]);
        }
    }
    let n = data.len();
    let (xg, xc) = both(&g, &c, &data);
    let (hg, hc) = (f32_to_f16(&xg, n).unwrap(), f32_to_f16(&xc, n).unwrap());
    let want: Vec<f16> = data.iter().map(|&v| f16::from_f32(v)).collect();
    same_halves("f32_to_f16 on the CPU twin", &hc.to_f16().unwrap()[..n], &want);
    same_halves("f32_to_f16 on the GPU", &hg.to_f16().unwrap()[..n], &want);
}

#[test]
fn f16_to_f32_is_exact_for_every_half() {
    // All 65,536 bit patterns, then the odd counts that end mid-word.
    let Some((g, c)) = devices("f16_to_f32_is_exact_for_every_half") else { return };
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    for n in [0, 1, 7, 33, 1023, all.len()] {
        let (xg, xc) = (Buffer::from_f16(&g, &all[..n]).unwrap(), Buffer::from_f16(&c, &all[..n]).unwrap());
        let (yg, yc) = (f16_to_f32(&xg, n).unwrap().to_f32().unwrap(), f16_to_f32(&xc, n).unwrap().to_f32().unwrap());
        assert_eq!(yg.len(), n);
        for (i, ((a, b), h)) in yg.iter().zip(&yc).zip(&all).enumerate() {
            assert_eq!(b.to_bits(), h.to_f32().to_bits(), "twin, element {i}");
            let ok = if b.is_nan() { a.is_nan() } else { a.to_bits() == b.to_bits() };
            assert!(ok, "f16 {:#06x}: gpu {a} vs cpu {b}", h.to_bits());
        }
    }
}

#[test]
fn f16_round_trips_are_the_identity() {
    // f16 -> f32 -> f16 loses nothing; f32 -> f16 -> f32 lands within half an f16 ulp.
    let Some((g, c)) = devices("f16_round_trips_are_the_identity") else { return };
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    let n = all.len();
    for dev in [&g, &c] {
        let back = f32_to_f16(&f16_to_f32(&Buffer::from_f16(dev, &all).unwrap(), n).unwrap(), n).unwrap();
        same_halves(&format!("round trip on {dev:?}"), &back.to_f16().unwrap(), &all);
    }
    let data = spread(1023, 5).into_iter().map(|v| v.clamp(-60000.0, 60000.0)).collect::<Vec<_>>();
    let x = Buffer::from_f32(&g, &data).unwrap();
    let y = f16_to_f32(&f32_to_f16(&x, 1023).unwrap(), 1023).unwrap().to_f32().unwrap();
    for (&a, &b) in data.iter().zip(&y) {
        // Relative half ulp of f16 (2^-11) for normals, absolute 2^-25 in the subnormal range.
        assert!((a - b).abs() <= a.abs() / 2048.0 + 2.98e-8, "{a} -> {b}");
    }
}

#[test]
fn known_conversions() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[1.0, 65504.0, 65520.0, -1e6, 5.960_464_5e-8, 0.1, -2.0]).unwrap();
    let bits: Vec<u16> = f32_to_f16(&x, 7).unwrap().to_f16().unwrap().iter().map(|h| h.to_bits()).collect();
    assert_eq!(bits, [0x3c00, 0x7bff, 0x7c00, 0xfc00, 0x0001, 0x2e66, 0xc000]);
    let h = Buffer::from_f16(&c, &[f16::from_bits(0x3555), f16::from_bits(0x0400)]).unwrap();
    assert_eq!(f16_to_f32(&h, 2).unwrap().to_f32().unwrap(), [0.333_251_95, 6.103_515_6e-5]);
}

#[test]
fn casts_check_buffer_sizes() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[1.0; 3]).unwrap();
    assert!(f32_to_f16(&x, 4).unwrap_err().to_string().contains("f32_to_f16"));
    let h = Buffer::from_f16(&c, &[f16::ONE; 3]).unwrap();
    assert!(f16_to_f32(&h, 4).unwrap_err().to_string().contains("f16_to_f32"));
    assert_eq!(f16_to_f32(&h, 3).unwrap().to_f32().unwrap(), [1.0; 3]);
}

#[test]
fn u32_to_f32_rounds_to_nearest_even_like_as() {
    let Some((g, c)) = devices("u32_to_f32_rounds_to_nearest_even_like_as") else { return };
    let mut r = rng(7);
    // Exact below 2^24; above, ties (2^24 + 1, 2^25 + 2) go to even.
    let mut data =
        vec![0, 1, 9, (1 << 24) - 1, 1 << 24, (1 << 24) + 1, (1 << 24) + 3, (1 << 25) + 2, u32::MAX, u32::MAX - 128];
    data.extend((0..1021).map(|_| r.below(1 << 16) << r.below(17) | r.below(1 << 16)));
    for dev in [&g, &c] {
        let n = data.len();
        let y = u32_to_f32(&Buffer::from_u32(dev, &data).unwrap(), n).unwrap().to_f32().unwrap();
        for (v, f) in data.iter().zip(&y) {
            assert_eq!(f.to_bits(), (*v as f32).to_bits(), "{dev:?}: {v} -> {f}");
        }
    }
}

#[test]
fn f32_to_u32_truncates_and_saturates_like_as() {
    let Some((g, c)) = devices("f32_to_u32_truncates_and_saturates_like_as") else { return };
    let mut data = vec![
        0.0,
        -0.0,
        0.99,
        1.5,
        -1.5,
        -1e-40,
        1e-40,
        16777217.0,
        4294967040.0, // the largest f32 below 2^32
        4294967296.0,
        1e20,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
    ];
    data.extend(spread(1000, 11).into_iter().map(|v| v.abs()));
    for dev in [&g, &c] {
        let n = data.len();
        let y = f32_to_u32(&Buffer::from_f32(dev, &data).unwrap(), n).unwrap().to_u32().unwrap();
        for (v, u) in data.iter().zip(&y) {
            assert_eq!(*u, *v as u32, "{dev:?}: {v}");
        }
    }
}

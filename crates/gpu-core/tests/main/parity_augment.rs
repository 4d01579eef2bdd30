//! Image augmentation: GPU vs CPU twin bit for bit (same random decisions),
//! and hand-checked properties of crop, flip, cutout and normalize.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::augment::{
    counters_used, crop_flip, crop_flip_decision, cutout, cutout_box, draws, normalize,
};
use wgrad_gpu_core::{Buffer, Device};

/// Batch shapes: batch 1, odd sizes, non-square, a 1×1 image and CIFAR's.
const SHAPES: &[[usize; 4]] = &[[1, 1, 1, 1], [1, 3, 32, 32], [3, 2, 7, 5], [5, 3, 9, 13], [2, 1, 4, 31]];

fn bits(b: &Buffer) -> Vec<u32> {
    b.to_f32().unwrap().iter().map(|v| v.to_bits()).collect()
}

fn data(shape: [usize; 4], seed: u64) -> Vec<f32> {
    // No zeros, so a zeroed pixel in a result is always the op's doing.
    rng(seed).vec(shape.iter().product(), 0.5, 2.0)
}

#[test]
fn crop_flip_matches_the_twin_bit_for_bit() {
    let Some((g, c)) = devices("crop_flip_matches_the_twin_bit_for_bit") else { return };
    for (k, &shape) in SHAPES.iter().enumerate() {
        let x = data(shape, k as u64);
        let (xg, xc) = both(&g, &c, &x);
        for (pad, p, seed, offset) in
            [(4, 0.5, 3u64, 0u64), (2, 0.5, 0xDEAD_BEEF_0123_4567, u32::MAX as u64 - 1), (0, 1.0, 9, 5)]
        {
            let yg = crop_flip(&xg, shape, pad, p, seed, offset).unwrap();
            let yc = crop_flip(&xc, shape, pad, p, seed, offset).unwrap();
            assert_eq!(bits(&yg), bits(&yc), "crop_flip {shape:?} pad {pad} seed {seed} offset {offset}");
        }
    }
}

#[test]
fn cutout_and_normalize_match_the_twin_bit_for_bit() {
    let Some((g, c)) = devices("cutout_and_normalize_match_the_twin_bit_for_bit") else { return };
    for (k, &shape) in SHAPES.iter().enumerate() {
        let x = data(shape, 10 + k as u64);
        let (xg, xc) = both(&g, &c, &x);
        for (size, seed, offset) in [(16, 1u64, 0u64), (3, 77, 1 << 40), (8, 5, u32::MAX as u64)] {
            let (yg, yc) =
                (cutout(&xg, shape, size, seed, offset).unwrap(), cutout(&xc, shape, size, seed, offset).unwrap());
            assert_eq!(bits(&yg), bits(&yc), "cutout {shape:?} size {size} seed {seed}");
        }
        let mean: Vec<f32> = (0..shape[1]).map(|i| 0.4 + 0.05 * i as f32).collect();
        let std: Vec<f32> = (0..shape[1]).map(|i| 0.2 + 0.03 * i as f32).collect();
        let (yg, yc) = (normalize(&xg, shape, &mean, &std).unwrap(), normalize(&xc, shape, &mean, &std).unwrap());
        assert_eq!(bits(&yg), bits(&yc), "normalize {shape:?}");
    }
}

/// Every device to check the hand-made expectations on.
fn all_devices(test: &str) -> Vec<Device> {
    let mut v = vec![Device::cpu_reference()];
    v.extend(wgrad_gpu_core::testing::gpu_or_skip(test));
    v
}

#[test]
fn flipping_twice_and_cropping_without_shift_are_identities() {
    for d in all_devices("flipping_twice_and_cropping_without_shift_are_identities") {
        for &shape in SHAPES {
            let x = data(shape, 21);
            let xb = Buffer::from_f32(&d, &x).unwrap();
            let once = crop_flip(&xb, shape, 0, 1.0, 4, 0).unwrap();
            let twice = crop_flip(&once, shape, 0, 1.0, 4, 0).unwrap();
            assert_eq!(twice.to_f32().unwrap(), x, "flip twice {shape:?} on {}", d.name());
            // One flip reverses every row.
            let [_, _, _, w] = shape;
            let want: Vec<f32> = x.chunks(w).flat_map(|r| r.iter().rev().copied()).collect();
            assert_eq!(once.to_f32().unwrap(), want, "flip {shape:?}");
            let same = crop_flip(&xb, shape, 0, 0.0, 4, 0).unwrap();
            assert_eq!(same.to_f32().unwrap(), x, "crop with shift 0 {shape:?} on {}", d.name());
        }
    }
}

#[test]
fn crop_shifts_with_zero_fill_as_drawn() {
    let shape = [6, 2, 7, 5];
    let (pad, seed, offset) = (3, 12, 40);
    let x = data(shape, 5);
    for d in all_devices("crop_shifts_with_zero_fill_as_drawn") {
        let y = crop_flip(&Buffer::from_f32(&d, &x).unwrap(), shape, pad, 0.0, seed, offset).unwrap().to_f32().unwrap();
        let [_, c, h, w] = shape;
        for img in 0..shape[0] {
            let (dy, dx, flip) = crop_flip_decision(draws(seed, offset, img), pad, 0.0);
            assert!(!flip && dy.abs() <= pad as i64 && dx.abs() <= pad as i64);
            for ch in 0..c {
                let base = (img * c + ch) * h * w;
                for r in 0..h as i64 {
                    for col in 0..w as i64 {
                        let (sy, sx) = (r + dy, col + dx);
                        let want = if sy < 0 || sx < 0 || sy >= h as i64 || sx >= w as i64 {
                            0.0
                        } else {
                            x[base + (sy * w as i64 + sx) as usize]
                        };
                        assert_eq!(
                            y[base + (r * w as i64 + col) as usize],
                            want,
                            "image {img} ({r}, {col}) shift ({dy}, {dx})"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn decisions_cover_every_shift_and_flip_half_the_time() {
    let pad = 4;
    let mut seen = [[false; 9]; 2];
    let mut flips = 0;
    let n = 4000;
    for img in 0..n {
        let (dy, dx, flip) = crop_flip_decision(draws(7, 0, img), pad, 0.5);
        seen[0][(dy + 4) as usize] = true;
        seen[1][(dx + 4) as usize] = true;
        flips += flip as usize;
    }
    assert!(seen.iter().flatten().all(|&s| s), "every shift in [-4, 4] occurs");
    assert!((flips as f64 / n as f64 - 0.5).abs() < 0.04, "flip rate {flips}/{n}");
    assert_eq!(counters_used(n), n as u64);
}

#[test]
fn cutout_zeroes_exactly_the_square() {
    let shape = [7, 3, 9, 11];
    let (size, seed, offset) = (6, 99, 3);
    let x = data(shape, 8);
    for d in all_devices("cutout_zeroes_exactly_the_square") {
        let y = cutout(&Buffer::from_f32(&d, &x).unwrap(), shape, size, seed, offset).unwrap().to_f32().unwrap();
        let [_, c, h, w] = shape;
        let mut clipped = false;
        for img in 0..shape[0] {
            let (y0, y1, x0, x1) = cutout_box(draws(seed, offset, img), h, w, size);
            assert!(y1 > y0 && x1 > x0 && y1 - y0 <= size && x1 - x0 <= size);
            clipped |= y1 - y0 < size || x1 - x0 < size;
            for ch in 0..c {
                for r in 0..h {
                    for col in 0..w {
                        let i = ((img * c + ch) * h + r) * w + col;
                        let inside = (y0..y1).contains(&r) && (x0..x1).contains(&col);
                        assert_eq!(
                            y[i],
                            if inside { 0.0 } else { x[i] },
                            "image {img} ({r}, {col}) box {:?}",
                            (y0, y1, x0, x1)
                        );
                    }
                }
            }
        }
        assert!(clipped, "some square should meet a border on a 9×11 image");
    }
    // size 0 copies.
    let c = Device::cpu_reference();
    let y = cutout(&Buffer::from_f32(&c, &x).unwrap(), shape, 0, seed, offset).unwrap().to_f32().unwrap();
    assert_eq!(y, x);
}

#[test]
fn normalize_values_and_errors() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let y = normalize(&x, [1, 2, 1, 2], &[1.0, 2.0], &[2.0, 0.5]).unwrap().to_f32().unwrap();
    assert_eq!(y, vec![0.0, 0.5, 2.0, 4.0]);
    assert!(normalize(&x, [1, 2, 1, 2], &[1.0], &[1.0]).is_err(), "one mean per channel");
    assert!(normalize(&x, [1, 2, 1, 2], &[1.0, 1.0], &[1.0, 0.0]).is_err(), "zero std");
    assert!(normalize(&x, [1, 2, 2, 2], &[1.0, 1.0], &[1.0, 1.0]).is_err(), "reading past the buffer");
    assert!(crop_flip(&x, [1, 1, 2, 2], 1, 1.5, 0, 0).is_err(), "flip probability above 1");
    assert!(cutout(&x, [1, 1, 4, 4], 2, 0, 0).is_err(), "reading past the buffer");
    let empty = Buffer::from_f32(&c, &[]).unwrap();
    assert!(crop_flip(&empty, [0, 3, 4, 4], 1, 0.5, 0, 0).unwrap().to_f32().unwrap().is_empty());
}

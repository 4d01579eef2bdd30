//! Philox4x32-10 random numbers: known-answer vectors, GPU vs CPU twin, statistics.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::random::{counters_used, normal, philox4x32_10, uniform};
use wgrad_gpu_core::Device;

#[test]
fn philox_matches_random123_known_answers() {
    // kat_vectors from the Random123 distribution, philox4x32 with 10 rounds.
    assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    assert_eq!(
        philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn uniform_words_follow_the_documented_scheme() {
    // Element i is word i % 4 of philox(counter = offset + i / 4, key = seed).
    let c = Device::cpu_reference();
    let (seed, offset) = (0x0123_4567_89ab_cdef_u64, 0xffff_ffff_u64);
    let got = uniform(&c, 10, seed, offset, 0.0, 1.0).unwrap().to_f32().unwrap();
    for (i, &g) in got.iter().enumerate() {
        let ctr = offset + (i / 4) as u64;
        let w = philox4x32_10([ctr as u32, (ctr >> 32) as u32, 0, 0], [seed as u32, (seed >> 32) as u32]);
        assert_eq!(g, (w[i % 4] >> 8) as f32 / 16_777_216.0, "element {i}");
    }
}

/// Seeds and offsets, including counters that carry into the high word.
const STREAMS: &[(u64, u64)] = &[(0, 0), (42, 7), (u64::MAX, 0xffff_fff0), (0xdead_beef_0000_0001, 1 << 40)];

#[test]
fn uniform_matches_twin_bit_exactly() {
    let Some((g, c)) = devices("uniform_matches_twin_bit_exactly") else { return };
    for &(seed, offset) in STREAMS {
        for &n in SIZES.iter().chain(&[4096 + 3]) {
            let yg = uniform(&g, n, seed, offset, -2.0, 3.5).unwrap().to_u32().unwrap();
            let yc = uniform(&c, n, seed, offset, -2.0, 3.5).unwrap().to_u32().unwrap();
            assert_eq!(yg, yc, "seed {seed:#x} offset {offset:#x} n {n}");
        }
    }
}

#[test]
fn normal_matches_twin_within_a_few_ulp() {
    let Some((g, c)) = devices("normal_matches_twin_within_a_few_ulp") else { return };
    for &(seed, offset) in STREAMS {
        for &n in SIZES.iter().chain(&[4096 + 3]) {
            let yg = normal(&g, n, seed, offset, 0.5, 2.0).unwrap();
            let yc = normal(&c, n, seed, offset, 0.5, 2.0).unwrap();
            // GPU log/cos/sin are not correctly rounded; |z| < 12 here, so 1e-5 is a few ulp.
            same(&format!("normal seed {seed:#x} offset {offset:#x} n {n}"), &yg, &yc, n, 1e-5, 1e-5);
        }
    }
}

fn mean_var(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    (mean, v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n)
}

fn check_statistics(dev: &Device) {
    let n = 100_000;
    let u = uniform(dev, n, 7, 0, -1.0, 3.0).unwrap().to_f32().unwrap();
    assert!(u.iter().all(|&x| (-1.0..3.0).contains(&x)), "uniform out of [-1, 3)");
    let (m, v) = mean_var(&u);
    // Width 4: mean 1, variance 16/12; tolerances are about 5 standard errors.
    assert!((m - 1.0).abs() < 0.02, "uniform mean {m}");
    assert!((v - 4.0 / 3.0).abs() < 0.02, "uniform variance {v}");

    let z = normal(dev, n, 7, counters_used(n), 2.0, 0.5).unwrap().to_f32().unwrap();
    assert!(z.iter().all(|x| x.is_finite()), "normal gave a non-finite value");
    let (m, v) = mean_var(&z);
    assert!((m - 2.0).abs() < 0.01, "normal mean {m}");
    assert!((v - 0.25).abs() < 0.006, "normal variance {v}");
    let within = z.iter().filter(|&&x| (x - 2.0).abs() < 0.5).count() as f64 / n as f64;
    assert!((within - 0.6827).abs() < 0.01, "normal: {within} within one sigma");
}

#[test]
fn samples_have_the_right_statistics() {
    check_statistics(&Device::cpu_reference());
    if let Some((g, _)) = devices("samples_have_the_right_statistics") {
        check_statistics(&g);
    }
}

#[test]
fn offsets_and_seeds_give_fresh_streams() {
    let c = Device::cpu_reference();
    let n = 1000;
    let draw = |seed, offset| uniform(&c, n, seed, offset, 0.0, 1.0).unwrap().to_f32().unwrap();
    let first = draw(1, 0);
    let next = draw(1, counters_used(n));
    let other_seed = draw(2, 0);
    // 24-bit values: a handful of chance coincidences at most.
    let equal = |a: &[f32], b: &[f32]| a.iter().zip(b).filter(|(x, y)| x == y).count();
    assert!(equal(&first, &next) < 5, "advanced offset repeats the stream");
    assert!(equal(&first, &other_seed) < 5, "another seed repeats the stream");
    // Two calls that advance the offset by counters_used make one long stream.
    let long = draw(1, 0).into_iter().chain(draw(1, counters_used(n))).collect::<Vec<_>>();
    assert_eq!(long, uniform(&c, 2 * n, 1, 0, 0.0, 1.0).unwrap().to_f32().unwrap());
    // And the same arguments repeat exactly.
    assert_eq!(first, draw(1, 0));
}

/// A dropout mask whose (seed, offset) come from a table row (a compiled
/// step's) is the mask drawn by value, on the twin and the GPU, whichever
/// row and whatever the other rows hold; a row past the table is an error.
#[test]
fn a_mask_from_a_table_row_is_the_mask_by_value() {
    use wgrad_gpu_core::ops::random::{dropout_mask, dropout_mask_from, Counter};
    use wgrad_gpu_core::Buffer;
    let mut devs = vec![Device::cpu_reference(), Device::cpu()];
    if let Some((g, _)) = devices("a_mask_from_a_table_row_is_the_mask_by_value") {
        devs.push(g);
        // Past a small binding limit each window of the mask is a launch of its own.
        let windowed = Device::gpu().unwrap();
        windowed.set_max_binding_bytes(Some(4096)).unwrap();
        devs.push(windowed);
    }
    for dev in &devs {
        let mut words = vec![7u32; 4 * STREAMS.len()];
        for (r, &(seed, offset)) in STREAMS.iter().enumerate() {
            words[4 * r..4 * r + 4].copy_from_slice(&[
                seed as u32,
                (seed >> 32) as u32,
                offset as u32,
                (offset >> 32) as u32,
            ]);
        }
        let table = Buffer::from_u32(dev, &words).unwrap();
        for (row, &(seed, offset)) in STREAMS.iter().enumerate() {
            for n in [1, 5, 4096 + 3] {
                let by_value = dropout_mask(dev, n, 0.3, seed, offset).unwrap().to_u32().unwrap();
                let from_row = dropout_mask_from(dev, n, 0.3, Counter::Row { table: &table, row }).unwrap();
                assert_eq!(from_row.to_u32().unwrap(), by_value, "{}: row {row} n {n}", dev.name());
            }
        }
        let past = dropout_mask_from(dev, 4, 0.3, Counter::Row { table: &table, row: STREAMS.len() });
        assert!(past.is_err(), "{}: a row past the table is refused", dev.name());
    }
}

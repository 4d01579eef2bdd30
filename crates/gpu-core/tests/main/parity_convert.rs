//! Byte-to-float conversion: GPU vs CPU twin, and hand-checked values.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::convert::u8_to_f32;
use wgrad_gpu_core::{Buffer, Device};

#[test]
fn bytes_convert_per_channel_like_the_twin() {
    let Some((g, c)) = devices("bytes_convert_per_channel_like_the_twin") else { return };
    let mut r = rng(7);
    for (n, plane, mean, std) in [
        (1usize, 1usize, vec![0.0f32], vec![1.0f32]),
        (7, 7, vec![0.1307], vec![0.3081]),
        (3 * 33 * 2, 33, vec![0.49, 0.48, 0.45], vec![0.25, 0.24, 0.26]),
        (1023, 1, vec![0.5, 0.0, 0.25, 1.0], vec![0.5, 1.0, 2.0, 0.1]),
    ] {
        let bytes: Vec<u8> = (0..n).map(|_| r.below(256) as u8).collect();
        let (bg, bc) = (Buffer::from_bytes(&g, &bytes).unwrap(), Buffer::from_bytes(&c, &bytes).unwrap());
        let (yg, yc) = (u8_to_f32(&bg, n, plane, &mean, &std).unwrap(), u8_to_f32(&bc, n, plane, &mean, &std).unwrap());
        same(&format!("convert n={n}"), &yg, &yc, n, 1e-6, 1e-6);
    }
}

#[test]
fn conversion_values_and_errors() {
    let c = Device::cpu_reference();
    let x = Buffer::from_bytes(&c, &[0, 255, 51, 255]).unwrap();
    // Two channels of two pixels each.
    let y = u8_to_f32(&x, 4, 2, &[0.0, 0.5], &[1.0, 0.5]).unwrap().to_f32().unwrap();
    assert_eq!(y, vec![0.0, 1.0, (0.2 - 0.5) / 0.5, 1.0]);
    assert!(u8_to_f32(&x, 4, 2, &[0.0; 5], &[1.0; 5]).is_err());
    assert!(u8_to_f32(&x, 4, 2, &[0.0], &[0.0]).is_err());
    assert!(u8_to_f32(&x, 5, 2, &[0.0], &[1.0]).is_err(), "reading past the bytes is an error");
}

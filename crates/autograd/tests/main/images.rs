//! Image-batch ops without gradient history (what the data crate's loader
//! and augmentations call): u8 upload + conversion, crop/flip, cutout,
//! normalisation; their generator accounting and their errors. The
//! augmentations' values against host twins are in crates/data/tests/main/augment.rs.

use crate::common;
use common::*;
use wgrad_autograd::{DType, Generator, Tensor};

#[test]
fn u8_images_scale_and_normalise_per_channel() {
    for dev in backends("u8_images_scale_and_normalise_per_channel") {
        let pixels: Vec<u8> = (0..2 * 2 * 3).map(|i| (i * 20) as u8).collect();
        let x = Tensor::try_from_u8_images(&pixels, [2, 2, 1, 3], &[0.5, 0.0], &[0.5, 2.0], &dev).unwrap();
        assert_eq!((x.dtype(), x.shape().to_vec(), x.requires_grad()), (DType::F32, vec![2, 2, 1, 3], false));
        let want: Vec<f32> = pixels
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let (m, s) = if i / 3 % 2 == 0 { (0.5, 0.5) } else { (0.0, 2.0) };
                (p as f32 / 255.0 - m) / s
            })
            .collect();
        wgrad_gpu_core::testing::assert_close(&dev.name(), &x.to_vec(), &want, 1e-6, 1e-6);
        let e = Tensor::try_from_u8_images(&pixels[1..], [2, 2, 1, 3], &[0.5, 0.0], &[0.5, 2.0], &dev).unwrap_err();
        assert!(e.to_string().contains("from_u8_images") && e.to_string().contains("11 pixels"), "{e}");
    }
}

#[test]
fn augmentations_are_constants_that_advance_the_generator() {
    for dev in backends("augmentations_are_constants_that_advance_the_generator") {
        let x = rand(&[3, 2, 5, 4], 1, -1.0, 1.0, &dev).requires_grad_();
        let mut gen = Generator::new(4);
        // No shift and no flip, no hole: the identity, drawing N counters each.
        let same = x.try_random_crop_flip(0, 0.0, &mut gen).unwrap().try_cutout(0, &mut gen).unwrap();
        assert_eq!(gen.offset, 2 * Tensor::augment_counters(3));
        assert!(!same.requires_grad(), "augmented batches have no gradient history");
        assert_eq!(same.to_vec(), x.to_vec(), "{}", dev.name());
        let moved = x.try_random_crop_flip(2, 0.5, &mut gen).unwrap();
        assert_ne!(moved.to_vec(), x.to_vec(), "{}: a crop/flip changes something", dev.name());
        let n = x.try_normalize_channels(&[1.0, -1.0], &[2.0, 4.0]).unwrap().to_vec();
        let want: Vec<f32> = x
            .to_vec()
            .iter()
            .enumerate()
            .map(|(i, v)| if i / 20 % 2 == 0 { (v - 1.0) / 2.0 } else { (v + 1.0) / 4.0 })
            .collect();
        wgrad_gpu_core::testing::assert_close(&dev.name(), &n, &want, 1e-6, 1e-6);
        let e = x.reshape(&[6, 5, 4]).try_cutout(2, &mut gen).unwrap_err().to_string();
        assert!(e.contains("cutout") && e.contains("[N, C, H, W]") && e.contains("[6, 5, 4]"), "{e}");
    }
}

/// `Generator::take` reserves counters; `next_block` reads one block on the
/// host, the same words for the same state.
#[test]
fn generator_counters_are_reserved_and_read_on_the_host() {
    let mut a = Generator::new(11);
    assert_eq!(a.take(5), 0);
    assert_eq!(a.offset, 5);
    let mut b = a;
    let (wa, wb) = (a.next_block(), b.next_block());
    assert_eq!((wa, a.offset), (wb, 6));
    assert_ne!(a.next_block(), wa, "the next block differs");
}

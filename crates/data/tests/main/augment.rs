//! The augmentation pipeline and mixup: reproducible from a seed, fresh per
//! batch, identical on GPU and CPU, and mixup's outputs are convex combinations.

use wgrad_autograd::{CrossEntropyOptions, Device, Generator, Tensor};
use wgrad_data::{mixup, Augment};
use wgrad_gpu_core::testing::{backends as devices, Rng};

const SHAPE: [usize; 4] = [4, 3, 16, 16];

fn batch(device: &Device, seed: u64) -> (Vec<f32>, Tensor) {
    let x = Rng::new(seed).vec(SHAPE.iter().product(), 0.0, 1.0);
    let t = Tensor::from_vec(&x, &SHAPE, device);
    (x, t)
}

fn pipeline() -> Augment {
    Augment::new().crop_flip(4, 0.5).normalize(&[0.49, 0.48, 0.45], &[0.25, 0.24, 0.26]).cutout(8)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn same_seed_same_augmentation_on_every_backend() {
    let mut results = Vec::new();
    for d in devices("same_seed_same_augmentation_on_every_backend") {
        let (_, x) = batch(&d, 1);
        let (mut g1, mut g2) = (Generator::new(42), Generator::new(42));
        let (a, b) = (pipeline().apply(&x, &mut g1), pipeline().apply(&x, &mut g2));
        assert_eq!(a.shape(), SHAPE.to_vec());
        assert_eq!(bits(&a), bits(&b), "same seed on {}", d.name());
        assert_eq!(g1, g2);
        assert_eq!(g1.offset, 2 * SHAPE[0] as u64, "crop+flip and cutout each take one counter per image");
        results.push(bits(&a));
    }
    if let [cpu, gpu] = &results[..] {
        assert_eq!(cpu, gpu, "GPU and CPU make the same decisions");
    }
}

#[test]
fn consecutive_batches_and_seeds_differ() {
    let d = Device::cpu();
    let (_, x) = batch(&d, 2);
    let mut gen = Generator::new(5);
    let first = pipeline().apply(&x, &mut gen).to_vec();
    let second = pipeline().apply(&x, &mut gen).to_vec();
    assert_ne!(first, second, "the generator advances between batches");
    let other = pipeline().apply(&x, &mut Generator::new(6)).to_vec();
    assert_ne!(first, other, "another seed, other decisions");
}

#[test]
fn the_empty_pipeline_is_the_identity_and_normalize_alone_is_affine() {
    let d = Device::cpu();
    let (raw, x) = batch(&d, 3);
    let mut gen = Generator::new(1);
    assert_eq!(Augment::new().apply(&x, &mut gen).to_vec(), raw);
    assert_eq!(gen.offset, 0, "no random step, no counters used");
    let y = Augment::new().normalize(&[0.5, 0.0, 1.0], &[0.5, 1.0, 2.0]).apply(&x, &mut gen).to_vec();
    let plane = SHAPE[2] * SHAPE[3];
    for (i, (&got, &v)) in y.iter().zip(&raw).enumerate() {
        let (m, s) = [(0.5, 0.5), (0.0, 1.0), (1.0, 2.0)][(i / plane) % 3];
        assert!((got - (v - m) / s).abs() < 1e-6, "element {i}: {got} vs {}", (v - m) / s);
    }
}

#[test]
fn mixup_targets_sum_to_one_and_images_are_convex_combinations() {
    for d in devices("mixup_targets_sum_to_one_and_images_are_convex_combinations") {
        let (raw, x) = batch(&d, 4);
        let labels = [3u32, 0, 9, 3];
        let y = Tensor::from_u32(&labels, &[4], &d);
        let mut gen = Generator::new(11);
        let m = mixup(&x, &y, 10, 0.4, &mut gen);
        assert!((0.0..=1.0).contains(&m.lambda));
        let mut sorted = m.perm.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3], "a permutation of the batch");
        let (t, l) = (m.targets.to_vec(), m.lambda);
        assert_eq!(m.targets.shape(), vec![4, 10]);
        for (i, row) in t.chunks(10).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "row {i} sums to {}", row.iter().sum::<f32>());
            for (k, &p) in row.iter().enumerate() {
                let want = l * (labels[i] == k as u32) as u32 as f32
                    + (1.0 - l) * (labels[m.perm[i] as usize] == k as u32) as u32 as f32;
                assert!((p - want).abs() < 1e-6, "target ({i}, {k}): {p} vs {want}");
            }
        }
        let img = SHAPE[1] * SHAPE[2] * SHAPE[3];
        for (j, &got) in m.images.to_vec().iter().enumerate() {
            let (i, e) = (j / img, j % img);
            let (a, b) = (raw[j], raw[m.perm[i] as usize * img + e]);
            assert!((got - (l * a + (1.0 - l) * b)).abs() < 1e-6, "pixel {j}");
            assert!(got >= a.min(b) - 1e-6 && got <= a.max(b) + 1e-6, "pixel {j} between its sources");
        }
        // Usable as cross_entropy probability targets.
        let logits = Tensor::from_vec(&Rng::new(9).vec(40, -1.0, 1.0), &[4, 10], &d);
        assert!(logits.cross_entropy(&m.targets, &CrossEntropyOptions::default()).item().is_finite());
        // The same generator state repeats the draw; the advanced one does not.
        let again = mixup(&x, &y, 10, 0.4, &mut Generator::new(11));
        assert_eq!((again.lambda, &again.perm), (m.lambda, &m.perm));
        assert_ne!(gen.offset, 0, "mixup advances the generator");
        let next = mixup(&x, &y, 10, 0.4, &mut gen);
        assert!(next.lambda != m.lambda || next.perm != m.perm);
    }
}

#[test]
fn mixup_takes_probability_targets_and_alpha_zero_does_not_mix() {
    let d = Device::cpu();
    let (raw, x) = batch(&d, 5);
    let probs = Tensor::from_vec(&[0.5, 0.5, 0.0, 1.0, 0.2, 0.8, 1.0, 0.0], &[4, 2], &d);
    let m = mixup(&x, &probs, 2, 0.0, &mut Generator::new(3));
    assert_eq!(m.lambda, 1.0);
    assert_eq!(m.images.to_vec(), raw);
    for row in m.targets.to_vec().chunks(2) {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-6);
    }
}

#[test]
fn mixup_lambda_follows_beta() {
    // Beta(a, a) has mean 1/2 and variance 1 / (4 (2a + 1)).
    let d = Device::cpu();
    let x = Tensor::zeros(&[1, 1, 1, 1], &d);
    let y = Tensor::from_u32(&[0], &[1], &d);
    for alpha in [0.2f32, 1.0, 4.0] {
        let mut gen = Generator::new(17);
        let l: Vec<f64> = (0..600).map(|_| mixup(&x, &y, 2, alpha, &mut gen).lambda as f64).collect();
        let mean = l.iter().sum::<f64>() / l.len() as f64;
        let var = l.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / l.len() as f64;
        let want = 1.0 / (4.0 * (2.0 * alpha as f64 + 1.0));
        assert!((mean - 0.5).abs() < 0.04, "alpha {alpha}: mean {mean}");
        assert!((var - want).abs() < 0.2 * want, "alpha {alpha}: variance {var}, want {want}");
    }
}

//! The CIFAR-10/100 binary readers on small generated files, broken files,
//! and the synthetic CIFAR-shaped dataset.

use std::path::{Path, PathBuf};

use wgrad_data::cifar::{self, Label100, Split};
use wgrad_data::DataError;

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-cifar-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A record: label bytes, then a recognisable image (pixel = seed + position).
fn record(labels: &[u8], seed: u8) -> Vec<u8> {
    let mut r = labels.to_vec();
    r.extend((0..cifar::IMAGE_BYTES).map(|i| seed.wrapping_add((i % 251) as u8)));
    r
}

fn write(dir: &Path, name: &str, records: &[Vec<u8>]) {
    std::fs::write(dir.join(name), records.concat()).unwrap();
}

#[test]
fn cifar10_reads_batches_in_order_as_planar_rgb() {
    let d = tmp("c10");
    for b in 1..=5u8 {
        write(&d, &format!("data_batch_{b}.bin"), &[record(&[b], b), record(&[9], 100 + b)]);
    }
    write(&d, "test_batch.bin", &[record(&[3], 7)]);
    let train = cifar::load_cifar10(&d, Split::Train).unwrap();
    assert_eq!((train.len(), train.item_shape, train.classes), (10, [3, 32, 32], 10));
    assert_eq!(train.labels, vec![1, 9, 2, 9, 3, 9, 4, 9, 5, 9]);
    assert_eq!(train.image(2), &record(&[2], 2)[1..]);
    // The R plane comes first: byte 1024 is the first green pixel.
    assert_eq!(train.image(0)[1024], 1u8.wrapping_add((1024 % 251) as u8));
    let test = cifar::load_cifar10(&d, Split::Test).unwrap();
    assert_eq!((test.len(), test.labels[0]), (1, 3));
    // The parent of `cifar-10-batches-bin` works too.
    let parent = tmp("c10-parent");
    std::fs::rename(&d, parent.join("cifar-10-batches-bin")).unwrap();
    assert_eq!(cifar::load_cifar10(&parent, Split::Test).unwrap().labels, vec![3]);
}

#[test]
fn cifar100_keeps_coarse_or_fine_labels() {
    let d = tmp("c100");
    write(&d, "train.bin", &[record(&[19, 99], 1), record(&[0, 42], 2), record(&[5, 7], 3)]);
    write(&d, "test.bin", &[record(&[4, 50], 4)]);
    let fine = cifar::load_cifar100(&d, Split::Train, Label100::Fine).unwrap();
    assert_eq!((fine.labels.clone(), fine.classes), (vec![99, 42, 7], 100));
    let coarse = cifar::load_cifar100(&d, Split::Train, Label100::Coarse).unwrap();
    assert_eq!((coarse.labels.clone(), coarse.classes), (vec![19, 0, 5], 20));
    assert_eq!(coarse.image(1), &record(&[0, 42], 2)[2..]);
    assert_eq!(cifar::load_cifar100(&d, Split::Test, Label100::Fine).unwrap().labels, vec![50]);
}

fn expect_format(e: DataError, file: &str, needle: &str) {
    let msg = e.to_string();
    assert!(matches!(e, DataError::Format { .. }), "{msg}");
    assert!(msg.contains(file) && msg.contains(needle), "{msg}");
}

#[test]
fn broken_cifar_files_are_errors_naming_the_file() {
    let d = tmp("trunc");
    let mut bytes = record(&[1], 0);
    bytes.extend_from_slice(&record(&[2], 0)[..1000]);
    std::fs::write(d.join("test_batch.bin"), bytes).unwrap();
    expect_format(cifar::load_cifar10(&d, Split::Test).unwrap_err(), "test_batch.bin", "not a multiple");

    let d = tmp("label10");
    write(&d, "test_batch.bin", &[record(&[1], 0), record(&[10], 0)]);
    expect_format(cifar::load_cifar10(&d, Split::Test).unwrap_err(), "test_batch.bin", "label 10 (byte 0) of record 1");

    let d = tmp("label100");
    write(&d, "train.bin", &[record(&[20, 3], 0)]);
    expect_format(
        cifar::load_cifar100(&d, Split::Train, Label100::Fine).unwrap_err(),
        "train.bin",
        "out of range 0..20",
    );
    write(&d, "test.bin", &[record(&[2, 100], 0)]);
    expect_format(
        cifar::load_cifar100(&d, Split::Test, Label100::Fine).unwrap_err(),
        "test.bin",
        "out of range 0..100",
    );

    let d = tmp("empty");
    std::fs::write(d.join("test_batch.bin"), []).unwrap();
    expect_format(cifar::load_cifar10(&d, Split::Test).unwrap_err(), "test_batch.bin", "empty");

    // Batches 1-2 present, 3 missing: the error names batch 3.
    let d = tmp("missing");
    write(&d, "data_batch_1.bin", &[record(&[1], 0)]);
    write(&d, "data_batch_2.bin", &[record(&[1], 0)]);
    let e = cifar::load_cifar10(&d, Split::Train).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("data_batch_3.bin"), "{e}");
}

#[test]
fn synthetic_is_reproducible_balanced_and_learnable() {
    let a = cifar::synthetic(400, 10, 1);
    assert_eq!((a.len(), a.item_shape, a.classes, a.images.len()), (400, [3, 32, 32], 10, 400 * 3072));
    assert_eq!(a.images, cifar::synthetic(400, 10, 1).images);
    assert_ne!(a.images, cifar::synthetic(400, 10, 2).images);
    for k in 0..10 {
        assert_eq!(a.labels.iter().filter(|&&l| l == k).count(), 40);
    }
    // Learnable: nearest class mean of the per-channel means, fitted on seed 1,
    // classifies a fresh seed almost perfectly.
    let feats = |d: &wgrad_data::ImageDataset, i: usize| -> [f32; 3] {
        std::array::from_fn(|c| d.image(i)[c * 1024..(c + 1) * 1024].iter().map(|&b| b as f32).sum::<f32>() / 1024.0)
    };
    let mut centre = [[0f32; 3]; 10];
    for i in 0..a.len() {
        let f = feats(&a, i);
        for c in 0..3 {
            centre[a.labels[i] as usize][c] += f[c] / 40.0;
        }
    }
    let b = cifar::synthetic(200, 10, 9);
    let correct = (0..b.len())
        .filter(|&i| {
            let f = feats(&b, i);
            let dist = |k: usize| (0..3).map(|c| (f[c] - centre[k][c]).powi(2)).sum::<f32>();
            (0..10).min_by(|&x, &y| dist(x).total_cmp(&dist(y))).unwrap() == b.labels[i] as usize
        })
        .count();
    assert!(correct >= 180, "{correct}/200 by nearest colour mean");
    // Not a constant image per class: items of one class differ.
    assert_ne!(a.image(0), a.image(10));
}

//! CIFAR-10 and CIFAR-100 in their binary distributions, and a CIFAR-shaped
//! synthetic dataset for offline smoke runs.
//!
//! `cifar-10-batches-bin` holds `data_batch_1.bin` .. `data_batch_5.bin` and
//! `test_batch.bin`, each a sequence of 3,073-byte records: one label byte and
//! 3,072 pixel bytes (the red plane, then green, then blue, 32x32 each row by
//! row), which is already the `[C, H, W]` layout of [`ImageDataset`].
//! `cifar-100-binary` holds `train.bin` and `test.bin` whose records carry two
//! label bytes (coarse, fine) before the same 3,072 pixel bytes.

use std::path::{Path, PathBuf};

pub use crate::mnist::Split;
use wgrad_autograd::HostRng;

use crate::{DataError, ImageDataset};

/// Pixel bytes of one CIFAR image.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// `[C, H, W]` of one CIFAR image.
pub const ITEM_SHAPE: [usize; 3] = [3, 32, 32];

/// CIFAR-10 class names in label order.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Which CIFAR-100 label to train on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label100 {
    /// The 20 superclasses (first label byte).
    Coarse,
    /// The 100 classes (second label byte).
    Fine,
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io { path: path.into(), source })
}

/// Parses CIFAR records: `label_bytes.len()` label bytes then [`IMAGE_BYTES`]
/// pixels. `label_bytes[i]` is the number of classes of label byte `i` (every
/// label byte is range-checked); the label kept is byte `keep`. Appends to
/// `images` and `labels`.
pub fn parse_records(
    path: &Path,
    bytes: &[u8],
    label_bytes: &[usize],
    keep: usize,
    images: &mut Vec<u8>,
    labels: &mut Vec<u32>,
) -> Result<(), DataError> {
    let record = label_bytes.len() + IMAGE_BYTES;
    if bytes.is_empty() {
        return Err(DataError::format(path, "empty file: expected CIFAR records"));
    }
    if !bytes.len().is_multiple_of(record) {
        return Err(DataError::format(
            path,
            format!(
                "truncated or not a CIFAR file: {} bytes is not a multiple of the {record}-byte record \
                 ({} whole records and {} bytes left over)",
                bytes.len(),
                bytes.len() / record,
                bytes.len() % record
            ),
        ));
    }
    images.reserve(bytes.len() / record * IMAGE_BYTES);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        for (b, &classes) in label_bytes.iter().enumerate() {
            let l = rec[b] as usize;
            if l >= classes {
                return Err(DataError::format(
                    path,
                    format!("label {l} (byte {b}) of record {i} is out of range 0..{classes}"),
                ));
            }
        }
        labels.push(u32::from(rec[keep]));
        images.extend_from_slice(&rec[label_bytes.len()..]);
    }
    Ok(())
}

/// `dir` itself when it holds `probe`, else `dir/sub` when that does: callers
/// may pass either the extracted folder or the cache folder above it.
fn resolve(dir: &Path, sub: &str, probe: &str) -> PathBuf {
    if !dir.join(probe).exists() && dir.join(sub).join(probe).exists() {
        dir.join(sub)
    } else {
        dir.to_path_buf()
    }
}

fn load(files: &[PathBuf], label_bytes: &[usize], keep: usize) -> Result<ImageDataset, DataError> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        parse_records(f, &read(f)?, label_bytes, keep, &mut images, &mut labels)?;
    }
    Ok(ImageDataset { images, labels, item_shape: ITEM_SHAPE, classes: label_bytes[keep] })
}

/// Loads one split of CIFAR-10 from `cifar-10-batches-bin` (or a folder that
/// contains it): 50,000 training or 10,000 test images, `[3, 32, 32]`.
pub fn load_cifar10(dir: &Path, split: Split) -> Result<ImageDataset, DataError> {
    let dir = resolve(dir, "cifar-10-batches-bin", "test_batch.bin");
    let files: Vec<PathBuf> = match split {
        Split::Train => (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect(),
        Split::Test => vec![dir.join("test_batch.bin")],
    };
    load(&files, &[10], 0)
}

/// Loads one split of CIFAR-100 from `cifar-100-binary` (or a folder that
/// contains it), labelled with the 20 coarse or the 100 fine classes.
pub fn load_cifar100(dir: &Path, split: Split, label: Label100) -> Result<ImageDataset, DataError> {
    let dir = resolve(dir, "cifar-100-binary", "test.bin");
    let file = dir.join(if split == Split::Train { "train.bin" } else { "test.bin" });
    load(&[file], &[20, 100], if label == Label100::Coarse { 0 } else { 1 })
}

/// `n` CIFAR-shaped images of `classes` balanced classes (item `i` has class
/// `i % classes`), reproducible from `seed`, for runs without the real data.
///
/// Each class has its own colour (hues spread around the wheel) and its own
/// stripe orientation and frequency; every image adds a random phase,
/// brightness and per-pixel noise, so the classes are learnable (a linear
/// model separates them well, a small CNN almost perfectly) without being a
/// lookup of a constant image.
pub fn synthetic(n: usize, classes: usize, seed: u64) -> ImageDataset {
    assert!(classes > 0, "cifar::synthetic: classes must be positive");
    let mut rng = HostRng::new(seed ^ 0xC1FA_5EED);
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let k = i % classes;
        let hue = k as f32 / classes as f32;
        // Hue to RGB on the colour wheel, kept away from black and white.
        let rgb: [f32; 3] = std::array::from_fn(|c| {
            let x = (hue + c as f32 / 3.0).fract();
            0.25 + 0.5 * (0.5 + 0.5 * (std::f32::consts::TAU * x).cos())
        });
        let angle = std::f32::consts::PI * (k as f32 * 0.618_034).fract();
        let freq = 0.25 + 0.5 * ((k * 7 % classes) as f32 / classes as f32);
        let (dx, dy) = (angle.cos() * freq, angle.sin() * freq);
        let phase = rng.unit() * std::f32::consts::TAU;
        let brightness = 0.8 + 0.4 * rng.unit();
        for &base in &rgb {
            for y in 0..32 {
                for x in 0..32 {
                    let stripe = (dx * x as f32 + dy * y as f32 + phase).sin();
                    let noise = (rng.unit() - 0.5) * 0.3;
                    let v = base * brightness * (0.75 + 0.25 * stripe) + noise;
                    images.push((v.clamp(0.0, 1.0) * 255.0).round() as u8);
                }
            }
        }
        labels.push(k as u32);
    }
    ImageDataset { images, labels, item_shape: ITEM_SHAPE, classes }
}

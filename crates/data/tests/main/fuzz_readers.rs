//! Fuzzing every reader of outside data in this crate: MNIST IDX (plain and
//! gzipped), CIFAR binaries, image folders, text corpora, the download
//! resume state (`.part` files) and `.tar.gz` archives.
//!
//! Each property starts from a valid file, damages it (see
//! `common/fuzz.rs`), and calls the public reader. Every outcome must be a
//! usable result or an error naming the damaged file; never a panic, a hang
//! or an allocation out of proportion to the bytes on disk. The tests after
//! the properties keep the inputs that once broke a reader.

use crate::common;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::download::{gzip, ranged, serve_until, tar};
use common::fuzz::{apply, assert_names, assert_proportionate, config, damage, guarded};
use proptest::prelude::*;
use wgrad_data::cifar::{self, Label100};
use wgrad_data::download::{self, Checksum, Source};
use wgrad_data::image_folder::{Color, ImageFolder};
use wgrad_data::mnist::{self, Split};
use wgrad_data::{text, DataError, ImageDataset};

/// A fresh, empty folder for one case.
fn case_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("wgrad-fuzz-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What a loaded dataset must satisfy for its users not to panic later:
/// the bytes are exactly `len` whole items and every label is a class.
fn assert_consistent(ds: &ImageDataset) {
    assert!(ds.item_bytes() > 0, "items of zero bytes: {:?}", ds.item_shape);
    assert_eq!(ds.images.len(), ds.len() * ds.item_bytes(), "{} items of {:?}", ds.len(), ds.item_shape);
    assert!(ds.labels.iter().all(|&l| (l as usize) < ds.classes), "a label is not one of {} classes", ds.classes);
}

/// Checks a reader's outcome: `Ok` passes `check`; an error is a file error
/// (not a download or device one) whose message names `file`.
/// An image folder of [5, 4] images listed and decoded (the lazy folder's
/// decode is the one its loader workers run).
fn load_folder(root: &Path, color: Color) -> Result<(ImageFolder, ImageDataset), DataError> {
    let folder = ImageFolder::open(root, [5, 4], color)?;
    let dataset = folder.to_memory()?;
    Ok((folder, dataset))
}

fn check_outcome<T>(result: Result<T, DataError>, file: &Path, check: impl FnOnce(T)) {
    match result {
        Ok(v) => check(v),
        Err(e) => {
            assert!(matches!(e, DataError::Format { .. } | DataError::Io { .. }), "{e:?}");
            assert_names(&e.to_string(), file);
        }
    }
}

/// An IDX file of unsigned bytes.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// Where the damage goes in a gzipped file: into the IDX bytes before
/// compression (the parser sees it) or into the compressed stream (the
/// decoder sees it).
#[derive(Clone, Copy, Debug)]
enum Gz {
    Plain,
    Inside,
    Outside,
}

/// Writes the train split of a 3-image 4x5 MNIST with one file damaged;
/// returns that file and the bytes written in all.
fn write_mnist(dir: &Path, damage_labels: bool, gz: Gz, d: &common::fuzz::Damage) -> (PathBuf, usize) {
    let images = idx(&[3, 4, 5], &(0..60).collect::<Vec<u8>>());
    let labels = idx(&[3], &[1, 7, 9]);
    let (victim, intact, victim_stem, intact_stem) = if damage_labels {
        (labels, images, "train-labels-idx1-ubyte", "train-images-idx3-ubyte")
    } else {
        (images, labels, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    };
    let (bytes, name) = match gz {
        Gz::Plain => (apply(&victim, d), victim_stem.to_string()),
        Gz::Inside => (gzip(&apply(&victim, d)), format!("{victim_stem}.gz")),
        Gz::Outside => (apply(&gzip(&victim), d), format!("{victim_stem}.gz")),
    };
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    std::fs::write(dir.join(intact_stem), &intact).unwrap();
    (path, bytes.len() + intact.len())
}

/// A small RGB image with some structure, encoded as PNG or JPEG.
fn encoded_image(format: image::ImageFormat) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(12, 9, |x, y| image::Rgb([(x * 20) as u8, (y * 25) as u8, ((x * y) % 256) as u8]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Text with multi-byte characters, so damage can split one.
const TEXT: &str = "Wherefore art thou, “Romeo”? Où est l'été — 日本語. ";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_mnist_idx(
        damage_labels in any::<bool>(),
        gz in prop::sample::select(vec![Gz::Plain, Gz::Inside, Gz::Outside]),
        d in damage(),
    ) {
        let dir = case_dir("mnist");
        let (victim, bytes) = write_mnist(&dir, damage_labels, gz, &d);
        let load_dir = dir.clone();
        let (result, largest) = guarded(move || mnist::load(&load_dir, Split::Train));
        // Decompression legitimately expands (deflate at most ~1032:1, a
        // growing Vec at most doubles that); the header must not add to it.
        let factor = if matches!(gz, Gz::Plain) { 8 } else { 2 * 1032 + 8 };
        assert_proportionate("mnist::load", largest, bytes, factor);
        check_outcome(result, &victim, |ds| {
            assert_consistent(&ds);
            assert_eq!(ds.classes, 10);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fuzz_cifar_binaries(cifar100 in any::<bool>(), fine in any::<bool>(), d in damage()) {
        let dir = case_dir("cifar");
        let labels: &[u8] = if cifar100 { &[3, 42] } else { &[7] };
        let record: Vec<u8> = labels.iter().copied().chain((0..cifar::IMAGE_BYTES).map(|i| (i % 251) as u8)).collect();
        let file = dir.join(if cifar100 { "test.bin" } else { "test_batch.bin" });
        let bytes = apply(&record.repeat(2), &d);
        std::fs::write(&file, &bytes).unwrap();
        let load_dir = dir.clone();
        let (result, largest) = guarded(move || {
            let label = if fine { Label100::Fine } else { Label100::Coarse };
            if cifar100 {
                cifar::load_cifar100(&load_dir, Split::Test, label)
            } else {
                cifar::load_cifar10(&load_dir, Split::Test)
            }
        });
        assert_proportionate("cifar::load", largest, bytes.len(), 8);
        check_outcome(result, &file, |ds| {
            assert_consistent(&ds);
            assert_eq!(ds.item_shape, cifar::ITEM_SHAPE);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fuzz_image_folder(jpeg in any::<bool>(), gray in any::<bool>(), d in damage()) {
        let dir = case_dir("images");
        let (format, name) = if jpeg { (image::ImageFormat::Jpeg, "x.jpg") } else { (image::ImageFormat::Png, "x.png") };
        let file = dir.join("class").join(name);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let bytes = apply(&encoded_image(format), &d);
        std::fs::write(&file, &bytes).unwrap();
        let color = if gray { Color::Gray } else { Color::Rgb };
        let root = dir.clone();
        let (result, largest) = guarded(move || load_folder(&root, color));
        // PNG packs at most 8 pixels a byte and deflate expands at most
        // 1032:1; decoding to 8-byte RGBA16 pixels is the most a decoder
        // may then hold for them.
        assert_proportionate("ImageFolder::to_memory", largest, bytes.len(), 8 * 1032 * 8);
        check_outcome(result, &file, |(f, dataset)| {
            assert_consistent(&dataset);
            assert_eq!(dataset.item_shape, [if gray { 1 } else { 3 }, 5, 4]);
            assert_eq!(f.files, vec![file.clone()]);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fuzz_text_corpus(d in damage()) {
        let dir = case_dir("text");
        let file = dir.join("corpus.txt");
        let bytes = apply(TEXT.repeat(3).as_bytes(), &d);
        std::fs::write(&file, &bytes).unwrap();
        let path = file.clone();
        let (result, largest) = guarded(move || text::read_text(&path));
        assert_proportionate("text::read_text", largest, bytes.len(), 4);
        // UTF-8 or not is all there is to get wrong here.
        prop_assert_eq!(result.is_ok(), std::str::from_utf8(&bytes).is_ok());
        check_outcome(result, &file, |t| assert_eq!(t.as_bytes(), &bytes[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A damaged `.part` (what a previous, interrupted download left) never
    /// ends as a wrong file: the download either completes with the right
    /// bytes or fails naming the file, and a retry then succeeds.
    #[test]
    fn fuzz_download_resume_state(kept in 0usize..=3000, d in damage()) {
        let body: Vec<u8> = (0..3000u32).map(|i| (i * 31 % 251) as u8).collect();
        let cache = case_dir("resume");
        let part = cache.join("blob.bin.part");
        std::fs::write(&part, apply(&body[..kept], &d)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let served = body.clone();
        let (url, server) = serve_until(2, stop.clone(), move |head| ranged(&served, head));
        let source = Source::new(format!("{url}/blob.bin"), Checksum::sha256(&body));
        let (src, dir) = (source.clone(), cache.clone());
        let (first, _) = guarded(move || download::download(&src, &dir));
        let done = match first {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains("blob.bin.part") || msg.contains(&source.url), "{}", msg);
                prop_assert!(!cache.join("blob.bin").exists(), "a failed download left a file: {}", msg);
                let (src, dir) = (source.clone(), cache.clone());
                guarded(move || download::download(&src, &dir)).0.expect("the retry after a bad .part")
            }
        };
        prop_assert_eq!(std::fs::read(&done).unwrap(), body);
        prop_assert!(!part.exists());
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn fuzz_tar_gz_archives(damage_inside in any::<bool>(), d in damage()) {
        let cache = case_dir("archive");
        let files: Vec<(String, Vec<u8>)> =
            vec![("top/a.bin".into(), vec![1; 700]), ("top/sub/b.txt".into(), b"hello".to_vec())];
        let archive = cache.join("x.tar.gz");
        let bytes = if damage_inside { gzip(&apply(&tar(&files), &d)) } else { apply(&gzip(&tar(&files)), &d) };
        std::fs::write(&archive, &bytes).unwrap();
        let dest = cache.join("out");
        let (a, o) = (archive.clone(), dest.clone());
        let (result, largest) = guarded(move || download::extract_tar_gz(&a, &o));
        assert_proportionate("extract_tar_gz", largest, bytes.len(), 8);
        check_outcome(result, &archive, |()| assert!(dest.is_dir()));
        // Staging folders are hidden siblings; none may survive either way.
        let leftovers: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        prop_assert!(leftovers.is_empty(), "{:?}", leftovers);
        std::fs::remove_dir_all(&cache).unwrap();
    }
}

// Inputs the properties found, kept as fixed regression tests.

/// Writes a train split whose images file is `images` and whose labels fit it.
fn mnist_with_images(tag: &str, images: &[u8], items: u32) -> PathBuf {
    let dir = case_dir(tag);
    std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx(&[items], &vec![1; items as usize])).unwrap();
    dir
}

#[test]
fn mnist_sizes_whose_product_overflows_are_an_error() {
    // 2^22 · 2^21 · 2^21 = 2^64: the unchecked product panicked in debug
    // builds and wrapped to 0 (a "valid" empty file) in release builds.
    let dir = mnist_with_images("overflow", &idx(&[1 << 22, 1 << 21, 1 << 21], &[0; 60]), 3);
    let e = mnist::load(&dir, Split::Train).unwrap_err().to_string();
    let file = dir.join("train-images-idx3-ubyte");
    assert_eq!(
        e,
        format!(
            "{}: truncated: header promises [4194304, 2097152, 2097152] = more than 2^64 bytes, file has 60",
            file.display()
        )
    );
}

#[test]
fn mnist_images_of_zero_pixels_are_an_error() {
    // Loaded as a dataset of 0-byte items, which later code divides by.
    let dir = mnist_with_images("zero", &idx(&[3, 0, 5], &[]), 3);
    let e = mnist::load(&dir, Split::Train).unwrap_err().to_string();
    let file = dir.join("train-images-idx3-ubyte");
    assert_eq!(e, format!("{}: images of 0x5 pixels: both sizes must be positive", file.display()));
}

#[test]
fn jpeg_header_claiming_more_pixels_than_the_file_holds_is_an_error() {
    let mut jpeg = encoded_image(image::ImageFormat::Jpeg);
    // SOF0: marker, length (2), precision (1), height (2), width (2).
    let sof = jpeg.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x0f, 0xa0, 0x0f, 0xa0]);
    let dir = case_dir("bigjpeg");
    let file = dir.join("class").join("x.jpg");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &jpeg).unwrap();
    let root = dir.clone();
    // The decoder used to allocate the 4000x4000 RGB image (48 MB) first.
    let (result, largest) = guarded(move || load_folder(&root, Color::Rgb));
    let e = result.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: the header says 4000x4000 pixels, more than a {}-byte PNG or JPEG can hold (damaged header?)",
            file.display(),
            jpeg.len()
        )
    );
    assert!(largest < 1 << 20, "{largest}");
}

#[test]
fn the_guard_measures_allocations() {
    // The allocation checks of the properties must be able to fail.
    let (len, largest) = guarded(|| vec![1u8; 8 << 20].len());
    assert!(largest >= len, "{largest} < {len}");
    let too_much = std::panic::catch_unwind(|| assert_proportionate("test", largest, 100, 8));
    assert!(too_much.is_err());
    assert_proportionate("test", largest, 8 << 20, 1);
}

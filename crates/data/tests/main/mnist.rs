//! The MNIST reader on the bundled data and on broken files, and the loader.

use std::sync::Arc;

use wgrad_autograd::Device;
use wgrad_data::mnist::{self, Split};
use wgrad_data::{DataError, DataLoader};

#[test]
fn bundled_mnist_10k_loads() {
    let train = mnist::load(&mnist::bundled_dir(), Split::Train).unwrap();
    let test = mnist::load(&mnist::bundled_dir(), Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (7996, 2004));
    assert_eq!(train.item_shape, [1, 28, 28]);
    for d in 0..10 {
        assert!(train.labels.iter().filter(|&&l| l == d).count() > 600, "every digit is present");
    }
    // Real strokes: mostly background with some ink in each image.
    let ink = train.image(0).iter().filter(|&&b| b > 128).count();
    assert!((50..400).contains(&ink), "{ink} inked pixels");
}

fn write_idx(dir: &std::path::Path, name: &str, dims: &[u32], data: &[u8], magic_type: u8) -> std::path::PathBuf {
    let mut bytes = vec![0, 0, magic_type, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-mnist-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let expect_err = |dir: &std::path::Path, needle: &str, file: &str| {
        let e = mnist::load(dir, Split::Train).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Format { .. } | DataError::Io { .. }));
        assert!(msg.contains(file) && msg.contains(needle), "{msg}");
    };
    let d = tmp("magic");
    write_idx(&d, "train-images-idx3-ubyte", &[2, 2, 2], &[0; 8], 0x09);
    write_idx(&d, "train-labels-idx1-ubyte", &[2], &[1, 2], 0x08);
    expect_err(&d, "wrong magic", "train-images-idx3-ubyte");

    let d = tmp("trunc");
    write_idx(&d, "train-images-idx3-ubyte", &[2, 2, 2], &[0; 5], 0x08);
    write_idx(&d, "train-labels-idx1-ubyte", &[2], &[1, 2], 0x08);
    expect_err(&d, "truncated", "train-images-idx3-ubyte");

    let d = tmp("label");
    write_idx(&d, "train-images-idx3-ubyte", &[2, 2, 2], &[0; 8], 0x08);
    write_idx(&d, "train-labels-idx1-ubyte", &[2], &[1, 12], 0x08);
    expect_err(&d, "label 12 of item 1 is out of range", "train-labels-idx1-ubyte");

    let d = tmp("missing");
    expect_err(&d, "", "train-images-idx3-ubyte");

    let d = tmp("gz");
    std::fs::write(d.join("train-images-idx3-ubyte.gz"), [0x1f, 0x8b, 8, 0, 1, 2]).unwrap();
    write_idx(&d, "train-labels-idx1-ubyte", &[2], &[1, 2], 0x08);
    expect_err(&d, "gzip", "train-images-idx3-ubyte.gz");
}

#[test]
fn loader_batches_shuffles_with_a_seed_and_converts_on_the_device() {
    let dev = Device::cpu();
    let ds = Arc::new(mnist::load(&mnist::bundled_dir(), Split::Test).unwrap());
    let loader = DataLoader::new(ds.clone(), 500, &dev).seed(3);
    assert_eq!(loader.num_batches(), 5);
    let batches: Vec<_> = loader.epoch(0).map(|b| b.unwrap()).collect();
    assert_eq!(batches.iter().map(|b| b.len).collect::<Vec<_>>(), vec![500, 500, 500, 500, 4]);
    assert_eq!(batches[0].images.shape(), vec![500, 1, 28, 28]);
    let pix = batches[0].images.to_vec();
    assert!(pix.iter().all(|v| (0.0..=1.0).contains(v)));
    // Every item exactly once per epoch.
    let mut seen: Vec<u32> = batches.iter().flat_map(|b| b.labels.to_vec_u32()).collect();
    let mut want = ds.labels.clone();
    seen.sort_unstable();
    want.sort_unstable();
    assert_eq!(seen, want);
    // Same seed and epoch: same order; another epoch: another order.
    let first = |e| loader.epoch(e).next().unwrap().unwrap().labels.to_vec_u32();
    assert_eq!(first(0), batches[0].labels.to_vec_u32());
    assert_ne!(first(1), first(0));
    let dropped = DataLoader::new(ds, 500, &dev).drop_last(true);
    assert_eq!(dropped.epoch(0).count(), 4);
}

#[test]
fn image_batches_do_not_depend_on_the_number_of_workers() {
    let ds = Arc::new(mnist::load(&mnist::bundled_dir(), Split::Test).unwrap());
    let epoch = |workers| -> Vec<(Vec<u32>, Vec<f32>)> {
        let loader = DataLoader::new(ds.clone(), 300, &Device::cpu()).seed(2).workers(workers);
        loader.epoch(1).map(|b| b.unwrap()).map(|b| (b.labels.to_vec_u32(), b.images.to_vec())).collect()
    };
    let one = epoch(1);
    assert_eq!(one.len(), 7);
    for workers in [2, 4] {
        // Not assert_eq: a mismatch would print millions of pixels.
        assert!(epoch(workers) == one, "{workers} workers give other batches than 1");
    }
}

#[test]
fn gpu_batches_match_cpu_batches() {
    let Some(gpu) = wgrad_gpu_core::testing::gpu_or_skip("gpu_batches_match_cpu_batches") else { return };
    let ds = Arc::new(mnist::load(&mnist::bundled_dir(), Split::Test).unwrap());
    let norm = |d: &Device| DataLoader::new(ds.clone(), 64, d).seed(1).normalize(&[0.1307], &[0.3081]);
    let (g, c) = (norm(&gpu).epoch(2).next().unwrap().unwrap(), norm(&Device::cpu()).epoch(2).next().unwrap().unwrap());
    assert_eq!(g.labels.to_vec_u32(), c.labels.to_vec_u32());
    wgrad_gpu_core::testing::assert_close("normalised pixels", &g.images.to_vec(), &c.images.to_vec(), 1e-6, 1e-6);
}

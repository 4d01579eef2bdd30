//! Image folders: class order, decoding, RGB/grey conversion, resizing,
//! errors naming the broken file, and lazy decoding in loader workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{Rgb, RgbImage, Rgba, RgbaImage};
use wgrad_autograd::Device;
use wgrad_data::image_folder::{Color, ImageFolder};
use wgrad_data::{DataError, DataLoader, Dataset, ImageSource};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgrad-imgfolder-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn solid(dir: &Path, name: &str, w: u32, h: u32, rgb: [u8; 3]) {
    std::fs::create_dir_all(dir).unwrap();
    RgbImage::from_pixel(w, h, Rgb(rgb)).save(dir.join(name)).unwrap();
}

#[test]
fn classes_are_sorted_folders_and_images_are_planar_resized() {
    let root = tmp("ok");
    // Created out of order: labels follow sorted names, not creation order.
    solid(&root.join("zebra"), "b.png", 4, 4, [0, 0, 255]);
    solid(&root.join("apple"), "2.png", 8, 6, [255, 0, 0]);
    solid(&root.join("apple"), "1.PNG", 2, 2, [0, 255, 0]);
    solid(&root.join("apple/nested"), "3.jpg", 16, 16, [200, 200, 200]);
    std::fs::write(root.join("apple/README.txt"), "not an image").unwrap();
    std::fs::write(root.join("zebra/.hidden.png"), "skipped").unwrap();
    std::fs::write(root.join("notes.txt"), "a file at the root is not a class").unwrap();
    // RGBA is converted to RGB by dropping alpha.
    RgbaImage::from_pixel(3, 5, Rgba([10, 20, 30, 0])).save(root.join("zebra/a.png")).unwrap();

    let f = ImageFolder::open(&root, [4, 3], Color::Rgb).unwrap();
    assert_eq!(f.class_names, vec!["apple", "zebra"]);
    let names: Vec<_> = f.files.iter().map(|p| p.strip_prefix(&root).unwrap().to_str().unwrap().to_string()).collect();
    assert_eq!(names, vec!["apple/1.PNG", "apple/2.png", "apple/nested/3.jpg", "zebra/a.png", "zebra/b.png"]);
    assert_eq!((f.len(), f.item_shape()), (5, [3, 4, 3]));
    let d = &f.to_memory().unwrap();
    assert_eq!((d.len(), d.item_shape, d.classes), (5, [3, 4, 3], 2));
    assert_eq!(d.labels, vec![0, 0, 0, 1, 1]);
    // Solid colours stay solid through resizing; channels are planes.
    let planes = |i: usize| -> Vec<Vec<u8>> { d.image(i).chunks(12).map(|p| p.to_vec()).collect() };
    assert_eq!(planes(0), vec![vec![0; 12], vec![255; 12], vec![0; 12]]);
    assert_eq!(planes(1), vec![vec![255; 12], vec![0; 12], vec![0; 12]]);
    assert_eq!(planes(3), vec![vec![10; 12], vec![20; 12], vec![30; 12]]);
    // JPEG is lossy: close to the grey it was written with.
    assert!(d.image(2).iter().all(|&v| v.abs_diff(200) <= 3), "{:?}", d.image(2));

    let g = ImageFolder::open(&root, [2, 2], Color::Gray).unwrap().to_memory().unwrap();
    assert_eq!(g.item_shape, [1, 2, 2]);
    // Pure blue has a small luma (Rec. 601: 0.114 * 255 ~ 29 in `image`'s integer weights).
    let blue = g.image(4)[0];
    assert!((15..40).contains(&blue), "luma of blue {blue}");
}

#[test]
fn a_pattern_survives_resizing() {
    // Left half black, right half white: after halving, the left column is dark
    // and the right one bright.
    let root = tmp("pattern");
    std::fs::create_dir_all(root.join("c")).unwrap();
    let img = RgbImage::from_fn(8, 8, |x, _| if x < 4 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) });
    img.save(root.join("c/p.png")).unwrap();
    let f = ImageFolder::open(&root, [4, 4], Color::Gray).unwrap().to_memory().unwrap();
    let px = f.image(0);
    for y in 0..4 {
        assert!(px[y * 4] < 40 && px[y * 4 + 3] > 215, "row {y}: {:?}", &px[y * 4..y * 4 + 4]);
    }
}

#[test]
fn broken_folders_are_errors_naming_the_file() {
    let root = tmp("corrupt");
    solid(&root.join("a"), "fine.png", 2, 2, [1, 2, 3]);
    std::fs::write(root.join("a/broken.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    // Listing does not decode: the broken file fails when it is read.
    let f = ImageFolder::open(&root, [2, 2], Color::Rgb).unwrap();
    let e = f.to_memory().unwrap_err();
    assert!(matches!(e, DataError::Format { .. }), "{e}");
    assert!(e.to_string().contains("broken.png") && e.to_string().contains("cannot decode"), "{e}");

    let root = tmp("emptyclass");
    solid(&root.join("a"), "x.png", 2, 2, [1, 2, 3]);
    std::fs::create_dir_all(root.join("b")).unwrap();
    let e = ImageFolder::open(&root, [2, 2], Color::Rgb).unwrap_err();
    assert!(e.to_string().starts_with(&format!("{}:", root.join("b").display())), "{e}");
    assert!(e.to_string().contains("no png/jpg/jpeg files"), "{e}");

    let root = tmp("noclasses");
    let e = ImageFolder::open(&root, [2, 2], Color::Rgb).unwrap_err();
    assert!(e.to_string().contains("no class sub-folders"), "{e}");

    let e = ImageFolder::open(&root.join("missing"), [2, 2], Color::Rgb).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("missing"), "{e}");
}

/// Twelve 5x6 images in three classes, each a solid colour of its own.
fn twelve_images(tag: &str) -> PathBuf {
    let root = tmp(tag);
    for i in 0..12u8 {
        solid(&root.join(format!("class{}", i % 3)), &format!("{i:02}.png"), 5, 6, [i * 20, 255 - i * 20, i]);
    }
    root
}

/// Pixels and labels of every batch of epoch 1, normalised, in batches of 5.
fn epoch_one<D: ImageSource + 'static>(dataset: Arc<D>, workers: usize) -> Vec<(Vec<f32>, Vec<u32>)> {
    let loader = DataLoader::new(dataset, 5, &Device::cpu()).seed(4).normalize(&[0.5; 3], &[0.2; 3]).workers(workers);
    loader.epoch(1).map(|b| b.unwrap()).map(|b| (b.images.to_vec(), b.labels.to_vec_u32())).collect()
}

#[test]
fn a_lazy_folder_decodes_in_the_workers_as_the_eager_one_does() {
    let root = twelve_images("lazy");
    let lazy = Arc::new(ImageFolder::open(&root, [3, 4], Color::Rgb).unwrap());
    let eager = Arc::new(lazy.to_memory().unwrap());
    assert_eq!(lazy.get(7).unwrap().pixels, eager.image(7));
    let want = epoch_one(eager, 1);
    assert_eq!(want.iter().map(|b| b.1.len()).collect::<Vec<_>>(), vec![5, 5, 2]);
    for workers in [0, 1, 3] {
        assert_eq!(epoch_one(lazy.clone(), workers), want, "{workers} workers");
    }
}

#[test]
fn a_file_that_does_not_decode_is_an_error_of_its_batch() {
    let root = twelve_images("lazybroken");
    // Sorted file order puts class1/04.png at index 5, in the second batch of 4.
    std::fs::write(root.join("class1/04.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let folder = Arc::new(ImageFolder::open(&root, [3, 4], Color::Rgb).unwrap());
    assert!(folder.files[5].ends_with("class1/04.png"));
    let loader = DataLoader::new(folder, 4, &Device::cpu()).shuffle(false).workers(2);
    let results: Vec<_> = loader.epoch(0).collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[2].is_ok());
    let e = results[1].as_ref().unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::Batch { batch: 1, .. }), "{msg}");
    assert!(msg.starts_with("batch 1: item 5: ") && msg.contains("04.png") && msg.contains("cannot decode"), "{msg}");
}

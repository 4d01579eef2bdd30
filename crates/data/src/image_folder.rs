//! Image folders laid out like torchvision's `ImageFolder`: one sub-folder per
//! class under a root, class indices in sorted folder-name order, PNG and JPEG
//! files anywhere below each class folder.
//!
//! [`ImageFolder::open`] only lists the files; items are decoded when a
//! [`DataLoader`](crate::DataLoader)'s workers ask for them (in parallel, and
//! without holding the decoded dataset in memory), or all at once by
//! [`ImageFolder::to_memory`].

use std::path::{Path, PathBuf};

use crate::{DataError, Dataset, ImageDataset, ImageItem, ImageSource};

/// Channels of the decoded images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// Three channels, R, G, B (alpha dropped, grey replicated).
    Rgb,
    /// One luma channel.
    Gray,
}

/// An image folder, listed but not decoded: a [`Dataset`] of
/// [`ImageItem`]s that decodes each file when it is read, resized to one
/// `[h, w]` and converted to one [`Color`].
#[derive(Clone, Debug)]
pub struct ImageFolder {
    /// Class folder names; label `i` is `class_names[i]`.
    pub class_names: Vec<String>,
    /// The file of each item, in item order.
    pub files: Vec<PathBuf>,
    /// The class of each item.
    pub labels: Vec<u32>,
    size: [usize; 2],
    color: Color,
}

/// File extensions read as images (compared case-insensitively); other files
/// (READMEs, `.DS_Store`, ...) are skipped, as torchvision does.
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io { path: path.into(), source }
}

/// Sorted entries of `dir` without hidden ones.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    for p in entries(dir)? {
        if p.is_dir() {
            collect_images(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// The most pixels one byte of a PNG or JPEG file can describe: PNG packs
/// at most 8 pixels a byte before deflate, which expands at most 1032:1;
/// JPEG spends at least one bit on every 8x8 block (512 pixels a byte).
pub const MAX_PIXELS_PER_BYTE: u64 = 8 * 1032;

/// Decodes one file into `[C, h, w]` bytes.
///
/// The size in the file's header is checked against the file's length
/// before anything is decoded, so a damaged or malicious header cannot make
/// the decoder allocate for an image the file cannot hold.
pub fn decode(path: &Path, size: [usize; 2], color: Color) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let cannot = |e: image::ImageError| DataError::format(path, format!("cannot decode image: {e}"));
    let reader = || -> Result<_, DataError> {
        let mut r = image::ImageReader::new(std::io::Cursor::new(&bytes[..]));
        if let Ok(f) = image::ImageFormat::from_path(path) {
            r.set_format(f);
        }
        // The contents decide when they name a format; the extension otherwise.
        r.with_guessed_format().map_err(io(path))
    };
    let (w, h) = reader()?.into_dimensions().map_err(cannot)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS_PER_BYTE * bytes.len() as u64 {
        return Err(DataError::format(
            path,
            format!(
                "the header says {w}x{h} pixels, more than a {}-byte PNG or JPEG can hold (damaged header?)",
                bytes.len()
            ),
        ));
    }
    let img = reader()?.decode().map_err(cannot)?;
    let [h, w] = size;
    let (h32, w32) = (h as u32, w as u32);
    // Triangle (bilinear) like torchvision's default Resize interpolation.
    let filter = image::imageops::FilterType::Triangle;
    let planar = |interleaved: &[u8], c: usize| -> Vec<u8> {
        (0..c).flat_map(|ch| interleaved.iter().skip(ch).step_by(c).copied()).collect()
    };
    Ok(match color {
        Color::Rgb => {
            let mut rgb = img.to_rgb8();
            if rgb.dimensions() != (w32, h32) {
                rgb = image::imageops::resize(&rgb, w32, h32, filter);
            }
            planar(rgb.as_raw(), 3)
        }
        Color::Gray => {
            let mut g = img.to_luma8();
            if g.dimensions() != (w32, h32) {
                g = image::imageops::resize(&g, w32, h32, filter);
            }
            g.into_raw()
        }
    })
}

impl ImageFolder {
    /// Lists every image under `root/<class>/`, to be decoded as
    /// `size = [h, w]` images of `color`. Folders without classes and class
    /// folders without images are errors naming the folder; files are not
    /// read yet, so a file that does not decode is an error of the batch
    /// that holds it.
    ///
    /// # Panics
    /// When `size` has a zero.
    pub fn open(root: &Path, size: [usize; 2], color: Color) -> Result<Self, DataError> {
        assert!(size[0] > 0 && size[1] > 0, "ImageFolder::open: size must be positive, got {size:?}");
        let class_dirs: Vec<PathBuf> = entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
        if class_dirs.is_empty() {
            return Err(DataError::format(root, "no class sub-folders"));
        }
        let mut class_names = Vec::new();
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (k, d) in class_dirs.iter().enumerate() {
            let before = files.len();
            collect_images(d, &mut files)?;
            if files.len() == before {
                return Err(DataError::format(d, format!("class folder has no {} files", EXTENSIONS.join("/"))));
            }
            labels.resize(files.len(), k as u32);
            class_names.push(d.file_name().unwrap_or_default().to_string_lossy().into_owned());
        }
        Ok(ImageFolder { class_names, files, labels, size, color })
    }

    /// Decodes every image, on this thread, into an in-memory dataset; a
    /// file that does not decode is an error naming it.
    pub fn to_memory(&self) -> Result<ImageDataset, DataError> {
        let item_shape = self.item_shape();
        let mut images = Vec::with_capacity(self.files.len() * item_shape.iter().product::<usize>());
        for f in &self.files {
            images.extend(decode(f, self.size, self.color)?);
        }
        Ok(ImageDataset { images, labels: self.labels.clone(), item_shape, classes: self.class_names.len() })
    }
}

impl Dataset for ImageFolder {
    type Item = ImageItem;

    fn len(&self) -> usize {
        self.files.len()
    }

    /// Decodes file `index`; panics when it is out of range.
    fn get(&self, index: usize) -> Result<ImageItem, DataError> {
        Ok(ImageItem { pixels: decode(&self.files[index], self.size, self.color)?, label: self.labels[index] })
    }
}

impl ImageSource for ImageFolder {
    fn item_shape(&self) -> [usize; 3] {
        let channels = match self.color {
            Color::Rgb => 3,
            Color::Gray => 1,
        };
        [channels, self.size[0], self.size[1]]
    }
}

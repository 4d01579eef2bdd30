//! MNIST in its (optionally gzipped) IDX format: the bundled MNIST-10k and
//! the full distribution share this reader.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{DataError, ImageDataset};

/// Where the bundled 10,000-digit sample lives (7,996 train, 2,004 test; see
/// its README for provenance and license).
pub fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/mnist-10k")
}

/// Which half of MNIST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `train-*-idx?-ubyte(.gz)`.
    Train,
    /// `t10k-*-idx?-ubyte(.gz)`.
    Test,
}

fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io { path: path.into(), source })?;
    gunzip(path, raw)
}

/// `raw` itself, or its gzip stream's contents (`path` names it in errors).
fn gunzip(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>, DataError> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::format(path, format!("gzip stream is corrupt or truncated: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

pub fn parse_idx_u8(path: &Path, bytes: &[u8], dims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(DataError::format(
            path,
            format!("truncated: {} bytes, the IDX header needs {header}", bytes.len()),
        ));
    }
    // Magic: two zero bytes, type 0x08 (unsigned byte), number of dims.
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] as usize != dims {
        return Err(DataError::format(
            path,
            format!(
                "wrong magic {:02x}{:02x}{:02x}{:02x}: expected 000008{dims:02x} (IDX, u8, {dims} dims)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let sizes: Vec<usize> =
        (0..dims).map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize).collect();
    let data = &bytes[header..];
    // Checked: three u32 sizes can overflow even a 64-bit product, and a
    // wrapped product would pass the length check with sizes that lie.
    match sizes.iter().try_fold(1usize, |n, &s| n.checked_mul(s)) {
        Some(n) if n <= data.len() => Ok((sizes, data[..n].to_vec())),
        n => Err(DataError::format(
            path,
            format!(
                "truncated: header promises {sizes:?} = {} bytes, file has {}",
                n.map_or("more than 2^64".to_string(), |n| n.to_string()),
                data.len()
            ),
        )),
    }
}

fn file(dir: &Path, stem: &str) -> PathBuf {
    let gz = dir.join(format!("{stem}.gz"));
    if gz.exists() {
        gz
    } else {
        dir.join(stem)
    }
}

/// Loads one split of MNIST from `dir` (gzipped or plain IDX files).
pub fn load(dir: &Path, split: Split) -> Result<ImageDataset, DataError> {
    let prefix = if split == Split::Train { "train" } else { "t10k" };
    let (ip, lp) =
        (file(dir, &format!("{prefix}-images-idx3-ubyte")), file(dir, &format!("{prefix}-labels-idx1-ubyte")));
    dataset(&ip, &read_file(&ip)?, &lp, &read_file(&lp)?)
}

/// A dataset from the bytes of an images file and a labels file (IDX,
/// gzipped or not), as a browser page fetches them: no file system.
pub fn from_bytes(images: &[u8], labels: &[u8]) -> Result<ImageDataset, DataError> {
    let (ip, lp) = (Path::new("<images bytes>"), Path::new("<labels bytes>"));
    dataset(ip, &gunzip(ip, images.to_vec())?, lp, &gunzip(lp, labels.to_vec())?)
}

fn dataset(ip: &Path, image_bytes: &[u8], lp: &Path, label_bytes: &[u8]) -> Result<ImageDataset, DataError> {
    let (isz, images) = parse_idx_u8(ip, image_bytes, 3)?;
    let (lsz, labels) = parse_idx_u8(lp, label_bytes, 1)?;
    if isz[1] == 0 || isz[2] == 0 {
        return Err(DataError::format(
            ip,
            format!("images of {}x{} pixels: both sizes must be positive", isz[1], isz[2]),
        ));
    }
    if isz[0] != lsz[0] {
        return Err(DataError::format(lp, format!("{} labels for {} images in {}", lsz[0], isz[0], ip.display())));
    }
    if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(DataError::format(lp, format!("label {l} of item {i} is out of range 0..=9")));
    }
    Ok(ImageDataset {
        images,
        labels: labels.into_iter().map(u32::from).collect(),
        item_shape: [1, isz[1], isz[2]],
        classes: 10,
    })
}

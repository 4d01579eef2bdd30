//! Downloads into a cache folder with checksums, resume and atomic completion,
//! and `.tar.gz` extraction into folders that appear atomically.
//!
//! A download goes to `<name>.part` next to its final name, is verified, and
//! only then renamed: whatever fails (connection, truncated transfer,
//! checksum) never leaves a file at the final name, so "the file exists" means
//! "the file is complete and verified". An interrupted `.part` is resumed with
//! an HTTP `Range` request; a `.part` whose checksum does not match is deleted.
//! Concurrent downloads of the same file into the same cache are not
//! coordinated (they may both restart each other's `.part`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use md5::Md5;
use sha2::{Digest, Sha256};

use crate::DataError;

/// The expected digest of a file, as lowercase or uppercase hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// SHA-256.
    Sha256(String),
    /// MD5: only what some official sites publish (CIFAR, MNIST); it guards
    /// against corrupt transfers, not against tampering.
    Md5(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Checksum {
    /// The SHA-256 of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Checksum {
        Checksum::Sha256(hex(&Sha256::digest(bytes)))
    }

    /// The MD5 of `bytes`.
    pub fn md5(bytes: &[u8]) -> Checksum {
        Checksum::Md5(hex(&Md5::digest(bytes)))
    }

    fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "sha256",
            Checksum::Md5(_) => "md5",
        }
    }

    fn expected(&self) -> &str {
        match self {
            Checksum::Sha256(h) | Checksum::Md5(h) => h,
        }
    }

    /// The hex digest of the file at `path` with this checksum's algorithm.
    pub fn digest_file(&self, path: &Path) -> Result<String, DataError> {
        let mut f = BufReader::new(File::open(path).map_err(io(path))?);
        let mut buf = vec![0u8; 1 << 16];
        let mut sha = Sha256::new();
        let mut md = Md5::new();
        loop {
            let n = f.read(&mut buf).map_err(io(path))?;
            if n == 0 {
                break;
            }
            match self {
                Checksum::Sha256(_) => sha.update(&buf[..n]),
                Checksum::Md5(_) => md.update(&buf[..n]),
            }
        }
        Ok(match self {
            Checksum::Sha256(_) => hex(&sha.finalize()),
            Checksum::Md5(_) => hex(&md.finalize()),
        })
    }

    /// Checks the file at `path`; a mismatch is a format error naming the
    /// file, the expected and the actual digest.
    pub fn verify(&self, path: &Path) -> Result<(), DataError> {
        let actual = self.digest_file(path)?;
        if actual.eq_ignore_ascii_case(self.expected()) {
            Ok(())
        } else {
            Err(DataError::format(
                path,
                format!("{} checksum mismatch: expected {}, actual {actual}", self.algorithm(), self.expected()),
            ))
        }
    }
}

/// A file to download: where from, what to call it, what it must hash to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// `http://` or `https://` URL.
    pub url: String,
    /// The file name in the cache folder.
    pub file_name: String,
    /// The expected digest.
    pub checksum: Checksum,
}

const MNIST_MIRROR: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";

impl Source {
    /// A source named after the last path segment of `url`.
    pub fn new(url: impl Into<String>, checksum: Checksum) -> Source {
        let url = url.into();
        let file_name = url.rsplit('/').next().unwrap_or_default().to_string();
        assert!(!file_name.is_empty(), "Source::new: {url} does not end in a file name");
        Source { url, file_name, checksum }
    }

    /// The official CIFAR-10 binary archive (md5 from the CIFAR site).
    pub fn cifar10() -> Source {
        Source::new(
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            Checksum::Md5("c32a1d4ab5d03f1284b67883e8d87530".into()),
        )
    }

    /// The official CIFAR-100 binary archive (md5 from the CIFAR site).
    pub fn cifar100() -> Source {
        Source::new(
            "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
            Checksum::Md5("03b5dce01913d631647c71ecec9e9cb8".into()),
        )
    }

    /// The four gzipped IDX files of full MNIST from the mirror torchvision
    /// uses, with torchvision's md5s.
    pub fn mnist() -> Vec<Source> {
        [
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ]
        .into_iter()
        .map(|(f, md5)| Source::new(format!("{MNIST_MIRROR}{f}"), Checksum::Md5(md5.into())))
        .collect()
    }
}

/// Where datasets are cached: `$WGRAD_DATA_DIR`, else `~/.cache/wgrad`, else
/// `./data` (no home directory, e.g. some containers).
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WGRAD_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("wgrad"),
        None => PathBuf::from("data"),
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io { path: path.into(), source }
}

pub(crate) fn remove_quietly(path: &Path) {
    // Cleanup after an error that is already being reported: a second error
    // here would only hide the first.
    let _ = std::fs::remove_file(path);
}

/// Downloads `source` into `dir` unless it is already there; returns the
/// path of the verified file. Nothing appears at that path unless the whole
/// file arrived and matched its checksum.
pub fn download(source: &Source, dir: &Path) -> Result<PathBuf, DataError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let dest = dir.join(&source.file_name);
    if dest.is_file() {
        return Ok(dest);
    }
    let part = dir.join(format!("{}.part", source.file_name));
    crate::fetch::fetch(&source.url, &part, &source.file_name)?;
    if let Err(e) = source.checksum.verify(&part) {
        remove_quietly(&part);
        return Err(e);
    }
    std::fs::rename(&part, &dest).map_err(io(&dest))?;
    Ok(dest)
}

fn unpack(archive: &Path, into: &Path) -> Result<(), DataError> {
    let file = File::open(archive).map_err(io(archive))?;
    // `unpack` refuses entries that would land outside `into` (`..`, absolute).
    tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)))
        .unpack(into)
        .map_err(|e| DataError::format(archive, format!("cannot extract into {}: {e}", into.display())))
}

fn staging(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    dest.with_file_name(format!(".{name}.extracting-{}", std::process::id()))
}

/// Renames `from` to `to`; losing a race to another process that created
/// `to` first is success.
fn publish(from: &Path, to: &Path) -> Result<(), DataError> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(_) if to.is_dir() => Ok(()),
        Err(e) => Err(DataError::Io { path: to.into(), source: e }),
    }
}

/// Extracts a `.tar.gz` so that `dest` appears at once holding its contents:
/// everything is unpacked into a hidden sibling folder first, then renamed.
pub fn extract_tar_gz(archive: &Path, dest: &Path) -> Result<(), DataError> {
    let tmp = staging(dest);
    let _ = std::fs::remove_dir_all(&tmp); // a leftover of a killed run of this pid
    let result = unpack(archive, &tmp).and_then(|()| publish(&tmp, dest));
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Makes `cache_dir/folder` exist: the top-level folder of the `.tar.gz` at
/// `source`, downloaded (and kept, so a re-extraction needs no network) and
/// extracted only when the folder is missing. The folder appears atomically.
pub fn ensure_archive(source: &Source, cache_dir: &Path, folder: &str) -> Result<PathBuf, DataError> {
    let dest = cache_dir.join(folder);
    if dest.is_dir() {
        return Ok(dest);
    }
    let archive = download(source, cache_dir)?;
    let tmp = staging(&dest);
    let _ = std::fs::remove_dir_all(&tmp);
    let result = unpack(&archive, &tmp).and_then(|()| {
        let inner = tmp.join(folder);
        if !inner.is_dir() {
            return Err(DataError::format(&archive, format!("the archive has no top-level folder {folder:?}")));
        }
        publish(&inner, &dest)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| dest)
}

/// `cache_dir/cifar-10-batches-bin`, downloaded and extracted when missing;
/// pass it to [`crate::cifar::load_cifar10`].
pub fn ensure_cifar10(cache_dir: &Path) -> Result<PathBuf, DataError> {
    ensure_archive(&Source::cifar10(), cache_dir, "cifar-10-batches-bin")
}

/// `cache_dir/cifar-100-binary`, downloaded and extracted when missing; pass
/// it to [`crate::cifar::load_cifar100`].
pub fn ensure_cifar100(cache_dir: &Path) -> Result<PathBuf, DataError> {
    ensure_archive(&Source::cifar100(), cache_dir, "cifar-100-binary")
}

/// `cache_dir/mnist` holding the four gzipped IDX files of full MNIST,
/// downloading those missing; pass it to [`crate::mnist::load`].
pub fn ensure_mnist(cache_dir: &Path) -> Result<PathBuf, DataError> {
    let dir = cache_dir.join("mnist");
    for s in Source::mnist() {
        download(&s, &dir)?;
    }
    Ok(dir)
}

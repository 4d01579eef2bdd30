//! Data errors: every one names the file and what is wrong with it.

use std::path::PathBuf;

/// Something wrong with a dataset file or folder.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file was read but its contents are not what the format says.
    #[error("{path}: {what}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong (wrong magic, truncated, label out of range, ...).
        what: String,
    },
    /// A download failed before anything was written (connection, HTTP
    /// status); failures while writing or verifying name the file instead.
    #[error("download {url}: {what}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        what: String,
    },
    /// A device error while uploading a batch.
    #[error(transparent)]
    Device(#[from] wgrad_gpu_core::Error),
}

impl DataError {
    pub(crate) fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        DataError::Format { path: path.into(), what: what.into() }
    }
}

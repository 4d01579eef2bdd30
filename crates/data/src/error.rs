//! Data errors: every one names the file, item or batch it is about.

use std::path::PathBuf;

/// Something wrong with a dataset file or folder, an item, or a batch.
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
    Device(#[from] wgrad_autograd::Error),
    /// Item `index` of a dataset could not be read (see
    /// [`Dataset::get_batch`](crate::Dataset::get_batch)).
    #[error("item {index}: {source}")]
    Item {
        /// The dataset index of the item.
        index: usize,
        /// Why.
        source: Box<DataError>,
    },
    /// Batch `batch` of an epoch failed: every error a
    /// [`DataLoader`](crate::DataLoader) epoch yields is one of these, so the
    /// caller knows which batch is missing.
    #[error("batch {batch}: {source}")]
    Batch {
        /// The position of the batch in its epoch, from 0.
        batch: usize,
        /// Why.
        source: Box<DataError>,
    },
    /// Reading or collating a batch panicked in a loader worker; the panic
    /// was caught there and its message kept.
    #[error("panicked: {message}")]
    Panic {
        /// The panic message.
        message: String,
    },
    /// Any other failure of a user's dataset or collate function (see
    /// [`DataError::other`]).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl DataError {
    pub(crate) fn format(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        DataError::Format { path: path.into(), what: what.into() }
    }

    /// Wraps any error, or a message (`DataError::other("bad row")`), for
    /// datasets and collate functions whose failures fit no other variant.
    pub fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        DataError::Other(e.into())
    }

    pub(crate) fn at_item(self, index: usize) -> Self {
        DataError::Item { index, source: Box::new(self) }
    }

    pub(crate) fn at_batch(self, batch: usize) -> Self {
        DataError::Batch { batch, source: Box::new(self) }
    }
}

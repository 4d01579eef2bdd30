//! # wgrad-data
//!
//! Datasets and data loading: the MNIST IDX reader (the bundled MNIST-10k is
//! the default dataset of the examples and end-to-end tests), in-memory image
//! datasets, and a [`DataLoader`] that shuffles with a seed, prepares batches
//! on a background thread and uploads them as bytes; character-level text
//! corpora for language models (the bundled Shakespeare tragedies).
//!
//! This crate must not know about models or training; it hands out tensors.

pub mod augment;
pub mod cifar;
mod dataset;
pub mod download;
mod error;
pub mod image_folder;
pub mod loader;
pub mod mnist;
pub mod text;

pub use augment::{mixup, Augment, Mixup};
pub use dataset::ImageDataset;
pub use error::DataError;
pub use loader::{Batch, DataLoader};

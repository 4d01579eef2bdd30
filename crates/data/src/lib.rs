//! # wgrad-data
//!
//! Datasets and data loading: the MNIST IDX reader (the bundled MNIST-10k is
//! the default dataset of the examples and end-to-end tests), CIFAR, image
//! folders decoded lazily, character-level text corpora for language models
//! (the bundled Shakespeare tragedies), and a [`DataLoader`].
//!
//! A [`Dataset`] hands out items by index; the [`DataLoader`] reads the
//! batches of an epoch on worker threads in a seeded order that does not
//! depend on the number of workers, builds each batch with a [`Collate`]
//! step there, and hands batches to the caller in order, as `Result`s: a
//! failing or panicking item makes its batch an error, never a short epoch.
//! Image batches are uploaded as bytes and converted (and normalised) on the
//! device, on the caller's thread.
//!
//! ```
//! use std::sync::Arc;
//! use wgrad_autograd::Device;
//! use wgrad_data::mnist::{self, Split};
//! use wgrad_data::DataLoader;
//!
//! let test = mnist::load(&mnist::bundled_dir(), Split::Test)?;
//! let loader = DataLoader::new(Arc::new(test), 500, &Device::cpu())
//!     .normalize(&[0.1307], &[0.3081])
//!     .workers(2)
//!     .seed(1);
//! for batch in loader.epoch(0) {
//!     let b = batch?;
//!     assert_eq!(b.images.shape()[1..], [1, 28, 28]);
//! }
//! # Ok::<(), wgrad_data::DataError>(())
//! ```
//!
//! A custom dataset is an implementation of [`Dataset`] (an example is
//! there) with a closure as its collate step.
//!
//! This crate must not know about models or training; it hands out tensors.

pub mod augment;
mod batches;
pub mod cifar;
mod collate;
mod dataset;
pub mod download;
mod error;
#[cfg(feature = "download")]
mod fetch;
#[cfg(not(feature = "download"))]
#[path = "fetch_disabled.rs"]
mod fetch;
mod image_batch;
mod image_dataset;
pub mod image_folder;
pub mod loader;
pub mod mnist;
pub mod sampler;
pub mod text;

pub use augment::{mixup, Augment, Mixup};
pub use batches::Batches;
pub use collate::Collate;
pub use dataset::Dataset;
pub use error::DataError;
pub use image_batch::{Batch, HostImages, ImageCollate};
pub use image_dataset::{ImageDataset, ImageItem, ImageSource};
pub use loader::{epoch_order, DataLoader};
pub use sampler::DistributedSampler;

//! Labelled images: the item type, the [`ImageSource`] trait that
//! [`DataLoader::new`](crate::DataLoader::new) batches, and the in-memory
//! [`ImageDataset`].

use crate::{DataError, Dataset};

/// One labelled image as `[C, H, W]` bytes (planar channels, row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageItem {
    /// `C * H * W` pixel bytes.
    pub pixels: Vec<u8>,
    /// Class index.
    pub label: u32,
}

/// A dataset of labelled images that all have one `[C, H, W]` shape, which
/// the image loader needs before it sees an item (to check normalisation
/// and shape batches).
pub trait ImageSource: Dataset<Item = ImageItem> {
    /// `[C, H, W]` of every item.
    fn item_shape(&self) -> [usize; 3];
}

/// Images as raw bytes `[len, C, H, W]` with one class label each, in memory.
#[derive(Clone, Debug)]
pub struct ImageDataset {
    /// Pixel bytes, item after item.
    pub images: Vec<u8>,
    /// Class of each item.
    pub labels: Vec<u32>,
    /// `[C, H, W]` of one item.
    pub item_shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

impl ImageDataset {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per item.
    pub fn item_bytes(&self) -> usize {
        self.item_shape.iter().product()
    }

    /// The bytes of item `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let b = self.item_bytes();
        &self.images[i * b..(i + 1) * b]
    }
}

impl Dataset for ImageDataset {
    type Item = ImageItem;

    fn len(&self) -> usize {
        self.labels.len()
    }

    /// Copies item `index` out; panics when it is out of range.
    fn get(&self, index: usize) -> Result<ImageItem, DataError> {
        Ok(ImageItem { pixels: self.image(index).to_vec(), label: self.labels[index] })
    }
}

impl ImageSource for ImageDataset {
    fn item_shape(&self) -> [usize; 3] {
        self.item_shape
    }
}

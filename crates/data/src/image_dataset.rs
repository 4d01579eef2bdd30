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

    /// Keeps the first `n` items (all of them when there are fewer), as
    /// `Vec::truncate` does: a quick run on part of a dataset.
    pub fn truncate(&mut self, n: usize) {
        self.labels.truncate(n);
        self.images.truncate(self.labels.len() * self.item_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn three_items() -> ImageDataset {
        ImageDataset { images: (0..3 * 2 * 2).collect(), labels: vec![7, 8, 9], item_shape: [1, 2, 2], classes: 10 }
    }

    #[test]
    fn truncate_keeps_the_first_items_whole() {
        let mut d = three_items();
        d.truncate(2);
        assert_eq!((d.len(), d.images.len()), (2, 8));
        assert_eq!(d.get(1).unwrap(), ImageItem { pixels: vec![4, 5, 6, 7], label: 8 });
        // More than there are: nothing changes.
        d.truncate(5);
        assert_eq!((d.len(), d.images.len()), (2, 8));
        d.truncate(0);
        assert!(d.is_empty() && d.images.is_empty());
    }
}

//! In-memory labelled image datasets, stored as bytes.

/// Images as raw bytes `[len, C, H, W]` with one class label each.
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

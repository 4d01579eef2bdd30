//! The image loader's batches: [`ImageCollate`] concatenates items' bytes on
//! a worker, then uploads them as u8 and converts (and normalises) them on
//! the device, a quarter of the transfer of f32 pixels.

use wgrad_autograd::{Device, Tensor};

use crate::{Collate, DataError, ImageItem};

/// One batch of images on the device.
#[derive(Debug)]
pub struct Batch {
    /// `[n, C, H, W]` f32, scaled to [0, 1] and normalised.
    pub images: Tensor,
    /// `[n]` U32 class labels.
    pub labels: Tensor,
    /// Items in this batch (the last may be partial).
    pub len: usize,
}

/// A batch of images in host memory, between a worker and the upload.
#[derive(Debug)]
pub struct HostImages {
    /// The items' bytes, item after item.
    pub bytes: Vec<u8>,
    /// The items' labels.
    pub labels: Vec<u32>,
}

/// The collate step of [`DataLoader::new`](crate::DataLoader::new): items of
/// one `[C, H, W]` shape become a [`Batch`] of f32 images in [0, 1], then
/// `(x - mean) / std` per channel.
#[derive(Clone, Debug)]
pub struct ImageCollate {
    device: Device,
    item_shape: [usize; 3],
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl ImageCollate {
    /// Batches of `item_shape` images on `device`, scaled to [0, 1] and not
    /// normalised.
    pub fn new(item_shape: [usize; 3], device: &Device) -> Self {
        let channels = item_shape[0];
        ImageCollate { device: device.clone(), item_shape, mean: vec![0.0; channels], std: vec![1.0; channels] }
    }

    /// Per-channel normalisation after scaling to [0, 1]: `(x - mean) / std`.
    ///
    /// # Panics
    /// When there is not one mean and one std per channel.
    pub fn normalize(mut self, mean: &[f32], std: &[f32]) -> Self {
        assert_eq!(mean.len(), self.item_shape[0], "normalize: one mean per channel");
        assert_eq!(std.len(), mean.len(), "normalize: one std per channel");
        self.mean = mean.to_vec();
        self.std = std.to_vec();
        self
    }

    /// `[C, H, W]` of the items.
    pub fn item_shape(&self) -> [usize; 3] {
        self.item_shape
    }
}

impl Collate<ImageItem> for ImageCollate {
    type Host = HostImages;
    type Batch = Batch;

    /// Concatenates the items' bytes; an item of another size is an error
    /// (a lazy dataset may decode to anything).
    fn collate(&self, items: Vec<ImageItem>) -> Result<HostImages, DataError> {
        let item_bytes: usize = self.item_shape.iter().product();
        let mut bytes = Vec::with_capacity(items.len() * item_bytes);
        let mut labels = Vec::with_capacity(items.len());
        for (k, item) in items.into_iter().enumerate() {
            if item.pixels.len() != item_bytes {
                return Err(DataError::other(format!(
                    "image {k} of the batch has {} bytes, but shape {:?} needs {item_bytes}",
                    item.pixels.len(),
                    self.item_shape
                )));
            }
            bytes.extend_from_slice(&item.pixels);
            labels.push(item.label);
        }
        Ok(HostImages { bytes, labels })
    }

    fn upload(&self, host: HostImages) -> Result<Batch, DataError> {
        let n = host.labels.len();
        let [c, h, w] = self.item_shape;
        let images = Tensor::try_from_u8_images(&host.bytes, [n, c, h, w], &self.mean, &self.std, &self.device)?;
        Ok(Batch { images, labels: Tensor::from_u32(&host.labels, &[n], &self.device), len: n })
    }
}

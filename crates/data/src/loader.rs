//! Batching: a background thread gathers the next batch's bytes while the
//! device trains on the current one; batches are uploaded as u8 and converted
//! (and normalised) on the device.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use wgrad_autograd::{DType, Device, Tensor};
use wgrad_gpu_core::ops::convert::u8_to_f32;
use wgrad_gpu_core::{Buffer, HostRng, Layout, GOLDEN};

use crate::{DataError, ImageDataset};

/// One batch on the device.
#[derive(Debug)]
pub struct Batch {
    /// `[n, C, H, W]` f32, scaled to [0, 1] and normalised.
    pub images: Tensor,
    /// `[n]` U32 class labels.
    pub labels: Tensor,
    /// Items in this batch (the last may be partial).
    pub len: usize,
}

/// Iterates a dataset in batches, like PyTorch's `DataLoader` with one worker.
#[derive(Clone)]
pub struct DataLoader {
    dataset: Arc<ImageDataset>,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    seed: u64,
    mean: Vec<f32>,
    std: Vec<f32>,
    device: Device,
}

/// The order of items in `epoch`: a seeded Fisher–Yates shuffle (SplitMix64 of
/// seed and epoch), so every epoch differs and every run repeats.
pub fn epoch_order(len: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = HostRng::new(seed ^ (epoch as u64).wrapping_mul(GOLDEN));
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    order
}

impl DataLoader {
    /// Shuffled batches of `batch_size` (last one partial), scaled to [0, 1].
    pub fn new(dataset: Arc<ImageDataset>, batch_size: usize, device: &Device) -> Self {
        assert!(batch_size > 0, "DataLoader: batch_size must be positive");
        let channels = dataset.item_shape[0];
        DataLoader {
            dataset,
            batch_size,
            shuffle: true,
            drop_last: false,
            seed: 0,
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
            device: device.clone(),
        }
    }

    /// Whether to reshuffle every epoch (default true).
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }

    /// Drop the last partial batch (default false).
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }

    /// Seed of the shuffling.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Per-channel normalisation after scaling to [0, 1]: `(x - mean) / std`.
    pub fn normalize(mut self, mean: &[f32], std: &[f32]) -> Self {
        assert_eq!(mean.len(), self.dataset.item_shape[0], "normalize: one mean per channel");
        assert_eq!(std.len(), mean.len(), "normalize: one std per channel");
        self.mean = mean.to_vec();
        self.std = std.to_vec();
        self
    }

    /// The dataset.
    pub fn dataset(&self) -> &ImageDataset {
        &self.dataset
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The batches of one epoch; the next batch is prepared on a background
    /// thread while the caller uses the current one.
    pub fn epoch(&self, epoch: usize) -> Batches {
        let order = if self.shuffle {
            epoch_order(self.dataset.len(), self.seed, epoch)
        } else {
            (0..self.dataset.len()).collect()
        };
        let (tx, rx) = sync_channel::<(Vec<u8>, Vec<u32>)>(2);
        let (ds, bs, batches) = (self.dataset.clone(), self.batch_size, self.num_batches());
        std::thread::spawn(move || {
            for chunk in order.chunks(bs).take(batches) {
                let mut bytes = Vec::with_capacity(chunk.len() * ds.item_bytes());
                for &i in chunk {
                    bytes.extend_from_slice(ds.image(i));
                }
                let labels = chunk.iter().map(|&i| ds.labels[i]).collect();
                if tx.send((bytes, labels)).is_err() {
                    return; // the consumer stopped early
                }
            }
        });
        Batches { rx, loader: self.clone() }
    }

    fn upload(&self, bytes: &[u8], labels: &[u32]) -> Result<Batch, DataError> {
        let n = labels.len();
        let [c, h, w] = self.dataset.item_shape;
        let raw = Buffer::from_bytes(&self.device, bytes)?;
        let x = u8_to_f32(&raw, bytes.len(), h * w, &self.mean, &self.std)?;
        Ok(Batch {
            images: Tensor::from_parts(x, Layout::contiguous(&[n, c, h, w]), DType::F32),
            labels: Tensor::from_u32(labels, &[n], &self.device),
            len: n,
        })
    }
}

/// The batches of one epoch (see [`DataLoader::epoch`]).
pub struct Batches {
    rx: Receiver<(Vec<u8>, Vec<u32>)>,
    loader: DataLoader,
}

impl Iterator for Batches {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (bytes, labels) = self.rx.recv().ok()?;
        Some(self.loader.upload(&bytes, &labels))
    }
}

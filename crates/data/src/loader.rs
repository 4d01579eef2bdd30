//! [`DataLoader`]: the batches of an epoch of any [`Dataset`], in a seeded
//! order, read by worker threads and handed to the caller in order.

use std::sync::Arc;

use wgrad_autograd::Device;
use wgrad_autograd::{HostRng, GOLDEN};

use crate::batches::{Batches, Job};
use crate::{Collate, Dataset, DistributedSampler, ImageCollate, ImageDataset, ImageSource};

/// Iterates a dataset in batches, like PyTorch's `DataLoader`.
///
/// Batch `k` of an epoch holds items `order[k * batch_size..]` of
/// [`epoch_order`], whatever the number of workers: workers only change how
/// fast batches arrive, never what they hold or in which order.
///
/// [`DataLoader::new`] batches labelled images ([`ImageSource`]: the
/// in-memory [`ImageDataset`], a lazy
/// [`ImageFolder`](crate::image_folder::ImageFolder)) into device
/// [`Batch`](crate::Batch)es; [`DataLoader::with_collate`] batches any
/// [`Dataset`] with any [`Collate`] step, a closure included.
pub struct DataLoader<D = ImageDataset, C = ImageCollate> {
    dataset: Arc<D>,
    collate: Arc<C>,
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    seed: u64,
    workers: usize,
    prefetch: Option<usize>,
    /// (rank, world size) of a data-parallel run: this rank's shard only.
    shard: Option<(usize, usize)>,
}

// Not derived: the derive would demand `D: Clone` and `C: Clone`, which the
// shared `Arc`s do not need.
impl<D, C> Clone for DataLoader<D, C> {
    fn clone(&self) -> Self {
        DataLoader {
            dataset: self.dataset.clone(),
            collate: self.collate.clone(),
            batch_size: self.batch_size,
            shuffle: self.shuffle,
            drop_last: self.drop_last,
            seed: self.seed,
            workers: self.workers,
            prefetch: self.prefetch,
            shard: self.shard,
        }
    }
}

/// The browser build (wasm32) has one thread: batches are read on it.
const NO_THREADS: bool = cfg!(target_arch = "wasm32");

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

impl<D: ImageSource> DataLoader<D, ImageCollate> {
    /// Shuffled batches of `batch_size` images (the last one partial) as f32
    /// in [0, 1] on `device`: bytes are gathered on a worker, uploaded as u8
    /// and converted on the device.
    ///
    /// # Panics
    /// When `batch_size` is 0.
    pub fn new(dataset: Arc<D>, batch_size: usize, device: &Device) -> Self {
        let collate = ImageCollate::new(dataset.item_shape(), device);
        Self::with_collate(dataset, batch_size, collate)
    }

    /// Per-channel normalisation after scaling to [0, 1]: `(x - mean) / std`.
    ///
    /// # Panics
    /// When there is not one mean and one std per channel.
    pub fn normalize(mut self, mean: &[f32], std: &[f32]) -> Self {
        self.collate = Arc::new(self.collate.as_ref().clone().normalize(mean, std));
        self
    }
}

impl<D: Dataset, C: Collate<D::Item>> DataLoader<D, C> {
    /// Shuffled batches of `batch_size` items (the last one partial), each
    /// made by `collate`: a [`Collate`] or a closure
    /// `Fn(Vec<D::Item>) -> Result<B, DataError>` (see [`Dataset`] for an
    /// example).
    ///
    /// # Panics
    /// When `batch_size` is 0.
    pub fn with_collate(dataset: Arc<D>, batch_size: usize, collate: C) -> Self {
        assert!(batch_size > 0, "DataLoader: batch_size must be positive");
        DataLoader {
            dataset,
            collate: Arc::new(collate),
            batch_size,
            shuffle: true,
            drop_last: false,
            seed: 0,
            workers: if NO_THREADS { 0 } else { 1 },
            prefetch: None,
            shard: None,
        }
    }

    /// Whether to reshuffle every epoch (default true); without, batches
    /// follow the dataset's order.
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

    /// Threads reading and collating batches (default 1, which overlaps
    /// loading with the caller's work). 0 reads each batch on the caller's
    /// thread when it is asked for, as PyTorch's `num_workers=0` does.
    /// In the browser (wasm32, one thread) always 0.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = if NO_THREADS { 0 } else { n };
        self
    }

    /// Most batches read ahead of the caller: claimed by a worker and not
    /// yet returned by the iterator (default 2 per worker, PyTorch's
    /// `prefetch_factor`). Fewer than the workers leaves some of them idle.
    /// Ignored with 0 workers.
    ///
    /// # Panics
    /// When `depth` is 0.
    pub fn prefetch(mut self, depth: usize) -> Self {
        assert!(depth > 0, "DataLoader: prefetch depth must be positive");
        self.prefetch = Some(depth);
        self
    }

    /// Reads only rank `rank`'s shard of each epoch among `world_size`
    /// data-parallel ranks ([`DistributedSampler`], padded to equal shards;
    /// with [`drop_last`](Self::drop_last) the epoch is cut to a multiple of
    /// the world size instead). Every rank must use the same seed.
    ///
    /// # Panics
    /// When `world_size` is 0 or `rank` is not below it.
    pub fn shard(mut self, rank: usize, world_size: usize) -> Self {
        let _ = DistributedSampler::new(0, rank, world_size);
        self.shard = Some((rank, world_size));
        self
    }

    /// This rank's sampler, when [`shard`](Self::shard) split the epochs.
    fn sampler(&self) -> Option<DistributedSampler> {
        let (rank, world) = self.shard?;
        let s = DistributedSampler::new(self.dataset.len(), rank, world);
        Some(s.shuffle(self.shuffle).seed(self.seed).drop_last(self.drop_last))
    }

    /// The dataset.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// The collate step.
    pub fn collate(&self) -> &C {
        &self.collate
    }

    /// Items read per epoch: the dataset's length, or this rank's shard's
    /// with [`shard`](Self::shard).
    pub fn items_per_epoch(&self) -> usize {
        self.sampler().map_or(self.dataset.len(), |s| s.num_samples())
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.items_per_epoch();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }
}

impl<D, C> DataLoader<D, C>
where
    D: Dataset + 'static,
    C: Collate<D::Item> + 'static,
    C::Host: 'static,
{
    /// The batches of one epoch, exactly [`num_batches`](Self::num_batches)
    /// of them: batch `k` is `Err(DataError::Batch { batch: k, .. })` when
    /// reading, collating or uploading it failed or panicked, and the
    /// iteration goes on with batch `k + 1` (stop with `?`, or skip).
    ///
    /// Workers start reading at once; dropping the iterator stops them and
    /// waits for the batches they are in the middle of.
    pub fn epoch(&self, epoch: usize) -> Batches<D, C> {
        self.epoch_from(epoch, 0)
    }

    /// The batches `first..` of epoch `epoch`: the rest of an epoch that a
    /// run stopped in the middle of (a mid-epoch checkpoint's resume). They
    /// are exactly the batches [`epoch`](Self::epoch) yields from position
    /// `first` on, numbered the same, and the skipped ones are never read.
    pub fn epoch_from(&self, epoch: usize, first: usize) -> Batches<D, C> {
        let len = self.dataset.len();
        let order = match self.sampler() {
            Some(s) => s.indices(epoch),
            None if self.shuffle => epoch_order(len, self.seed, epoch),
            None => (0..len).collect(),
        };
        let job = Job {
            dataset: self.dataset.clone(),
            collate: self.collate.clone(),
            order,
            batch_size: self.batch_size,
            count: self.num_batches(),
        };
        Batches::start(job, first, self.workers, self.prefetch.unwrap_or(2 * self.workers))
    }
}

//! [`DistributedSampler`]: which items of an epoch each data-parallel rank
//! reads (PyTorch's `torch.utils.data.DistributedSampler`).

use crate::loader::epoch_order;

/// Splits each epoch of a dataset of `len` items into `world_size`
/// disjoint shards, one per rank, of equal length: every rank draws the
/// same seeded epoch order ([`epoch_order`], so a new epoch reshuffles
/// every shard) and takes every `world_size`-th item of it from position
/// `rank`. When `len` is not a multiple of `world_size`, the order is padded
/// with its own first items (some items are seen twice an epoch), or with
/// [`drop_last`](Self::drop_last) cut to a multiple (some are not seen), as
/// PyTorch does; equal shards keep the ranks stepping together.
///
/// ```
/// use wgrad_data::DistributedSampler;
///
/// let shards: Vec<Vec<usize>> = (0..3).map(|r| DistributedSampler::new(10, r, 3).indices(0)).collect();
/// assert!(shards.iter().all(|s| s.len() == 4));
/// let mut seen: Vec<usize> = shards.concat();
/// seen.sort();
/// seen.dedup();
/// assert_eq!(seen, (0..10).collect::<Vec<_>>());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistributedSampler {
    len: usize,
    rank: usize,
    world_size: usize,
    shuffle: bool,
    seed: u64,
    drop_last: bool,
}

impl DistributedSampler {
    /// Rank `rank`'s shard of `len` items among `world_size` ranks;
    /// shuffled with seed 0, padded.
    ///
    /// # Panics
    /// When `world_size` is 0 or `rank` is not below it.
    pub fn new(len: usize, rank: usize, world_size: usize) -> Self {
        assert!(world_size > 0, "DistributedSampler: world_size must be positive");
        assert!(rank < world_size, "DistributedSampler: rank {rank} is not below the world size {world_size}");
        DistributedSampler { len, rank, world_size, shuffle: true, seed: 0, drop_last: false }
    }

    /// Whether each epoch reshuffles (default true); without, shards follow
    /// the dataset's order.
    pub fn shuffle(mut self, on: bool) -> Self {
        self.shuffle = on;
        self
    }

    /// Seed of the shuffling; every rank must use the same.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Cut the epoch to a multiple of the world size instead of padding it.
    pub fn drop_last(mut self, on: bool) -> Self {
        self.drop_last = on;
        self
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Items in each rank's shard of an epoch.
    pub fn num_samples(&self) -> usize {
        if self.drop_last {
            self.len / self.world_size
        } else {
            self.len.div_ceil(self.world_size)
        }
    }

    /// This rank's items of `epoch`, in the order it reads them.
    pub fn indices(&self, epoch: usize) -> Vec<usize> {
        let mut order = if self.shuffle { epoch_order(self.len, self.seed, epoch) } else { (0..self.len).collect() };
        let total = self.num_samples() * self.world_size;
        // Padding may need more than one copy of a tiny dataset.
        let mut k = 0;
        while order.len() < total {
            order.push(order[k]);
            k += 1;
        }
        order.truncate(total);
        order.into_iter().skip(self.rank).step_by(self.world_size).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_the_dataset() {
        for (len, world) in [(10, 3), (12, 4), (7, 2), (5, 8), (100, 1)] {
            let shards: Vec<Vec<usize>> =
                (0..world).map(|r| DistributedSampler::new(len, r, world).indices(2)).collect();
            let per = len.div_ceil(world);
            assert!(shards.iter().all(|s| s.len() == per), "{len} items on {world} ranks: {shards:?}");
            let mut all = shards.concat();
            all.sort();
            let mut distinct = all.clone();
            distinct.dedup();
            assert_eq!(distinct, (0..len).collect::<Vec<_>>(), "{len} items on {world} ranks");
            // Only the padding repeats items.
            assert_eq!(all.len() - distinct.len(), per * world - len);
        }
    }

    #[test]
    fn drop_last_cuts_to_a_multiple_without_repeats() {
        let shards: Vec<Vec<usize>> =
            (0..3).map(|r| DistributedSampler::new(10, r, 3).drop_last(true).indices(0)).collect();
        assert!(shards.iter().all(|s| s.len() == 3));
        let mut all = shards.concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 9);
    }

    #[test]
    fn epochs_reshuffle_and_seeds_repeat() {
        let s = DistributedSampler::new(50, 1, 2).seed(7);
        assert_ne!(s.indices(0), s.indices(1));
        assert_eq!(s.indices(3), DistributedSampler::new(50, 1, 2).seed(7).indices(3));
        assert_ne!(s.indices(0), DistributedSampler::new(50, 1, 2).seed(8).indices(0));
        // One rank reads the DataLoader's own epoch order.
        assert_eq!(DistributedSampler::new(50, 0, 1).seed(7).indices(4), epoch_order(50, 7, 4));
    }

    #[test]
    fn without_shuffle_ranks_interleave_in_dataset_order() {
        let s = DistributedSampler::new(7, 1, 2).shuffle(false);
        assert_eq!(s.indices(0), vec![1, 3, 5, 0]);
    }

    #[test]
    #[should_panic(expected = "rank 2 is not below the world size 2")]
    fn a_rank_outside_the_world_is_refused() {
        let _ = DistributedSampler::new(4, 2, 2);
    }
}

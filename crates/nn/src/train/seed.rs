//! Reproducibility: one seed for every random stream of a run.
//!
//! wgrad has no global RNG: each consumer owns a counter-based [`Generator`]
//! (`seed`, `offset`) and the same state gives the same numbers on the GPU
//! and on the CPU backend. [`seed_everything`] turns one seed into separate,
//! decorrelated streams by [`Generator::fork`]ing a root generator in a fixed
//! order, so adding, say, augmentation to a run does not change its
//! initialisation or its dropout masks:
//!
//! ```
//! use wgrad_autograd::Device;
//! use wgrad_nn::train::seed::seed_everything;
//! use wgrad_nn::{Dropout, Init, Linear, Sequential};
//!
//! let dev = Device::cpu();
//! let seeds = seed_everything(42);
//! // Parameter init draws from `model`; each Dropout forks its mask stream from it.
//! let mut init = Init::from_generator(&dev, seeds.model);
//! let net = Sequential::new()
//!     .add(Linear::builder(4, 8).build(&mut init))
//!     .add(Dropout::builder(0.1).build(&mut init));
//! // Host-side shuffling: a seed per epoch, independent of what ran before.
//! let order_seed = seeds.epoch_seed(3);
//! # let _ = (net, order_seed);
//! ```
//!
//! Saving a [`Generator`]'s `(seed, offset)` in a checkpoint saves its whole
//! state. Bitwise-identical *results* also need deterministic kernels: every
//! kernel is but `scatter_add` on a GPU (so `gather`'s gradient), which adds
//! a repeated destination with float atomics in thread order and can differ
//! in the last bits between runs; embedding and `index_select` gradients
//! (`index_add`) sum in a fixed order, the CPU backend's bits.

use wgrad_autograd::Generator;

/// The streams of a run, each forked from the root seed in this order:
/// `model`, `data`, `augment`, `extra`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// The seed everything derives from.
    pub seed: u64,
    /// Model construction: parameter initialisation, and the streams that
    /// dropout layers fork at construction.
    pub model: Generator,
    /// Data order: shuffling and sampling (see [`epoch_seed`](Self::epoch_seed)).
    pub data: Generator,
    /// Data augmentation (random crops, flips, noise).
    pub augment: Generator,
    /// Anything else a run needs (a second model, exploration noise).
    pub extra: Generator,
}

/// Derives every stream of a run from `seed` (see the module docs).
pub fn seed_everything(seed: u64) -> Seeds {
    let mut root = Generator::new(seed);
    Seeds { seed, model: root.fork(), data: root.fork(), augment: root.fork(), extra: root.fork() }
}

impl Seeds {
    /// A seed for epoch `epoch`'s shuffle that depends only on the run seed
    /// and the epoch, so a run resumed at epoch `e` sees the same data order
    /// as an uninterrupted one without replaying earlier epochs.
    pub fn epoch_seed(&self, epoch: usize) -> u64 {
        Generator { seed: self.data.seed, offset: epoch as u64 }.fork().seed
    }

    /// A device generator for epoch `epoch`'s augmentation, with the same
    /// resume property as [`epoch_seed`](Self::epoch_seed).
    pub fn epoch_augment(&self, epoch: usize) -> Generator {
        Generator { seed: self.augment.seed, offset: epoch as u64 }.fork()
    }
}

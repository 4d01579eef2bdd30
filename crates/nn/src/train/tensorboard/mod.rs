//! TensorBoard logs: [`SummaryWriter`] writes event files that
//! `tensorboard --logdir runs` reads (scalars, histograms, images, text,
//! hyperparameters), and the [`Trainer`](super::Trainer) writes its epoch
//! records into the run folder through it. The messages are TensorFlow's
//! own (prost-encoded, [`proto`]); the container is TFRecord with masked
//! CRC-32C ([`record`], which also reads files back).

pub mod proto;
pub mod record;
mod writer;

pub use writer::{HParam, SummaryWriter};

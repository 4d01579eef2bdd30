//! The layers, one file per kind.

pub mod activation;
pub mod attention;
pub mod cell;
pub mod classes;
pub mod conv;
pub mod dropout;
pub mod embedding;

pub mod linear;
pub mod misc;
pub mod norm;
pub mod padding;
pub mod pool;
pub mod positional;
pub mod recurrent;
pub mod seq2seq_attention;

pub mod sequential;
pub mod sync_batch_norm;
pub mod transformer;
pub mod upsample;

//! The layers, one file per kind.

pub mod activation;
pub mod conv;
pub mod dropout;
pub mod embedding;

pub mod linear;
pub mod misc;
pub mod norm;
pub mod pool;

pub mod sequential;

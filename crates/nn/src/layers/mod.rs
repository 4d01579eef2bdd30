//! The layers, one file per kind.

pub mod activation;
pub mod linear;
pub mod misc;
pub mod sequential;

//! Tensor ops, one file per family. Each op runs its gpu-core kernel and,
//! next to it, states its backward rule in terms of other tensor ops (or a
//! fused gradient kernel).

mod attention;
pub(crate) mod conv;
mod cumsum;
mod dropout;
mod elementwise;
mod embedding;
mod images;
mod index;
mod interpolate;
pub(crate) mod loss;
mod masking;
mod matmul;
pub(crate) mod norm;
mod operators;
pub(crate) mod padding;
mod pool;
mod rearrange;
pub(crate) mod recurrent;
mod reduce;
mod rotary;
mod shape;
mod similarity;
mod softmax;
mod sort;

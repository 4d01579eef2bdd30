//! Tensor ops, one file per family. Each op runs its gpu-core kernel and,
//! next to it, states its backward rule in terms of other tensor ops (or a
//! fused gradient kernel).

pub(crate) mod conv;
mod elementwise;
mod index;
mod matmul;
mod norm;
mod operators;
mod pool;
mod reduce;
mod shape;
mod softmax;
pub(crate) mod loss;
mod dropout;
mod embedding;

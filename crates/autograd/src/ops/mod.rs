//! Tensor ops, one file per family. Each op runs its gpu-core kernel and,
//! next to it, states its backward rule in terms of other tensor ops (or a
//! fused gradient kernel).

mod elementwise;
mod index;
mod matmul;
mod operators;
mod reduce;
mod shape;

//! The integration tests of wgrad-gpu-core as one test binary, `main`.
//! Each file here is a module, and test names are `file::test`, so
//! `cargo test -p wgrad-gpu-core --test main parity_matmul::` runs one file's tests
//! (a filter matches any part of a name). Each test binary compiles and
//! links on its own, wgpu and all: one per file (~120 in the workspace)
//! took twice as long to build (docs/performance.md). A test that needs a
//! process of its own is a binary of its own beside this folder, and its
//! first line says why.

// Helpers shared by the test modules.
mod common;

mod fusion;
mod module_graph;
mod parity_amp;
mod parity_argsort;
mod parity_attention;
mod parity_attention_f16;
mod parity_augment;
mod parity_batch_norm;
mod parity_batch_norm_f16;
mod parity_cast;
mod parity_conv;
mod parity_convert;
mod parity_cumsum;
mod parity_elementwise;
mod parity_epilogue;
mod parity_f16_loads;
mod parity_fast_cpu;
mod parity_index;
mod parity_index_add;
mod parity_interpolate;
mod parity_layout;
mod parity_matmul;
mod parity_matmul_f16;
mod parity_norm;
mod parity_optim;
mod parity_pool;
mod parity_pool_f16;
mod parity_random;
mod parity_recurrent;
mod parity_reduce;
mod parity_softmax;
mod product_tails;
mod profile;
mod split_attention;
mod split_binding;
mod split_elementwise;
mod split_rows;
mod submit_thread;
mod texture_operands;

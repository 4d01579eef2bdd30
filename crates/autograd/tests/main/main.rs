//! The integration tests of wgrad-autograd as one test binary, `main`.
//! Each file here is a module, and test names are `file::test`, so
//! `cargo test -p wgrad-autograd --test main gradients_conv::` runs one file's tests
//! (a filter matches any part of a name). Each test binary compiles and
//! links on its own, wgpu and all: one per file (~120 in the workspace)
//! took twice as long to build (docs/performance.md). A test that needs a
//! process of its own is a binary of its own beside this folder, and its
//! first line says why.

// Helpers shared by the test modules.
mod common;

mod anomaly;
mod api;
mod attention_f16;
mod autocast;
mod batch_norm_f16;
mod epilogue_fusion;
mod execution;
mod f16_elementwise;
mod f16_index;
mod f16_loads;
mod grad_hook;
mod gradients;
mod gradients_attention;
mod gradients_batch_norm;
mod gradients_conv;
mod gradients_cumsum;
mod gradients_interpolate;
mod gradients_padding;
mod gradients_pool_norm;
mod gradients_rearrange;
mod gradients_recurrent;
mod gradients_similarity;
mod gradients_softmax_loss;
mod gradients_sort;
mod images;
mod index_validation;
mod integer;
mod out_of_memory;
mod pool_f16;
mod profile;
mod saved_values;
mod scale_in_store;
mod split_binding;
mod trace;

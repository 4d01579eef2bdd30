//! The integration tests of the facade crate (wgrad) as one test binary, `main`.
//! Each file here is a module, and test names are `file::test`, so
//! `cargo test --test main replay::` runs one file's tests
//! (a filter matches any part of a name). Each test binary compiles and
//! links on its own, wgpu and all: one per file (~120 in the workspace)
//! took twice as long to build (docs/performance.md). A test that needs a
//! process of its own is a binary of its own beside this folder, and its
//! first line says why.

// Helpers shared by the test modules.
mod common;

// The examples' AMP recipe, where benches/common/soak.rs (included by
// soak_short) finds it: at the crate root, as in the soak bench.
#[path = "../../examples/common/amp.rs"]
mod amp;

mod amp_training;
mod autograd_reference;
mod checkpoint_reference;
mod compiled_step;
mod conv_reference;
mod cumsum_reference;
mod docs_links;
mod facade;
mod grad_scaler_reference;
mod how_to_add_an_op;
mod interpolate_reference;
mod lm_pieces_reference;
mod mnist_end_to_end;
mod nn_reference;
mod optim_reference;
mod padding_reference;
mod pool_norm_reference;
mod rearrange_reference;
mod replay;
mod resnet_reference;
mod schedule_reference;
mod sequence_reference;
mod similarity_reference;
mod soak_short;
mod softmax_loss_reference;
mod sort_reference;
mod text_resume;

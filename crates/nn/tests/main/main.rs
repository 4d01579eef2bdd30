//! The integration tests of wgrad-nn as one test binary, `main`.
//! Each file here is a module, and test names are `file::test`, so
//! `cargo test -p wgrad-nn --test main trainer::` runs one file's tests
//! (a filter matches any part of a name). Each test binary compiles and
//! links on its own, wgpu and all: one per file (~120 in the workspace)
//! took twice as long to build (docs/performance.md). A test that needs a
//! process of its own is a binary of its own beside this folder, and its
//! first line says why.

mod autocast_layers;
mod checkpoint;
mod derive_module;
mod fuzz_checkpoint;
mod grad_scaler;
mod init;
mod module;
mod optim;
mod padding_layers;
mod resume_process;
mod run_dir;
mod schedule;
mod sequence;
mod sync_batch_norm;
mod tensorboard;
mod textbook;
mod train_toolkit;
mod trainer;

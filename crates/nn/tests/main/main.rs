//! The integration tests of wgrad-nn as one test binary, `main`: each
//! file here is a module, so `cargo test -p wgrad-nn --test main checkpoint` runs one
//! file's tests (test names are `file::test`). One binary links once:
//! linking wgpu into each of ~120 test binaries was most of a clean CI run.
//! A test that needs a process of its own is a binary of its own beside this
//! folder, and its first line says why.

mod autocast_layers;
mod checkpoint;
mod derive_module;
mod fuzz_checkpoint;
mod grad_scaler;
mod init;
mod module;
mod optim;
mod resume_process;
mod run_dir;
mod schedule;
mod sequence;
mod textbook;
mod train_toolkit;
mod trainer;

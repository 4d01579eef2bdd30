//! The integration tests of wgrad-models as one test binary, `main`: each
//! file here is a module, so `cargo test -p wgrad-models --test main kv_cache` runs one
//! file's tests (test names are `file::test`). One binary links once:
//! linking wgpu into each of ~120 test binaries was most of a clean CI run.
//! A test that needs a process of its own is a binary of its own beside this
//! folder, and its first line says why.

mod autoencoder;
mod construction;
mod fusion;
mod kv_cache;
mod models;
mod sequence_models;
mod split_binding;

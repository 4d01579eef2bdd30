//! The integration tests of wgrad-data as one test binary, `main`.
//! Each file here is a module, and test names are `file::test`, so
//! `cargo test -p wgrad-data --test main loader::` runs one file's tests
//! (a filter matches any part of a name). Each test binary compiles and
//! links on its own, wgpu and all: one per file (~120 in the workspace)
//! took twice as long to build (docs/performance.md). A test that needs a
//! process of its own is a binary of its own beside this folder, and its
//! first line says why.

// Helpers shared by the test modules.
mod common {
    pub mod download;
    pub mod fuzz;
}

mod augment;
mod cifar;
mod download;
mod fuzz_readers;
mod image_folder;
mod loader;
mod mnist;

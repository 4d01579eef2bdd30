//! The integration tests of wgrad-data as one test binary, `main`: each
//! file here is a module, so `cargo test -p wgrad-data --test main loader` runs one
//! file's tests (test names are `file::test`). One binary links once:
//! linking wgpu into each of ~120 test binaries was most of a clean CI run.
//! A test that needs a process of its own is a binary of its own beside this
//! folder, and its first line says why.

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

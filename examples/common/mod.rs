//! Code shared by several examples (not an example itself).
pub mod lm;
pub mod run_flags;

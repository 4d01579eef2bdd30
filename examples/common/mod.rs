//! Code shared by several examples (not an example itself).
pub mod lm;

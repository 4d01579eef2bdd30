//! The training-loop toolkit used by the examples.

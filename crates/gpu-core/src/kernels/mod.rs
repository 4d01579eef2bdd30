//! What each kernel family computes, below every backend: the op
//! descriptors (op tables, geometry and size structs, path choices) and
//! the reference twins that define them (`FAMILY.rs`: loops over host
//! slices), with no device, buffer or wgpu (`tests/main/module_graph.rs`).
//! The fast CPU paths (`cpu/`), the GPU recorder (`gpu/`) and the op
//! launches (`ops/`) all build on this layer; it names none of them.

pub(crate) mod amp;
pub(crate) mod argsort;
pub(crate) mod attention;
pub(crate) mod augment;
pub(crate) mod batch_norm;
pub(crate) mod binary;
pub(crate) mod cast;
pub(crate) mod conv;
pub(crate) mod convert;
pub(crate) mod copy;
pub(crate) mod cumsum;
pub(crate) mod fast_math;
pub(crate) mod fill;
pub(crate) mod index;
pub(crate) mod index_add;
pub(crate) mod interpolate;
pub(crate) mod io;
pub(crate) mod matmul;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod random;
pub(crate) mod recurrent;
pub(crate) mod reduce;
pub(crate) mod rows;
pub(crate) mod table;
pub(crate) mod unary;
pub(crate) mod variants;

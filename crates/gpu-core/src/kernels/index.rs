//! [`Walk`]: how an index op walks its tensors (the fields of
//! `index.wgsl`'s `Params`), shared by the launch (`ops/index.rs`) and the
//! fast path (`cpu/index.rs`).

/// The fields of `index.wgsl`'s `Params` besides the thread count; the
/// stride sets are already coalesced over `shape`. The fast CPU paths
/// (`cpu::index`) walk the same description.
#[derive(Default)]
pub(crate) struct Walk<'a> {
    pub(crate) shape: &'a [usize],
    /// Strides of the gathered-from (or scattered-to) tensor, the indexed dim zeroed.
    pub(crate) x_strides: &'a [usize],
    /// Strides of the index (unused by scatter_add, whose index is dense).
    pub(crate) i_strides: &'a [usize],
    pub(crate) x_offset: usize,
    pub(crate) dim_stride: usize,
    pub(crate) dim_size: usize,
    /// A class index that is not an error (class_targets only).
    pub(crate) ignore: Option<u32>,
}

//! How many workgroups a launch needs: shared by the op launches and the
//! recorder's own generated kernels.

/// Workgroups needed for `n` threads in groups of `size`.
pub(crate) fn groups(n: usize, size: usize) -> u32 {
    u32::try_from(n.div_ceil(size)).expect("wgrad: too many workgroups for one launch")
}

//! Pooling's shared meaning: the marker a max-pool window stores where it
//! has no argmax. The launches and twins are `ops/pool.rs`.

/// The argmax of a window with no in-bounds element (cannot happen within
/// PyTorch's padding limit, but kernel and twin agree on it anyway).
pub(crate) const NONE: u32 = u32::MAX;

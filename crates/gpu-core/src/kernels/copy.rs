//! The strided copy's reference twin and its shader variant that reads its
//! source through a texture. The launches are `ops/copy.rs`.

use super::variants::{FamilyShaders, Variant};
use crate::layout::Layout;

/// The strided copy (`Tensor.copy_` between views, `contiguous`): element
/// `i` (row-major) of the view `sl` of `src` goes to element `i` of the
/// view `dl` of `dst`, moved as it is (words or f16 halves, bit for bit).
pub(crate) fn copy_view<T: Copy>(src: &[T], sl: &Layout, dst: &mut [T], dl: &Layout) {
    for i in 0..sl.numel() {
        dst[dl.index_of(i)] = src[sl.index_of(i)];
    }
}

/// The shaders this family derives from its files by swapping includes,
/// and the inputs its texture variants read through textures (`shaders.rs`
/// collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[Variant::new("copy_tex", "copy", &[("copy_src_buffer", "copy_src_tex")])],
    texture_inputs: &[("copy_tex", "*", &[0])],
    io: &[],
};

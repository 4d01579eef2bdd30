//! The strided copy's reference twin and its shader variant that reads its
//! source through a texture. The launches are `ops/copy.rs`.

use super::io::{Binding, Elem, IoLibrary, Storage};
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
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[Variant::new("copy_tex", "copy", &[("copy_src_f32", "copy_src_tex")])],
    io: &[IoLibrary {
        stem: "copy_src",
        storages: Storage::F32_TEX,
        // Source words, moved bit for bit: f32 (NaN payloads included), u32
        // and packed f16 copy exactly through the texture too.
        bindings: &[Binding::load("src", 1).of(Elem::Word)],
    }],
};

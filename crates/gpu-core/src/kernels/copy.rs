//! The strided copy's shader variant that reads its source through a texture.

use super::variants::{FamilyShaders, Variant};

/// The shaders this family derives from its files by swapping includes,
/// and the inputs its texture variants read through textures (`shaders.rs`
/// collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[Variant::new("copy_tex", "copy", &[("copy_src_buffer", "copy_src_tex")])],
    texture_inputs: &[("copy_tex", "*", &[0])],
};

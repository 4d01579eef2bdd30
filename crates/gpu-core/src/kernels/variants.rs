//! How a kernel family declares the shaders it derives from its files
//! (f16 and texture-operand variants, other epilogues) and its storage
//! bindings; `shaders.rs` collects every family's. Which inputs a texture
//! variant's entry point reads through textures is read from the kernel
//! (`gpu/texture_operands.rs`).

/// A shader made from another by swapping some of its `//#include` lines:
/// the same kernel over other operand storage (packed or native f16,
/// textures) or with another store epilogue. Each family declares its own
/// ([`FamilyShaders`]); `shaders.rs` builds them.
pub(crate) struct Variant {
    /// The variant's name, as launches and includes name it.
    pub name: &'static str,
    /// The shader file it is made from (a file, not a variant: variants are
    /// generated together, on first use, from the files).
    pub base: &'static str,
    /// `(from, to)`: `//#include from.wgsl` becomes `//#include to.wgsl`.
    pub swaps: &'static [(&'static str, &'static str)],
    /// The text starts with `enable f16;` (native f16 arithmetic).
    pub enable_f16: bool,
    /// Only included by other shaders (a body or a store), not compiled alone.
    pub library: bool,
}

impl Variant {
    /// `base` with `swaps`, a kernel of f32 words.
    pub(crate) const fn new(
        name: &'static str,
        base: &'static str,
        swaps: &'static [(&'static str, &'static str)],
    ) -> Self {
        Variant { name, base, swaps, enable_f16: false, library: false }
    }

    /// The same, starting with `enable f16;`.
    pub(crate) const fn f16(self) -> Self {
        Variant { enable_f16: true, ..self }
    }

    /// The same, as an include library.
    pub(crate) const fn library(self) -> Self {
        Variant { library: true, ..self }
    }
}

/// What a kernel family declares about its shaders beyond its files.
pub(crate) struct FamilyShaders {
    /// The shaders it derives from its files.
    pub variants: &'static [Variant],
    /// Its storage bindings, from which `kernels/io.rs` generates the
    /// include library of each storage kind its variants swap in.
    pub io: &'static [super::io::IoLibrary],
}

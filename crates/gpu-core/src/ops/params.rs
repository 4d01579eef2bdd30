//! Kernel uniform blocks: the Rust writer [`Params`] and the declarations
//! ([`ParamsDecl`]) that tie it to each shader's WGSL `struct Params`.
//!
//! A declared writer checks every field it writes against the declaration (name,
//! kind, order), and the shader test (`shaders::tests`) reflects each declared
//! shader's `Params` with naga and checks it against the same declaration
//! (member names, byte offsets, types), so a writer and its shader cannot drift
//! apart without a failing test, on any machine.

use crate::layout::MAX_DIMS;

/// The kind of one uniform member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `u32`
    U32,
    /// `f32`
    F32,
    /// Up to eight sizes as `array<vec4<u32>, 2>` (16-byte aligned).
    Dims,
    /// Sixteen floats as `array<vec4<f32>, 4>` (16-byte aligned).
    F32x16,
    /// Four floats as `vec4<f32>` (16-byte aligned).
    F32x4,
}

#[cfg_attr(not(test), allow(dead_code))]
impl Kind {
    /// (alignment, size) in bytes under WGSL's uniform layout rules.
    fn align_size(self) -> (u32, u32) {
        match self {
            Kind::U32 | Kind::F32 => (4, 4),
            Kind::Dims => (16, 4 * MAX_DIMS as u32),
            Kind::F32x16 => (16, 64),
            Kind::F32x4 => (16, 16),
        }
    }
}

/// A shader's `struct Params` as the Rust side writes it.
pub(crate) struct ParamsDecl {
    /// The shader (registry name) whose `Params` this is.
    pub shader: &'static str,
    /// Members in order.
    pub fields: &'static [(&'static str, Kind)],
}

#[cfg_attr(not(test), allow(dead_code))]
impl ParamsDecl {
    /// The byte offset of each member under WGSL's uniform layout rules.
    pub fn offsets(&self) -> Vec<u32> {
        let mut at = 0u32;
        self.fields
            .iter()
            .map(|(_, k)| {
                let (align, size) = k.align_size();
                let o = at.next_multiple_of(align);
                at = o + size;
                o
            })
            .collect()
    }
}

/// Every declared `Params`, for the shader test: each `pub(crate) const
/// NAME: ParamsDecl` that starts a line of an `ops/` file, listed by
/// `build.rs` (so a new family's block is checked by being declared).
#[cfg(test)]
pub(crate) const DECLS: &[&ParamsDecl] = include!(concat!(env!("OUT_DIR"), "/params_decls.rs"));

/// A kernel's uniform block, built word by word in the order of its WGSL
/// `Params`; checked against a [`ParamsDecl`] when made by [`Params::of`].
#[derive(Clone, Default)]
pub(crate) struct Params(
    /// The words, inline: a block is built on every launch, and the
    /// largest fits (`PARAMS_WORDS`).
    pub smallvec::SmallVec<[u32; crate::gpu::PARAMS_WORDS]>,
    /// The declaration and the next member to write.
    Option<(&'static ParamsDecl, usize)>,
);

impl Params {
    /// An empty block, for a launch the fuser always generates (a pad has
    /// no kernel of its own); every kernel's block is declared.
    pub fn new() -> Self {
        Self::default()
    }

    /// A block checked against `decl`: each setter must name the next member.
    pub fn of(decl: &'static ParamsDecl) -> Self {
        Self(smallvec::SmallVec::new(), Some((decl, 0)))
    }

    /// Checks that the next declared member is `name` of kind `kind`.
    fn expect(&mut self, name: &str, kind: Kind) {
        if let Some((decl, next)) = &mut self.1 {
            let field = decl.fields.get(*next);
            // The kind and count always (a wrong layout would corrupt the
            // block); the name in debug builds and tests only, since a
            // matmul launch writes 37 members on the recording path.
            assert!(
                field.map(|f| f.1) == Some(kind),
                "wgrad internal: {}'s Params member {next} is {field:?}, written as {name:?} ({kind:?})",
                decl.shader
            );
            debug_assert!(
                field.map(|f| f.0) == Some(name),
                "wgrad internal: {}'s Params member {next} is {field:?}, written as {name:?} ({kind:?})",
                decl.shader
            );
            *next += 1;
        }
    }

    /// The next member, a `u32` named `name`.
    pub fn set_u32(mut self, name: &str, v: usize) -> Self {
        self.expect(name, Kind::U32);
        self.0.push(u32::try_from(v).expect("wgrad: size exceeds u32 in a kernel parameter"));
        self
    }

    /// The next member, an `f32` named `name`.
    pub fn set_f32(mut self, name: &str, v: f32) -> Self {
        self.expect(name, Kind::F32);
        self.0.push(v.to_bits());
        self
    }

    /// The next member, sizes named `name` (see [`Kind::Dims`]).
    pub fn set_dims(self, name: &str, v: &[usize]) -> Self {
        assert!(v.len() <= MAX_DIMS, "wgrad internal: more than {MAX_DIMS} dims in kernel params");
        self.vector(name, Kind::Dims, (0..MAX_DIMS).map(|i| v.get(i).copied().unwrap_or(0) as u32))
    }

    /// The next member, sixteen floats named `name` (see [`Kind::F32x16`]).
    pub fn set_f32x16(self, name: &str, v: &[f32; 16]) -> Self {
        self.vector(name, Kind::F32x16, v.iter().map(|x| x.to_bits()))
    }

    /// The next member, four floats named `name` (see [`Kind::F32x4`]).
    pub fn set_f32x4(self, name: &str, v: &[f32; 4]) -> Self {
        self.vector(name, Kind::F32x4, v.iter().map(|x| x.to_bits()))
    }

    /// A 16-byte aligned member of `words`.
    fn vector(mut self, name: &str, kind: Kind, words: impl Iterator<Item = u32>) -> Self {
        self.expect(name, kind);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self.0.extend(words);
        self
    }

    /// The finished words; a declared block must have written every member.
    pub fn finish(&self) -> &[u32] {
        if let Some((decl, next)) = self.1 {
            assert_eq!(next, decl.fields.len(), "wgrad internal: {}'s Params written only in part", decl.shader);
        }
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECL: ParamsDecl = ParamsDecl { shader: "test", fields: &[("n", Kind::U32), ("alpha", Kind::F32)] };

    #[test]
    fn a_declared_writer_follows_its_declaration() {
        let p = Params::of(&DECL).set_u32("n", 3).set_f32("alpha", 0.5);
        assert_eq!(p.finish(), &[3, 0.5f32.to_bits()]);
        // A member out of order, of the wrong kind, or left out panics.
        assert!(std::panic::catch_unwind(|| Params::of(&DECL).set_f32("alpha", 0.5)).is_err());
        assert!(std::panic::catch_unwind(|| Params::of(&DECL).set_f32("n", 1.0)).is_err());
        assert!(std::panic::catch_unwind(|| Params::of(&DECL).set_u32("n", 3).finish().len()).is_err());
    }

    #[test]
    fn offsets_follow_wgsl_alignment() {
        let decl = ParamsDecl {
            shader: "test",
            fields: &[("n", Kind::U32), ("shape", Kind::Dims), ("x", Kind::F32), ("m", Kind::F32x16)],
        };
        assert_eq!(decl.offsets(), vec![0, 16, 48, 64]);
    }
}

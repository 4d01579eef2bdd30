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
}

/// A shader's `struct Params` as the Rust side writes it.
pub(crate) struct ParamsDecl {
    /// The shader (registry name) whose `Params` this is.
    pub shader: &'static str,
    /// Members in order.
    pub fields: &'static [(&'static str, Kind)],
}

impl ParamsDecl {
    /// The byte offset of each member under WGSL's uniform layout rules
    /// (scalars 4-aligned, `array<vec4<u32>, 2>` 16-aligned and 32 bytes).
    pub fn offsets(&self) -> Vec<u32> {
        let mut at = 0u32;
        self.fields
            .iter()
            .map(|(_, k)| {
                if *k == Kind::Dims {
                    at = at.next_multiple_of(16);
                }
                let o = at;
                at += if *k == Kind::Dims { 4 * MAX_DIMS as u32 } else { 4 };
                o
            })
            .collect()
    }
}

/// Every declared `Params`, for the shader test.
pub(crate) const DECLS: &[&ParamsDecl] = &[
    &super::unary::PARAMS,
    &super::unary::GRAD_PARAMS,
    &super::binary::PARAMS,
    &super::binary::WHERE_PARAMS,
    &super::cast::PARAMS,
    &super::fill::PARAMS,
];

/// A kernel's uniform block, built word by word in the order of its WGSL
/// `Params`; checked against a [`ParamsDecl`] when made by [`Params::of`].
#[derive(Default)]
pub(crate) struct Params(
    /// The words (read directly by kernels not yet declared).
    pub Vec<u32>,
    /// The declaration and the next member to write.
    Option<(&'static ParamsDecl, usize)>,
);

impl Params {
    /// An unchecked block (kernels not yet declared).
    pub fn new() -> Self {
        Self::default()
    }

    /// A block checked against `decl`: each setter must name the next member.
    pub fn of(decl: &'static ParamsDecl) -> Self {
        Self(vec![], Some((decl, 0)))
    }

    /// Checks that the next declared member is `name` of kind `kind`.
    fn expect(&mut self, name: &str, kind: Kind) {
        if let Some((decl, next)) = &mut self.1 {
            let field = decl.fields.get(*next);
            assert!(
                field == Some(&(name, kind)) || (name.is_empty() && field.map(|f| f.1) == Some(kind)),
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
    pub fn set_dims(mut self, name: &str, v: &[usize]) -> Self {
        self.expect(name, Kind::Dims);
        assert!(v.len() <= MAX_DIMS, "wgrad internal: more than {MAX_DIMS} dims in kernel params");
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self.0.extend((0..MAX_DIMS).map(|i| v.get(i).copied().unwrap_or(0) as u32));
        self
    }

    /// Unnamed `u32` (unchecked blocks).
    pub fn u32(self, v: usize) -> Self {
        self.set_u32("", v)
    }

    /// Unnamed `f32` (unchecked blocks).
    pub fn f32(self, v: f32) -> Self {
        self.set_f32("", v)
    }

    /// Unnamed sizes (unchecked blocks).
    pub fn dims(self, v: &[usize]) -> Self {
        self.set_dims("", v)
    }

    /// The finished words; a declared block must have written every member.
    pub fn finish(&self) -> &[u32] {
        if let Some((decl, next)) = self.1 {
            assert_eq!(next, decl.fields.len(), "wgrad internal: {}'s Params written only in part", decl.shader);
        }
        &self.0
    }
}

//! The storage libraries generated from a family's binding list: a family
//! declares each storage binding its kernels read or write once ([`Binding`],
//! in its `kernels/NAME.rs`), and [`library`] writes the include file of
//! each storage kind ([`Storage`]) with the WGSL declarations and the
//! `load_NAME` / `store_NAME` accessors the kernels call. A kernel touches
//! the binding only through these, so an f16 or texture variant is the same
//! kernel with another library swapped in (`variants.rs`), and the four
//! libraries cannot drift apart: they were hand-written copies before.
//!
//! Every bound range is a multiple of 16 bytes (buffers are pooled in
//! buckets of at least 256 bytes, windows round up to 16), so whether a
//! binding is declared as scalars or as vectors changes which loads the
//! compiler may merge, never which values a kernel reads.

/// How a variant holds the family's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    /// f32 storage buffers.
    F32,
    /// f16 in u32 words, two halves per word (element 2k in the low half,
    /// `Buffer::from_f16`'s layout), for adapters without SHADER_F16: loads
    /// widen exactly, stores round to nearest even with half.wgsl.
    F16,
    /// The same bytes read as WGSL's `f16` (the variant starts with
    /// `enable f16;`); stores are the packed ones, so both f16 kinds write
    /// the same bits.
    F16Native,
    /// f32 inputs read through r32float storage textures (texels.wgsl; CPU
    /// adapters, where a texel gather beats a per-lane buffer load); outputs
    /// stay f32 buffers.
    Tex,
}

impl Storage {
    /// Every kind, in the order a family's libraries are listed.
    pub(crate) const ALL: &'static [Storage] = &[Storage::F32, Storage::Tex, Storage::F16, Storage::F16Native];
    /// The buffer and texture kinds (families without f16 variants).
    pub(crate) const F32_TEX: &'static [Storage] = &[Storage::F32, Storage::Tex];

    /// The library's name suffix.
    pub(crate) const fn suffix(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
            Storage::F16Native => "f16_native",
            Storage::Tex => "tex",
        }
    }

    fn is_f16(self) -> bool {
        matches!(self, Storage::F16 | Storage::F16Native)
    }
}

/// What a binding holds, and so which storage kinds change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Elem {
    /// The family's values: f32 or f16 as the variant stores them.
    Value,
    /// f32 in every variant (per-channel parameters and sums, which the
    /// f16 variants keep in f32); a texture in the texture variant.
    F32,
    /// u32 words whose bits are moved, never converted (indices, raw copy
    /// words); a texture's bits, bitcast back, in the texture variant.
    Word,
}

/// Whether the kernels read or write the binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Read-only: `load_NAME(i)` is element `i`.
    Load,
    /// Written a unit at a time: `store_NAME(t, v)` writes the `LANES`
    /// elements from `LANES·t` (the first lanes of `v`). An f16 unit is one
    /// whole u32 word, so no two threads write the same word.
    Store,
}

/// One storage binding of a family's kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The accessors' name (`load_NAME`, `store_NAME`); the global is
    /// `NAME_in` or `NAME_out` (`_v4` after it for a vec4 alias).
    pub name: &'static str,
    /// Its `@binding` in group 0.
    pub binding: u32,
    /// Read or written.
    pub role: Role,
    /// What it holds.
    pub elem: Elem,
    /// A load reads whole units (`load_NAME_unit(t)`, a vec2 whose lanes
    /// past `LANES` are 0) instead of elements.
    pub units: bool,
    /// Also read or written four elements at a time (`load_NAME_quad(q)`,
    /// `store_NAME_quad(q, v)`: elements 4q..4q+3). Element loads and quads
    /// share one vec4 declaration (a kernel mixes them in one entry); unit
    /// accesses and quads get a declaration each (the scalar and the vec4
    /// entries, which WGSL lets share a binding number since no entry
    /// uses both).
    pub quads: bool,
    /// Also read as rows: `NAME_at(row, c, w)` is chunk `c` of row `row`
    /// of rows `w` wide, its elements 4c..4c+3, zeros past the row's end;
    /// one quad load where `w` is a multiple of 4 (a kernel passes an
    /// override constant, so the branch folds). Needs quads.
    pub rows: bool,
}

impl Binding {
    /// A read-only binding of the family's values, loaded by element.
    pub(crate) const fn load(name: &'static str, binding: u32) -> Self {
        Binding { name, binding, role: Role::Load, elem: Elem::Value, units: false, quads: false, rows: false }
    }

    /// An output of the family's values, stored by unit.
    pub(crate) const fn store(name: &'static str, binding: u32) -> Self {
        Binding { role: Role::Store, ..Binding::load(name, binding) }
    }

    /// The same, holding `elem` instead.
    pub(crate) const fn of(self, elem: Elem) -> Self {
        Binding { elem, ..self }
    }

    /// The same, loaded by unit rather than by element.
    pub(crate) const fn units(self) -> Self {
        Binding { units: true, ..self }
    }

    /// The same, also accessed in quads.
    pub(crate) const fn quads(self) -> Self {
        Binding { quads: true, ..self }
    }

    /// The same, also read by chunks of rows (see [`Binding::rows`]).
    pub(crate) const fn rows(self) -> Self {
        Binding { rows: true, ..self }
    }

    fn global(&self) -> String {
        match self.role {
            Role::Load => format!("{}_in", self.name),
            Role::Store => format!("{}_out", self.name),
        }
    }

    fn global4(&self) -> String {
        match self.role {
            Role::Load => format!("{}_in_v4", self.name),
            Role::Store => format!("{}_out_v4", self.name),
        }
    }
}

/// A family's generated storage libraries: `STEM_f32`, `STEM_tex`,
/// `STEM_f16`, `STEM_f16_native` for the kinds it lists.
pub(crate) struct IoLibrary {
    /// The libraries' name before the storage suffix.
    pub stem: &'static str,
    /// The kinds its variants use.
    pub storages: &'static [Storage],
    /// The bindings, in the order the libraries declare them.
    pub bindings: &'static [Binding],
}

impl IoLibrary {
    /// The library of `storage`'s name, as kernels `//#include` it.
    pub(crate) fn name(&self, storage: Storage) -> String {
        format!("{}_{}", self.stem, storage.suffix())
    }
}

/// The WGSL include library of `io` over `storage`.
///
/// # Panics
/// For a binding the generator has no form for (words in units or quads, a
/// unit-loaded binding without quads, an f32 parameter stored): a bug in a
/// family's declaration, caught by the registry's tests.
pub(crate) fn library(io: &IoLibrary, storage: Storage) -> String {
    let mut head =
        format!("// {}: generated by kernels/io.rs from the binding list of {}.\n", io.name(storage), io.stem);
    let half = storage.is_f16() && io.bindings.iter().any(|b| b.elem == Elem::Value);
    if half {
        head += "//#include half.wgsl\n";
    }
    if storage == Storage::Tex && io.bindings.iter().any(|b| b.role == Role::Load) {
        head += "//#include texels.wgsl\n";
    }
    if io.bindings.iter().any(|b| b.role == Role::Store || b.units) {
        let lanes = if half { 2 } else { 1 };
        head += &format!("const LANES: u32 = {lanes}u;\n");
    }
    let (mut decls, mut fns) = (String::new(), String::new());
    for b in io.bindings {
        let (decl, accessors) = match b.role {
            Role::Load => load(b, storage),
            Role::Store => store(b, storage),
        };
        decls += &decl;
        fns += &accessors;
    }
    format!("{head}\n{decls}\n{}", fns.trim_end()) + "\n"
}

/// A read-only binding's declaration and accessors over `storage`.
fn load(b: &Binding, storage: Storage) -> (String, String) {
    let (n, n4, name) = (b.global(), b.global4(), b.name);
    assert!(b.elem != Elem::Word || !(b.units || b.quads), "{name}: words load by element");
    assert!(!b.units || b.quads, "{name}: a unit load without quads is an element load");
    let at = format!("@group(0) @binding({})", b.binding);
    let buffer = |ty: &str| format!("{at} var<storage, read> {n}: array<{ty}>;\n");
    let f16 = storage.is_f16() && b.elem == Elem::Value;
    let word = b.elem == Elem::Word;
    // Element and quad loads in one entry share a vec4 declaration; unit
    // and quad loads are in different entries and get one each.
    let vec = b.quads && !b.units;
    let two_units = format!("vec4<f32>(load_{name}_unit(2u * q), load_{name}_unit(2u * q + 1u))");
    let none = String::new;
    // (declarations, element i, unit t, quad q)
    let (decl, elem, unit, quad) = match storage {
        Storage::Tex => (
            format!("{at} var {n}: texture_storage_2d<r32float, read>;\n"),
            if word { format!("bitcast<u32>(texel({n}, i))") } else { format!("texel({n}, i)") },
            format!("vec2<f32>(texel({n}, t), 0.0)"),
            format!("texel4({n}, q)"),
        ),
        _ if word => (buffer("u32"), format!("{n}[i]"), none(), none()),
        Storage::F16 if f16 && vec => (
            buffer("vec2<u32>"),
            format!("half_at({n}[i / 4u][(i / 2u) % 2u], i)"),
            none(),
            format!("vec4<f32>(unpack2x16float({n}[q].x), unpack2x16float({n}[q].y))"),
        ),
        Storage::F16 if f16 => {
            (buffer("u32"), format!("half_at({n}[i / 2u], i)"), format!("unpack2x16float({n}[t])"), two_units)
        }
        Storage::F16Native if f16 && vec => {
            (buffer("vec4<f16>"), format!("f32({n}[i / 4u][i % 4u])"), none(), format!("vec4<f32>({n}[q])"))
        }
        Storage::F16Native if f16 && b.units => (buffer("vec2<f16>"), none(), format!("vec2<f32>({n}[t])"), two_units),
        Storage::F16Native if f16 => (buffer("f16"), format!("f32({n}[i])"), none(), none()),
        _ if vec => (buffer("vec4<f32>"), format!("{n}[i / 4u][i % 4u]"), none(), format!("{n}[q]")),
        _ if b.units => (
            buffer("f32") + &format!("{at} var<storage, read> {n4}: array<vec4<f32>>;\n"),
            none(),
            format!("vec2<f32>({n}[t], 0.0)"),
            format!("{n4}[q]"),
        ),
        _ => (buffer("f32"), format!("{n}[i]"), none(), none()),
    };
    let ret = if word { "u32" } else { "f32" };
    let mut fns = if b.units {
        format!("fn load_{name}_unit(t: u32) -> vec2<f32> {{\n    return {unit};\n}}\n\n")
    } else {
        format!("fn load_{name}(i: u32) -> {ret} {{\n    return {elem};\n}}\n\n")
    };
    if b.quads {
        fns += &format!("fn load_{name}_quad(q: u32) -> vec4<f32> {{\n    return {quad};\n}}\n\n");
    }
    if b.rows {
        assert!(b.quads && !b.units && !word, "{name}: rows are read by quads and elements");
        fns += &row_chunks(name);
    }
    (decl, fns)
}

/// `NAME_at(row, c, w)`: chunk `c` of row `row` of rows `w` wide. Past
/// the row's end it reads the row's last element (no divergent load) and
/// returns 0 there.
fn row_chunks(name: &str) -> String {
    format!(
        "fn {name}_at(row: u32, c: u32, w: u32) -> vec4<f32> {{
    if w % 4u == 0u {{
        return load_{name}_quad(row * (w / 4u) + c);
    }}
    let e = vec4<u32>(4u * c) + vec4<u32>(0u, 1u, 2u, 3u);
    let i = vec4<u32>(row * w) + min(e, vec4<u32>(w - 1u));
    let v = vec4<f32>(load_{name}(i.x), load_{name}(i.y), load_{name}(i.z), load_{name}(i.w));
    return select(vec4<f32>(0.0), v, e < vec4<u32>(w));
}}

"
    )
}

/// An output's declaration and accessors over `storage`: f32 words, or
/// packed f16 words in both f16 kinds (so they store the same bits).
fn store(b: &Binding, storage: Storage) -> (String, String) {
    let (n, n4, name) = (b.global(), b.global4(), b.name);
    assert_eq!(b.elem, Elem::Value, "{name}: outputs hold the family's values");
    assert!(!b.units, "{name}: stores are by unit already");
    let at = format!("@group(0) @binding({})", b.binding);
    let f16 = storage.is_f16();
    let word = if f16 { "u32" } else { "f32" };
    let mut decl = format!("{at} var<storage, read_write> {n}: array<{word}>;\n");
    let store = if f16 { format!("{n}[t] = pack_halves(v)") } else { format!("{n}[t] = v.x") };
    let mut fns = format!("fn store_{name}(t: u32, v: vec2<f32>) {{\n    {store};\n}}\n\n");
    if b.quads {
        let quad = if f16 {
            format!("store_{name}(2u * q, v.xy);\n    store_{name}(2u * q + 1u, v.zw)")
        } else {
            decl += &format!("{at} var<storage, read_write> {n4}: array<vec4<f32>>;\n");
            format!("{n4}[q] = v")
        };
        fns += &format!("fn store_{name}_quad(q: u32, v: vec4<f32>) {{\n    {quad};\n}}\n\n");
    }
    (decl, fns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: IoLibrary = IoLibrary {
        stem: "small_io",
        storages: Storage::ALL,
        bindings: &[Binding::load("x", 1), Binding::load("idx", 2).of(Elem::Word), Binding::store("y", 3)],
    };

    /// The libraries of a small binding list, in full: what a kernel gets
    /// from each storage kind.
    #[test]
    fn small_binding_list() {
        assert_eq!(
            library(&SMALL, Storage::F32),
            "// small_io_f32: generated by kernels/io.rs from the binding list of small_io.
const LANES: u32 = 1u;

@group(0) @binding(1) var<storage, read> x_in: array<f32>;
@group(0) @binding(2) var<storage, read> idx_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> y_out: array<f32>;

fn load_x(i: u32) -> f32 {
    return x_in[i];
}

fn load_idx(i: u32) -> u32 {
    return idx_in[i];
}

fn store_y(t: u32, v: vec2<f32>) {
    y_out[t] = v.x;
}
"
        );
        assert_eq!(
            library(&SMALL, Storage::F16),
            "// small_io_f16: generated by kernels/io.rs from the binding list of small_io.
//#include half.wgsl
const LANES: u32 = 2u;

@group(0) @binding(1) var<storage, read> x_in: array<u32>;
@group(0) @binding(2) var<storage, read> idx_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> y_out: array<u32>;

fn load_x(i: u32) -> f32 {
    return half_at(x_in[i / 2u], i);
}

fn load_idx(i: u32) -> u32 {
    return idx_in[i];
}

fn store_y(t: u32, v: vec2<f32>) {
    y_out[t] = pack_halves(v);
}
"
        );
        let native = library(&SMALL, Storage::F16Native);
        assert!(native.contains("var<storage, read> x_in: array<f16>;"), "{native}");
        assert!(native.contains("return f32(x_in[i]);"), "{native}");
        assert!(native.contains("y_out[t] = pack_halves(v);"), "{native}");
        assert_eq!(
            library(&SMALL, Storage::Tex),
            "// small_io_tex: generated by kernels/io.rs from the binding list of small_io.
//#include texels.wgsl
const LANES: u32 = 1u;

@group(0) @binding(1) var x_in: texture_storage_2d<r32float, read>;
@group(0) @binding(2) var idx_in: texture_storage_2d<r32float, read>;
@group(0) @binding(3) var<storage, read_write> y_out: array<f32>;

fn load_x(i: u32) -> f32 {
    return texel(x_in, i);
}

fn load_idx(i: u32) -> u32 {
    return bitcast<u32>(texel(idx_in, i));
}

fn store_y(t: u32, v: vec2<f32>) {
    y_out[t] = v.x;
}
"
        );
    }

    /// Quads: one vec4 declaration beside element loads, an aliased one
    /// beside unit accesses; f16 quads are two units.
    #[test]
    fn quads_and_units() {
        const QUADS: IoLibrary = IoLibrary {
            stem: "q",
            storages: Storage::ALL,
            bindings: &[
                Binding::load("a", 1).quads(),
                Binding::load("x", 2).units().quads(),
                Binding::store("y", 3).quads(),
            ],
        };
        let f32 = library(&QUADS, Storage::F32);
        for line in [
            "@group(0) @binding(1) var<storage, read> a_in: array<vec4<f32>>;",
            "return a_in[i / 4u][i % 4u];",
            "@group(0) @binding(2) var<storage, read> x_in: array<f32>;",
            "@group(0) @binding(2) var<storage, read> x_in_v4: array<vec4<f32>>;",
            "return vec2<f32>(x_in[t], 0.0);",
            "return x_in_v4[q];",
            "@group(0) @binding(3) var<storage, read_write> y_out_v4: array<vec4<f32>>;",
            "y_out_v4[q] = v;",
        ] {
            assert!(f32.contains(line), "{line} not in\n{f32}");
        }
        let f16 = library(&QUADS, Storage::F16);
        for line in [
            "var<storage, read> a_in: array<vec2<u32>>;",
            "return vec4<f32>(unpack2x16float(a_in[q].x), unpack2x16float(a_in[q].y));",
            "return vec4<f32>(load_x_unit(2u * q), load_x_unit(2u * q + 1u));",
            "store_y(2u * q, v.xy);\n    store_y(2u * q + 1u, v.zw);",
        ] {
            assert!(f16.contains(line), "{line} not in\n{f16}");
        }
        assert!(!f16.contains("x_in_v4") && !f16.contains("y_out_v4"), "{f16}");
        let native = library(&QUADS, Storage::F16Native);
        assert!(native.contains("a_in: array<vec4<f16>>;") && native.contains("x_in: array<vec2<f16>>;"), "{native}");
    }

    /// A binding read by rows gets `NAME_at` over its own quad and element
    /// loads, in every storage kind (the registry's test validates the
    /// libraries the families declare).
    #[test]
    fn rows_read_by_chunks() {
        const ROWS: IoLibrary =
            IoLibrary { stem: "rows_io", storages: Storage::ALL, bindings: &[Binding::load("q", 1).quads().rows()] };
        for storage in [Storage::F32, Storage::F16, Storage::F16Native] {
            let lib = library(&ROWS, storage);
            for line in [
                "fn q_at(row: u32, c: u32, w: u32) -> vec4<f32> {",
                "return load_q_quad(row * (w / 4u) + c);",
                "let i = vec4<u32>(row * w) + min(e, vec4<u32>(w - 1u));",
                "return select(vec4<f32>(0.0), v, e < vec4<u32>(w));",
            ] {
                assert!(lib.contains(line), "{line} not in\n{lib}");
            }
        }
    }
}

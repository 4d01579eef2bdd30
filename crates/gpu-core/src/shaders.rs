//! The WGSL kernel registry: every file of `shaders/`, embedded at compile
//! time (`build.rs` lists the folder, so a new file needs no entry here),
//! plus the sources generated from the op tables ([`GENERATED`]), the
//! families' storage libraries (generated from their binding lists,
//! `kernels/io.rs`) and their f16 and texture variants, with
//! `//#include NAME.wgsl` lines resolved. A file without an `@compute`
//! entry point is a library for includes.

use crate::kernels;

// SOURCES: every file of `shaders/`, listed by build.rs.
include!(concat!(env!("OUT_DIR"), "/shader_files.rs"));

/// Whether `name` is a library for `//#include` rather than a kernel: a
/// file with no `@compute` entry point, or a generated source or variant
/// marked so.
pub fn is_library(name: &str) -> bool {
    if let Some(&(_, role, _)) = GENERATED.iter().find(|g| g.0 == name) {
        return role == Role::Library;
    }
    if io_libraries().iter().any(|(n, _)| n == name) {
        return true;
    }
    match variants().find(|v| v.name == name) {
        Some(v) => v.library,
        None => !raw(name).contains("@compute"),
    }
}

/// What a generated source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Compiled as a shader of its own.
    Kernel,
    /// Only `//#include`d by others.
    Library,
}

/// Every shader name: files, generated libraries, storage libraries, variants.
pub fn names() -> impl Iterator<Item = &'static str> {
    SOURCES
        .iter()
        .map(|(n, _)| *n)
        .chain(GENERATED.iter().map(|g| g.0))
        .chain(io_libraries().iter().map(|(n, _)| n.as_str()))
        .chain(variants().map(|v| v.name))
}

/// The kernels: every file, generated source and variant that is not a library.
pub fn kernels() -> impl Iterator<Item = &'static str> {
    names().filter(|n| !is_library(n))
}

/// A generated source's builder.
pub type Generator = fn() -> String;

/// (name, role, generator) of the libraries generated from the elementwise
/// op tables. The families' include-swapped variants (f16, textures,
/// epilogues) are declared next to each family in `kernels/`
/// ([`variants`]). Each is generated once per process.
pub const GENERATED: &[(&str, Role, Generator)] = &[
    ("unary_fns", Role::Library, crate::kernels::unary::wgsl_library),
    ("binary_fns", Role::Library, crate::kernels::binary::wgsl_library),
];

/// Every family's declared variants and storage bindings, collected in one
/// place (a new family with variants adds its line here).
const FAMILIES: &[&kernels::variants::FamilyShaders] = &[
    &kernels::matmul::SHADERS,
    &kernels::batch_norm::SHADERS,
    &kernels::rows::SHADERS,
    &kernels::reduce::SHADERS,
    &kernels::unary::SHADERS,
    &kernels::binary::SHADERS,
    &kernels::pool::SHADERS,
    &kernels::copy::SHADERS,
    &kernels::recurrent::SHADERS,
    &kernels::attention::SHADERS,
];

/// Every family's storage libraries (`kernels/io.rs`): (name, source),
/// generated once per process.
fn io_libraries() -> &'static [(String, String)] {
    use std::sync::OnceLock;
    static LIBRARIES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    LIBRARIES.get_or_init(|| {
        let io = FAMILIES.iter().flat_map(|f| f.io);
        io.flat_map(|l| l.storages.iter().map(move |&s| (l.name(s), kernels::io::library(l, s)))).collect()
    })
}

/// Every family's variants ([`FAMILIES`]).
pub(crate) fn variants() -> impl Iterator<Item = &'static kernels::variants::Variant> {
    FAMILIES.iter().flat_map(|f| f.variants)
}

/// The variant of `shader` that reads inputs through r32float textures
/// rather than storage buffers (its name with `_tex`; `shaders/texels.wgsl`),
/// if its family declares one. Which inputs, the pipeline reads from the
/// kernel (`gpu/texture_operands.rs`); the host copies the launch's buffers in.
pub fn texture_variant(shader: &str) -> Option<&'static str> {
    variants().map(|v| v.name).find(|n| n.strip_suffix("_tex") == Some(shader))
}

/// The raw text of `shader` with each line `//#include FROM.wgsl` of
/// `swaps` (`(FROM, TO)`) replaced by `//#include TO.wgsl`: the same kernel
/// over other operand storage. With `enable_f16`, the text starts with
/// `enable f16;` (WGSL wants directives before any declaration, and the
/// files open with comments and includes).
///
/// # Panics
/// When `shader` has no such line (a bug in a family's declaration, caught
/// by the tests).
fn variant_swaps(shader: &str, swaps: &[(&str, &str)], enable_f16: bool) -> String {
    let mut lines: Vec<String> = raw(shader).lines().map(str::to_string).collect();
    for (from, to) in swaps {
        let old = format!("//#include {from}.wgsl");
        let at: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].trim() == old).collect();
        assert_eq!(at.len(), 1, "wgrad internal: {shader} must include {from} once");
        lines[at[0]] = format!("//#include {to}.wgsl");
    }
    let swapped = lines.join("\n");
    if enable_f16 {
        format!("enable f16;\n{swapped}\n")
    } else {
        swapped + "\n"
    }
}

/// The generated sources and variants, built on first use and kept for the process (the
/// registry hands out `&'static str` like `include_str!` does).
fn generated(name: &str) -> Option<&'static str> {
    use std::sync::OnceLock;
    static CACHE: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        let libraries = GENERATED.iter().map(|(n, _, g)| (*n, g()));
        libraries.chain(variants().map(|v| (v.name, variant_swaps(v.base, v.swaps, v.enable_f16)))).collect()
    });
    let found = all.iter().find(|(n, _)| *n == name).map(|(_, s)| s.as_str());
    found.or_else(|| io_libraries().iter().find(|(n, _)| n == name).map(|(_, s)| s.as_str()))
}

/// The raw text of a shader file or generated library.
///
/// # Panics
/// For a name in none of [`SOURCES`], [`GENERATED`] and the families'
/// storage libraries and variants (a bug in gpu-core, not a user error).
pub fn raw(name: &str) -> &'static str {
    SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .or_else(|| generated(name))
        .unwrap_or_else(|| panic!("wgrad internal: unknown shader {name:?}"))
}

/// The compilable source of a shader: includes pasted in, once each.
pub fn source(name: &str) -> String {
    let mut out = String::new();
    let mut included = Vec::new();
    expand(name, &mut out, &mut included);
    out
}

/// The value of the `u32` module constant `name` of `shader` (parsed with its
/// includes), for the tests that hold host constants to their WGSL twins.
#[cfg(test)]
pub(crate) fn u32_constant(shader: &str, name: &str) -> usize {
    let src = source(shader);
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{shader}: {e}"));
    let (_, k) = module.constants.iter().find(|(_, k)| k.name.as_deref() == Some(name)).expect(name);
    match module.global_expressions[k.init] {
        naga::Expression::Literal(naga::Literal::U32(v)) => v as usize,
        ref e => panic!("{shader}: {name} is not a folded u32 literal: {e:?}"),
    }
}

fn expand(name: &str, out: &mut String, included: &mut Vec<String>) {
    for line in raw(name).lines() {
        match line.trim().strip_prefix("//#include ") {
            Some(file) => {
                let dep = file.trim().trim_end_matches(".wgsl").to_string();
                if !included.contains(&dep) {
                    included.push(dep.clone());
                    expand(&dep, out, included);
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel parses and validates with naga: no adapter needed, so a
    /// broken shader fails `cargo test` on any machine.
    #[test]
    fn every_shader_validates_with_naga() {
        for name in kernels() {
            let src = source(name);
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{name}.wgsl does not parse:\n{}", e.emit_to_string(&src)));
            let mut v =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
            v.validate(&module)
                .unwrap_or_else(|e| panic!("{name}.wgsl does not validate:\n{}", e.emit_to_string(&src)));
            assert!(!module.entry_points.is_empty(), "{name}.wgsl has no entry point");
        }
    }

    /// Every storage library generated from a family's binding list parses
    /// and validates on its own (includes pasted in), so a broken
    /// declaration names its library rather than the kernels that include it.
    #[test]
    fn storage_libraries_validate_with_naga() {
        assert!(io_libraries().len() >= 4, "the families declare their storage libraries");
        for (name, _) in io_libraries() {
            let src = source(name);
            let src = if name.ends_with("_f16_native") { format!("enable f16;\n{src}") } else { src };
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{name} does not parse:\n{}", e.emit_to_string(&src)));
            let mut v =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all());
            v.validate(&module).unwrap_or_else(|e| panic!("{name} does not validate:\n{}", e.emit_to_string(&src)));
            assert!(names().any(|n| n == name) && is_library(name), "{name} is registered as a library");
        }
    }

    /// Every library is included by some kernel (a library nobody includes
    /// is a kernel without `@compute`, or dead), and names are unique
    /// between the files and the generated sources.
    #[test]
    fn libraries_are_included_and_names_unique() {
        let all: Vec<&str> = names().collect();
        for (i, n) in all.iter().enumerate() {
            assert!(!all[..i].contains(n), "{n} is both a file and a generated source, or listed twice");
        }
        let expanded: Vec<String> = kernels().map(source).collect();
        for lib in all.iter().filter(|n| is_library(n)) {
            let first = raw(lib).lines().find(|l| !l.trim().is_empty() && !l.trim().starts_with("//"));
            let used = kernels().any(|k| raw(k).contains(&format!("//#include {lib}.wgsl")))
                || all.iter().any(|n| raw(n).contains(&format!("//#include {lib}.wgsl")));
            assert!(used, "library {lib} is included by nothing");
            // Its text ends up in some kernel's expanded source.
            if let Some(line) = first {
                assert!(expanded.iter().any(|e| e.contains(line)), "library {lib}'s {line:?} reaches no kernel");
            }
        }
    }

    /// The generated switches hold one case per table row, numbered by the
    /// Rust side's `code()`, so WGSL and CPU twin cannot disagree on codes.
    #[test]
    fn generated_libraries_follow_the_op_tables() {
        use crate::kernels::{binary::BinaryOp, unary::UnaryOp};
        let unary = source("unary");
        for (i, op) in UnaryOp::EXAMPLES.iter().enumerate() {
            assert_eq!(op.code() as usize, i, "{op:?} is not at its row");
            // One case in f, one in df.
            let case = format!("// {}\n        case {}u:", op.name(), op.code());
            assert_eq!(unary.matches(&case).count(), 2, "{op:?} lacks its f/df cases:\n{unary}");
        }
        assert_eq!(unary.matches("case ").count(), 2 * UnaryOp::EXAMPLES.len());
        let binary = source("binary");
        for op in BinaryOp::ALL {
            let case = format!("// {}\n        case {}u:", op.name(), op.code());
            assert_eq!(binary.matches(&case).count(), 1, "{op:?} lacks its case:\n{binary}");
        }
        assert_eq!(binary.matches("case ").count(), BinaryOp::ALL.len());
    }

    /// Each declared `Params` (the Rust writers' side, `ops::params::DECLS`)
    /// against its shader's `struct Params` as naga reflects it: the same
    /// members in the same order, at the same byte offsets, of the same types.
    #[test]
    fn params_declarations_match_the_wgsl_structs() {
        use crate::ops::{Kind, ParamsDecl};
        use naga::{ArraySize, Scalar, TypeInner, VectorSize};
        fn kind_of(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Option<Kind> {
            match &module.types[ty].inner {
                TypeInner::Scalar(Scalar::U32) => Some(Kind::U32),
                TypeInner::Scalar(Scalar::F32) => Some(Kind::F32),
                TypeInner::Vector { size: VectorSize::Quad, scalar: Scalar::F32 } => Some(Kind::F32x4),
                TypeInner::Array { base, size: ArraySize::Constant(n), .. } => {
                    match (n.get(), &module.types[*base].inner) {
                        (2, TypeInner::Vector { size: VectorSize::Quad, scalar: Scalar::U32 }) => Some(Kind::Dims),
                        (4, TypeInner::Vector { size: VectorSize::Quad, scalar: Scalar::F32 }) => Some(Kind::F32x16),
                        _ => None,
                    }
                }
                _ => None,
            }
        }
        let check = |decl: &ParamsDecl| {
            let src = source(decl.shader);
            let module = naga::front::wgsl::parse_str(&src).expect("parses (checked above)");
            let (_, ty) = module
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some("Params"))
                .unwrap_or_else(|| panic!("{} has no struct Params", decl.shader));
            let TypeInner::Struct { members, .. } = &ty.inner else { panic!("{}: Params is no struct", decl.shader) };
            let wgsl: Vec<_> = members
                .iter()
                .map(|m| (m.name.clone().unwrap_or_default(), m.offset, kind_of(&module, m.ty)))
                .collect();
            let rust: Vec<_> = decl
                .fields
                .iter()
                .zip(decl.offsets())
                .map(|((name, kind), offset)| (name.to_string(), offset, Some(*kind)))
                .collect();
            assert_eq!(wgsl, rust, "{}.wgsl's Params (left) differs from its Rust declaration (right)", decl.shader);
        };
        assert!(!crate::ops::params::DECLS.is_empty());
        for decl in crate::ops::params::DECLS {
            check(decl);
        }
        // Every kernel file with a uniform block has its declaration (which
        // build.rs finds in the op files): none is written unchecked.
        for (name, raw) in SOURCES {
            if raw.contains("var<uniform> p:") {
                assert!(
                    crate::ops::params::DECLS.iter().any(|d| d.shader == *name),
                    "shaders/{name}.wgsl's Params has no `pub(crate) const ...: ParamsDecl` in src/ops/"
                );
            }
        }
        // The check can fail: a declaration with two members swapped does.
        let swapped = ParamsDecl { shader: "fill", fields: &[("n", Kind::U32), ("b", Kind::F32), ("a", Kind::F32)] };
        assert!(std::panic::catch_unwind(|| check(&swapped)).is_err());
    }

    /// The f16 variants differ from their f32 kernels in the operand
    /// library alone, and the native ones enable f16 before anything else.
    #[test]
    fn f16_variants_swap_only_the_operand_library() {
        for (name, base) in [("matmul_f16", "matmul"), ("matmul_subgroup_f16_native", "matmul_subgroup")] {
            let (v, f) = (source(name), source(base));
            assert!(!v.contains("array<vec4<f32>>") && f.contains("array<vec4<f32>>"), "{name}");
            let strip = |s: &str| s.lines().filter(|l| !l.contains("binding(1)") && !l.contains("binding(2)")).count();
            assert!(strip(&v).abs_diff(strip(&f)) < 20, "{name} differs from {base} beyond its loads");
        }
        for name in ["matmul_subgroup_f16_native", "batch_norm_f16_native"] {
            let native = source(name);
            let first = native.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"));
            assert_eq!(first, Some("enable f16;"), "{name}");
            assert_eq!(native.lines().filter(|l| l.trim() == "enable f16;").count(), 1, "{name}");
        }
    }

    /// The batch-norm kernels touch activations only through their storage
    /// library: the kernel file declares no f32 activation binding of its
    /// own, and the f16 variants differ from it in the included library
    /// alone (no f32 array at an activation binding).
    #[test]
    fn batch_norm_variants_swap_only_the_storage_library() {
        const ACTIVATIONS: [&str; 9] =
            ["x_in", "dy_in", "x2_in", "y_in", "res_in", "y_out", "y_res_out", "dx_out", "dres_out"];
        let declares = |l: &str| l.contains("var<storage") && ACTIVATIONS.iter().any(|n| l.contains(&format!(" {n}:")));
        let base = raw("batch_norm");
        assert!(!base.lines().any(declares), "batch_norm.wgsl declares an activation binding itself");
        assert_eq!(source("batch_norm").lines().filter(|l| declares(l)).count(), ACTIVATIONS.len());
        let body = |s: &str| -> Vec<String> {
            s.lines().filter(|l| !l.starts_with("//#include") && l.trim() != "enable f16;").map(String::from).collect()
        };
        let tex = source("batch_norm_tex");
        assert_eq!(
            body(raw("batch_norm_tex")),
            body(base),
            "batch_norm_tex differs from batch_norm beyond its include"
        );
        assert_eq!(tex.lines().filter(|l| declares(l)).count(), 4, "batch_norm_tex: only its outputs are buffers");
        let textures = |l: &str| {
            l.contains("texture_storage_2d<r32float, read>")
                && ACTIVATIONS.iter().any(|n| l.contains(&format!(" {n}:")))
        };
        assert_eq!(tex.lines().filter(|l| textures(l)).count(), 5, "batch_norm_tex: its inputs are textures");
        for name in ["batch_norm_f16", "batch_norm_f16_native"] {
            assert_eq!(body(raw(name)), body(base), "{name} differs from batch_norm beyond its include");
            let src = source(name);
            let activations: Vec<&str> = src.lines().filter(|l| declares(l)).collect();
            assert_eq!(activations.len(), ACTIVATIONS.len(), "{name}");
            assert!(activations.iter().all(|l| !l.contains("f32")), "{name}: an f32 activation:\n{activations:#?}");
            assert!(!src.contains("array<vec4<f32>>"), "{name} keeps an f32 vec4 activation");
        }
    }

    /// The pooling kernels read and write values only through their storage
    /// library; the f16 variants differ in that include alone and keep no
    /// f32 array.
    #[test]
    fn pool_variants_swap_only_the_storage_library() {
        let base = raw("pool");
        assert!(!base.lines().any(|l| l.contains("array<f32>")), "pool.wgsl declares f32 storage itself");
        let body = |s: &str| -> Vec<String> {
            s.lines().filter(|l| !l.starts_with("//#include") && l.trim() != "enable f16;").map(String::from).collect()
        };
        for name in ["pool_f16", "pool_f16_native"] {
            assert_eq!(body(raw(name)), body(base), "{name} differs from pool beyond its include");
            assert!(!source(name).contains("array<f32>"), "{name} keeps an f32 array");
        }
        assert!(source("pool_f16_native").contains("array<f16>"));
    }

    /// The inputs a pipeline binds as textures are read from its kernel
    /// (`gpu/texture_operands.rs`): only the `_tex` variants read any, each
    /// the variant [`texture_variant`] finds for its base, every texture of
    /// the kind the host fills (the reading panics otherwise), and the masks
    /// are the inputs each entry point reads (checked here for some by hand).
    #[test]
    fn texture_inputs_are_read_from_the_kernels() {
        use crate::gpu::texture_operands::texture_inputs;
        let mut masks = std::collections::HashMap::new();
        for shader in kernels() {
            let parsed = crate::gpu::specialize::parse(&source(shader)).unwrap_or_else(|| panic!("{shader} parses"));
            for ep in &parsed.module.entry_points {
                let mask = texture_inputs(&parsed.module, &parsed.info, &ep.name);
                match shader.strip_suffix("_tex") {
                    Some(base) => {
                        assert_eq!(texture_variant(base), Some(shader), "{shader} is {base}'s texture variant")
                    }
                    None => assert_eq!(mask, 0, "{shader}:{} reads textures but is no _tex variant", ep.name),
                }
                masks.insert((shader, ep.name.clone()), mask);
            }
        }
        let mask = |shader: &'static str, entry: &str| masks[&(shader, entry.to_string())];
        // (binding 1 + i for bit i)
        assert_eq!(mask("pool_tex", "max_backward"), 0b11, "output gradient and argmax");
        assert_eq!(mask("pool_tex", "avg_backward"), 0b1);
        assert_eq!(mask("pool_relu_grad_tex", "max_backward"), 0b111, "and the ReLU's output");
        assert_eq!(mask("unary_grad_tex", "main"), 0b111, "x, y, g");
        assert_eq!(mask("batch_norm_tex", "stats_partial"), 0b1);
        assert_eq!(mask("batch_norm_tex", "backward"), 0b111_1111);
        assert_eq!(mask("matmul_subgroup_cell_tex", "main_subgroup"), 0b1_1111);
        assert_eq!(mask("binary_tex", "main"), 0b11);
        assert!(masks.values().filter(|&&m| m != 0).count() >= 11);
    }

    #[test]
    fn includes_are_pasted_once() {
        let src = source("binary");
        assert_eq!(src.matches("fn strided_offset").count(), 1);
        assert!(!src.lines().any(|l| l.trim_start().starts_with("//#include")));
    }
}

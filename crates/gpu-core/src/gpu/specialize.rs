//! Override constants applied before the driver sees a kernel, and the
//! branches they decide removed.
//!
//! A kernel's variants differ by WGSL `override` constants (a matmul's tile,
//! row groups, gather form, f16 store). Handed to wgpu as WGSL plus
//! constants, every variant reached the driver with all the code of the
//! others behind branches on constants: the subgroup matmul stores up to 64
//! rows of which a variant uses 8-32, and each store carries an f16 path
//! that f32 products never take. Drivers inline all of it before they
//! fold those branches away; lavapipe spent 0.3-0.45 s creating each
//! matmul pipeline, most of it on code it then discarded
//! (docs/history/performance-issue-11.md, "Specialised kernels").
//!
//! So a registry kernel is parsed once, and each pipeline gets its own
//! module: naga applies the constants (`process_overrides`, as wgpu would
//! at pipeline creation, keeping only the entry point and what it calls),
//! then [`prune`] replaces every `if` whose condition became a constant by
//! the block it takes, and unreachable functions are dropped. The code
//! that remains is the code the driver would have run; results do not
//! change. This module must not change what a kernel computes: it only
//! removes statements no invocation can reach.

// In the browser nothing is specialised (see `parse`): the pruning is unused there.
#![cfg_attr(target_arch = "wasm32", allow(dead_code, unused_imports))]

#[cfg(not(target_arch = "wasm32"))]
use wgpu::naga::back::pipeline_constants::process_overrides;
use wgpu::naga::valid::ModuleInfo;
#[cfg(not(target_arch = "wasm32"))]
use wgpu::naga::valid::{Capabilities, ValidationFlags, Validator};
use wgpu::naga::{Block, Expression, Literal, Module, Statement};

/// Whether `src` has a loop whose end no counter bounds: the compare-and-swap
/// retry loops (`loop { ... atomicCompareExchangeWeak ... }`). Every other
/// loop of our kernels counts up to a bound read from a uniform or constant.
pub(crate) fn has_retry_loop(src: &str) -> bool {
    src.contains("loop {")
}

/// A registry shader parsed and validated once, specialised per pipeline.
pub(crate) struct Parsed {
    pub(crate) module: Module,
    pub(crate) info: ModuleInfo,
    /// Whether the WGSL has a retry loop (`pipelines::create_module`: such
    /// a shader keeps wgpu's loop bounding).
    pub(crate) retry_loop: bool,
}

/// Parses and validates `source`; `None` when naga rejects it (the caller
/// then hands wgpu the WGSL, which reports the error its usual way).
///
/// Always `None` in the browser: WebGPU takes WGSL text (wgpu's web
/// backend has no naga-IR shaders) and applies the constants itself.
#[cfg(target_arch = "wasm32")]
pub(crate) fn parse(_source: &str) -> Option<Parsed> {
    None
}

/// Parses and validates `source` (see the wasm32 twin above).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn parse(source: &str) -> Option<Parsed> {
    let module = wgpu::naga::front::wgsl::parse_str(source).ok()?;
    let info = Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&module).ok()?;
    Some(Parsed { module, info, retry_loop: has_retry_loop(source) })
}

/// Nothing in the browser, where nothing is [parsed](parse).
#[cfg(target_arch = "wasm32")]
pub(crate) fn specialize(_parsed: &Parsed, _entry: &str, _constants: &[(&str, f64)]) -> Option<Module> {
    None
}

/// `parsed` with `constants` applied for compute entry point `entry`, its
/// constant branches pruned and unused functions dropped; `None` when a
/// constant does not apply (wgpu then reports it from the WGSL path).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn specialize(parsed: &Parsed, entry: &str, constants: &[(&str, f64)]) -> Option<Module> {
    let mut values = wgpu::naga::back::PipelineConstants::default();
    for &(name, value) in constants {
        values.insert(name.to_string(), value);
    }
    let stage = Some((wgpu::naga::ShaderStage::Compute, entry));
    let (module, _) = process_overrides(&parsed.module, &parsed.info, stage, &values).ok()?;
    let mut module = module.into_owned();
    // A condition is decided when it is a bool literal, or a constant whose
    // value is one (overrides become constants).
    let Module { constants, global_expressions, functions, entry_points, .. } = &mut module;
    let literal = |e: &Expression| match e {
        Expression::Literal(Literal::Bool(b)) => Some(*b),
        _ => None,
    };
    let decided = |e: &Expression| match e {
        Expression::Constant(c) => literal(&global_expressions[constants[*c].init]),
        e => literal(e),
    };
    for f in functions.iter_mut().map(|(_, f)| f).chain(entry_points.iter_mut().map(|ep| &mut ep.function)) {
        let body = std::mem::take(&mut f.body);
        let exprs = &f.expressions;
        f.body = prune(body, &|h| decided(&exprs[h]));
        // Names only label `let` values for debuggers, but compaction keeps
        // every named expression alive, and one whose `let` sat in a pruned
        // branch would be kept without its statement (invalid IR).
        f.named_expressions.clear();
    }
    // Drops the expressions, calls and functions only pruned code used.
    wgpu::naga::compact::compact(&mut module, wgpu::naga::compact::KeepUnused::No);
    Some(module)
}

/// `block` with every `if` whose condition `decided` knows replaced by the
/// branch it takes, in nested blocks too; statements after a branch that
/// ends in a `return`, `break` or `continue` are dropped (never reached).
pub(crate) fn prune(block: Block, decided: &dyn Fn(wgpu::naga::Handle<Expression>) -> Option<bool>) -> Block {
    let mut out = Block::with_capacity(block.len());
    for (statement, span) in block.span_into_iter() {
        match statement {
            Statement::If { condition, accept, reject } => match decided(condition) {
                Some(taken) => {
                    let inner = prune(if taken { accept } else { reject }, decided);
                    let ends = inner.last().is_some_and(terminates);
                    out.extend_block(inner);
                    if ends {
                        break;
                    }
                }
                None => out.push(
                    Statement::If { condition, accept: prune(accept, decided), reject: prune(reject, decided) },
                    span,
                ),
            },
            Statement::Block(b) => out.push(Statement::Block(prune(b, decided)), span),
            Statement::Loop { body, continuing, break_if } => out.push(
                Statement::Loop { body: prune(body, decided), continuing: prune(continuing, decided), break_if },
                span,
            ),
            Statement::Switch { selector, cases } => {
                let cases =
                    cases.into_iter().map(|c| wgpu::naga::SwitchCase { body: prune(c.body, decided), ..c }).collect();
                out.push(Statement::Switch { selector, cases }, span)
            }
            s => {
                let ends = terminates(&s);
                out.push(s, span);
                if ends {
                    break;
                }
            }
        }
    }
    out
}

/// Statements after which nothing in the same block runs.
fn terminates(s: &Statement) -> bool {
    matches!(s, Statement::Return { .. } | Statement::Break | Statement::Continue | Statement::Kill)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Statements in `block` and its nested blocks, and the `if`s among
    /// them, with each call counted as its callee's body (as a driver
    /// inlines it).
    fn count(module: &Module, block: &Block) -> (usize, usize) {
        let mut n = (0, 0);
        for s in block.iter() {
            let inner: Vec<&Block> = match s {
                Statement::If { accept, reject, .. } => {
                    n.1 += 1;
                    vec![accept, reject]
                }
                Statement::Block(b) => vec![b],
                Statement::Loop { body, continuing, .. } => vec![body, continuing],
                Statement::Switch { cases, .. } => cases.iter().map(|c| &c.body).collect(),
                Statement::Call { function, .. } => vec![&module.functions[*function].body],
                _ => vec![],
            };
            n.0 += 1;
            for b in inner {
                let (s, i) = count(module, b);
                n = (n.0 + s, n.1 + i);
            }
        }
        n
    }

    /// The entry point's statements and `if`s, callees inlined.
    fn entry_counts(module: &Module) -> (usize, usize) {
        count(module, &module.entry_points[0].function.body)
    }

    const SOURCE: &str = "
        override WIDE: bool = false;
        override GROUPS: u32 = 1u;
        @group(0) @binding(0) var<storage, read_write> out: array<u32>;
        fn wide_part(i: u32) -> u32 {
            return i * 3u + 1u;
        }
        @compute @workgroup_size(1)
        fn main(@builtin(global_invocation_id) id: vec3<u32>) {
            var v = id.x;
            if WIDE {
                v = wide_part(v);
            }
            if GROUPS > 1u {
                v += 2u;
                if GROUPS > 2u {
                    out[1] = v;
                    return;
                }
            }
            if id.x > 3u {
                v += 1u;
            }
            out[0] = v;
        }
        @compute @workgroup_size(1)
        fn other() {
            out[2] = 7u;
        }
    ";

    #[test]
    fn constant_branches_are_pruned_and_runtime_ones_kept() {
        let parsed = parse(SOURCE).expect("parses");
        let narrow = specialize(&parsed, "main", &[("WIDE", 0.0), ("GROUPS", 1.0)]).unwrap();
        // Only the branch on the invocation id is left; the other entry
        // point and the function only the pruned branch called are gone.
        assert_eq!(entry_counts(&narrow).1, 1);
        assert_eq!(narrow.entry_points.len(), 1);
        assert!(narrow.functions.is_empty(), "wide_part is unreachable");
        assert!(narrow.overrides.is_empty());

        let wide = specialize(&parsed, "main", &[("WIDE", 1.0), ("GROUPS", 3.0)]).unwrap();
        assert_eq!(wide.functions.len(), 1, "wide_part is called");
        // GROUPS > 2 returns: the branch on the id after it is unreachable.
        assert_eq!(entry_counts(&wide).1, 0);

        // Both validate as wgpu will.
        for m in [&narrow, &wide] {
            Validator::new(ValidationFlags::all(), Capabilities::all()).validate(m).expect("valid IR");
        }
        assert!(specialize(&parsed, "main", &[("NO_SUCH", 1.0)]).is_none(), "an unknown constant");
    }

    /// Every entry point of every registry kernel specialises to IR that
    /// validates: the f16-native kernels too, which lavapipe (no
    /// SHADER_F16) never compiles in CI. (Without values naga keeps the
    /// overrides, and wgpu applies their defaults.)
    #[test]
    fn every_kernel_specialises_to_valid_ir() {
        let mut entries = 0;
        for name in crate::shaders::kernels() {
            let parsed = parse(&crate::shaders::source(name)).unwrap_or_else(|| panic!("{name} does not parse"));
            for ep in &parsed.module.entry_points {
                let m = specialize(&parsed, &ep.name, &[])
                    .unwrap_or_else(|| panic!("{name}:{} does not specialise", ep.name));
                let valid = Validator::new(ValidationFlags::all(), Capabilities::all()).validate(&m);
                assert!(valid.is_ok(), "{name}:{}: {valid:?}", ep.name);
                assert_eq!(m.entry_points.len(), 1, "{name}:{}", ep.name);
                entries += 1;
            }
        }
        assert!(entries > 100, "{entries} entry points");
    }

    /// The subgroup matmul with one row group and f32 stores: the code of
    /// seven more row groups and of the f16 store is gone before a driver
    /// sees it (it was most of what lavapipe compiled).
    #[test]
    fn a_narrow_matmul_variant_keeps_a_fraction_of_the_kernel() {
        let parsed = parse(&crate::shaders::source("matmul_subgroup_tex")).expect("parses");
        let constants = [("A_MODE", 3.0), ("B_MODE", 3.0), ("ROW_GROUPS", 1.0), ("TILE_M", 8.0), ("TILE_N", 32.0)];
        let narrow = specialize(&parsed, "main_subgroup", &constants).unwrap();
        let widest = [("A_MODE", 3.0), ("B_MODE", 3.0), ("ROW_GROUPS", 8.0), ("TILE_M", 64.0), ("TILE_N", 64.0)];
        let wide = specialize(&parsed, "main_subgroup", &widest).unwrap();
        let f16 = specialize(&parsed, "main_subgroup", &[widest.as_slice(), &[("F16_OUT", 1.0)]].concat()).unwrap();
        let (n, w, h) = (entry_counts(&narrow).0, entry_counts(&wide).0, entry_counts(&f16).0);
        // What wgpu handed the driver before: the constants applied, every branch kept.
        let mut values = wgpu::naga::back::PipelineConstants::default();
        for (name, value) in constants {
            values.insert(name.to_string(), value);
        }
        let stage = Some((wgpu::naga::ShaderStage::Compute, "main_subgroup"));
        let unpruned = process_overrides(&parsed.module, &parsed.info, stage, &values).unwrap().0;
        let before = entry_counts(&unpruned).0;
        eprintln!(
            "statements, calls inlined: {before} unpruned, {n} one row group, {w} eight, {h} eight with f16 stores"
        );
        assert!(n * 4 < before, "one row group: {n} statements of {before}");
        assert!(n * 2 < w, "one row group: {n} statements, eight: {w}");
        assert!(w < h, "f32 stores: {w} statements, f16: {h}");
        for m in [&narrow, &wide, &f16] {
            Validator::new(ValidationFlags::all(), Capabilities::all()).validate(m).expect("valid IR");
        }
    }
}

/// The matrix-unit matmul (`matmul_coop.wgsl`) is specialised and written
/// as SPIR-V here, on every machine: lavapipe does not offer cooperative
/// matrices, so without this a kernel naga's Vulkan backend rejects would
/// fail only on the GPUs that run it.
#[cfg(test)]
mod coop_tests {
    use super::*;

    #[test]
    fn the_matrix_unit_matmul_specialises_and_writes_spirv() {
        for (shader, act, fr) in [
            ("matmul_coop", None, 16.0),
            ("matmul_coop_act", Some(("OP", 1.0)), 16.0),
            ("matmul_coop8", None, 8.0),
            ("matmul_coop8_act", Some(("OP", 1.0)), 8.0),
        ] {
            let parsed = parse(&crate::shaders::source(shader)).expect("parses and validates");
            for (sg_m, sg_n, frags, a_k_fast, b_k_fast, vec, f16_out, conv, prefetch) in [
                (2.0, 2.0, 2.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0),
                (4.0, 4.0, 2.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0),
                (1.0, 2.0, 2.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0),
                (4.0, 2.0, 4.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0),
            ] {
                let mut constants = vec![
                    ("SG_M", sg_m),
                    ("SG_N", sg_n),
                    ("FN", frags),
                    ("SG_SIZE", 32.0),
                    ("TILE_M", 2.0 * fr * sg_m),
                    ("TILE_N", fr * frags * sg_n),
                    ("A_K_FAST", a_k_fast),
                    ("B_K_FAST", b_k_fast),
                    ("A_VEC", vec),
                    ("B_VEC", vec),
                    ("F16_OUT", f16_out),
                    ("B_CONV", conv),
                    ("PREFETCH", prefetch),
                ];
                constants.extend(act);
                let module = specialize(&parsed, "main_coop", &constants)
                    .unwrap_or_else(|| panic!("{shader} {constants:?} does not specialise"));
                let info = Validator::new(ValidationFlags::all(), Capabilities::all())
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{shader} {constants:?}: {e:?}"));
                let options = wgpu::naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
                let stage = wgpu::naga::back::spv::PipelineOptions {
                    shader_stage: wgpu::naga::ShaderStage::Compute,
                    entry_point: "main_coop".into(),
                };
                let words = wgpu::naga::back::spv::write_vec(&module, &info, &options, Some(&stage))
                    .unwrap_or_else(|e| panic!("{shader} {constants:?}: SPIR-V: {e}"));
                // OpCapability CooperativeMatrixKHR (6022) is declared.
                assert!(words.windows(2).any(|w| w == [(2 << 16) | 17, 6022]), "{shader}: no CooperativeMatrixKHR");
            }
        }
    }
}

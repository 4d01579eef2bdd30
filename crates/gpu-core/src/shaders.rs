//! The WGSL kernel registry: every file of `shaders/`, embedded at compile
//! time, plus the libraries generated from the op tables ([`GENERATED`]), with
//! `//#include NAME.wgsl` lines resolved.
//!
//! WGSL has no include mechanism; this one-line directive is the small
//! generator that lets kernels share helpers instead of copying them.

/// (name, raw source) of every shader file. Names without an entry point
/// (`common`) are libraries for `//#include`.
pub const SOURCES: &[(&str, &str)] = &[
    ("common", include_str!("../../../shaders/common.wgsl")),
    ("window", include_str!("../../../shaders/window.wgsl")),
    ("activations", include_str!("../../../shaders/activations.wgsl")),
    ("lstm_cell", include_str!("../../../shaders/lstm_cell.wgsl")),
    ("fill", include_str!("../../../shaders/fill.wgsl")),
    ("convert", include_str!("../../../shaders/convert.wgsl")),
    ("augment", include_str!("../../../shaders/augment.wgsl")),
    ("reduce", include_str!("../../../shaders/reduce.wgsl")),
    ("random", include_str!("../../../shaders/random.wgsl")),
    ("philox", include_str!("../../../shaders/philox.wgsl")),
    ("softmax", include_str!("../../../shaders/softmax.wgsl")),
    ("cast", include_str!("../../../shaders/cast.wgsl")),
    ("half", include_str!("../../../shaders/half.wgsl")),
    ("unary", include_str!("../../../shaders/unary.wgsl")),
    ("unary_helpers", include_str!("../../../shaders/unary_helpers.wgsl")),
    ("unary_grad", include_str!("../../../shaders/unary_grad.wgsl")),
    ("binary", include_str!("../../../shaders/binary.wgsl")),
    ("where", include_str!("../../../shaders/where.wgsl")),
    ("matmul", include_str!("../../../shaders/matmul.wgsl")),
    ("matmul_subgroup", include_str!("../../../shaders/matmul_subgroup.wgsl")),
    ("matmul_coop", include_str!("../../../shaders/matmul_coop.wgsl")),
    ("matmul_store", include_str!("../../../shaders/matmul_store.wgsl")),
    ("matmul_store_sums", include_str!("../../../shaders/matmul_store_sums.wgsl")),
    ("matmul_store_sums_act", include_str!("../../../shaders/matmul_store_sums_act.wgsl")),
    ("matmul_store_cell", include_str!("../../../shaders/matmul_store_cell.wgsl")),
    ("cell_inputs_f32", include_str!("../../../shaders/cell_inputs_f32.wgsl")),
    ("cell_inputs_tex", include_str!("../../../shaders/cell_inputs_tex.wgsl")),
    ("operands_f32", include_str!("../../../shaders/operands_f32.wgsl")),
    ("matmul_operands_f16", include_str!("../../../shaders/matmul_operands_f16.wgsl")),
    ("matmul_operands_f16_native", include_str!("../../../shaders/matmul_operands_f16_native.wgsl")),
    ("operands_tex", include_str!("../../../shaders/operands_tex.wgsl")),
    ("texels", include_str!("../../../shaders/texels.wgsl")),
    ("copy", include_str!("../../../shaders/copy.wgsl")),
    ("index", include_str!("../../../shaders/index.wgsl")),
    ("index_check", include_str!("../../../shaders/index_check.wgsl")),
    ("pool", include_str!("../../../shaders/pool.wgsl")),
    ("row_grads_f32", include_str!("../../../shaders/row_grads_f32.wgsl")),
    ("row_grads_tex", include_str!("../../../shaders/row_grads_tex.wgsl")),
    ("copy_src_buffer", include_str!("../../../shaders/copy_src_buffer.wgsl")),
    ("copy_src_tex", include_str!("../../../shaders/copy_src_tex.wgsl")),
    ("recurrent_inputs_f32", include_str!("../../../shaders/recurrent_inputs_f32.wgsl")),
    ("row_serial", include_str!("../../../shaders/row_serial.wgsl")),
    ("recurrent_inputs_tex", include_str!("../../../shaders/recurrent_inputs_tex.wgsl")),
    ("pool_io_f32", include_str!("../../../shaders/pool_io_f32.wgsl")),
    ("pool_io_tex", include_str!("../../../shaders/pool_io_tex.wgsl")),
    ("pool_out_f32", include_str!("../../../shaders/pool_out_f32.wgsl")),
    ("pool_arg_buffer", include_str!("../../../shaders/pool_arg_buffer.wgsl")),
    ("pool_io_f16", include_str!("../../../shaders/pool_io_f16.wgsl")),
    ("pool_io_f16_native", include_str!("../../../shaders/pool_io_f16_native.wgsl")),
    ("pool_io_f16_common", include_str!("../../../shaders/pool_io_f16_common.wgsl")),
    ("norm", include_str!("../../../shaders/norm.wgsl")),
    ("batch_norm", include_str!("../../../shaders/batch_norm.wgsl")),
    ("batch_norm_io_f32", include_str!("../../../shaders/batch_norm_io_f32.wgsl")),
    ("batch_norm_io_f16", include_str!("../../../shaders/batch_norm_io_f16.wgsl")),
    ("batch_norm_io_f16_native", include_str!("../../../shaders/batch_norm_io_f16_native.wgsl")),
    ("batch_norm_io_f16_common", include_str!("../../../shaders/batch_norm_io_f16_common.wgsl")),
    ("batch_norm_io_tex", include_str!("../../../shaders/batch_norm_io_tex.wgsl")),
    ("batch_norm_out_f32", include_str!("../../../shaders/batch_norm_out_f32.wgsl")),
    ("batch_norm_channels_f32", include_str!("../../../shaders/batch_norm_channels_f32.wgsl")),
    ("batch_norm_channels_tex", include_str!("../../../shaders/batch_norm_channels_tex.wgsl")),
    ("conv", include_str!("../../../shaders/conv.wgsl")),
    ("optim", include_str!("../../../shaders/optim.wgsl")),
    ("attention", include_str!("../../../shaders/attention.wgsl")),
    ("attention_io_f32", include_str!("../../../shaders/attention_io_f32.wgsl")),
    ("attention_io_f16", include_str!("../../../shaders/attention_io_f16.wgsl")),
    ("attention_io_f16_native", include_str!("../../../shaders/attention_io_f16_native.wgsl")),
    ("attention_io_f16_common", include_str!("../../../shaders/attention_io_f16_common.wgsl")),
    ("recurrent", include_str!("../../../shaders/recurrent.wgsl")),
    ("amp", include_str!("../../../shaders/amp.wgsl")),
    ("load_x_f32", include_str!("../../../shaders/load_x_f32.wgsl")),
    ("load_x_f16", include_str!("../../../shaders/load_x_f16.wgsl")),
    ("load_x_f16_native", include_str!("../../../shaders/load_x_f16_native.wgsl")),
    ("load_x_tex", include_str!("../../../shaders/load_x_tex.wgsl")),
    ("unary_grad_inputs_f32", include_str!("../../../shaders/unary_grad_inputs_f32.wgsl")),
    ("unary_grad_inputs_tex", include_str!("../../../shaders/unary_grad_inputs_tex.wgsl")),
];

/// Shader files that are include-only libraries.
pub const LIBRARIES: &[&str] = &[
    "common",
    "window",
    "index_check",
    "half",
    "activations",
    "lstm_cell",
    "unary_helpers",
    "unary_fns",
    "binary_fns",
    "philox",
    "operands_f32",
    "matmul_operands_f16",
    "matmul_operands_f16_native",
    "operands_tex",
    "matmul_store",
    "matmul_f16_native_body",
    "matmul_act_f16_native_body",
    "matmul_store_sums",
    "matmul_store_sums_act",
    "matmul_store_act",
    "matmul_store_cell",
    "matmul_store_cell_tex",
    "cell_inputs_f32",
    "cell_inputs_tex",
    "texels",
    "batch_norm_io_f32",
    "batch_norm_io_f16",
    "batch_norm_io_f16_native",
    "batch_norm_io_f16_common",
    "batch_norm_io_tex",
    "batch_norm_out_f32",
    "batch_norm_channels_f32",
    "batch_norm_channels_tex",
    "load_x_f32",
    "load_x_f16",
    "load_x_f16_native",
    "load_x_tex",
    "unary_grad_inputs_f32",
    "unary_grad_inputs_tex",
    "row_grads_f32",
    "row_grads_tex",
    "copy_src_buffer",
    "copy_src_tex",
    "recurrent_inputs_f32",
    "row_serial",
    "recurrent_inputs_tex",
    "pool_io_f32",
    "pool_io_tex",
    "pool_out_f32",
    "pool_arg_buffer",
    "pool_io_f16",
    "pool_io_f16_native",
    "pool_io_f16_common",
    "attention_io_f32",
    "attention_io_f16",
    "attention_io_f16_native",
    "attention_io_f16_common",
];

/// A generated source's builder.
pub type Generator = fn() -> String;

/// (name, generator) of the sources generated rather than written as files:
/// the libraries built from the elementwise op tables, and the f16-storage
/// variants of the matmul, batch-norm, pooling and attention kernels and the
/// f16-input variants of softmax, row norm and reduce (one swapped
/// `//#include`, see `variant`). Each is generated once per process.
pub const GENERATED: &[(&str, Generator)] = &[
    ("unary_fns", crate::kernels::unary::wgsl_library),
    ("binary_fns", crate::kernels::binary::wgsl_library),
    ("matmul_f16", || variant("matmul", "operands_f32", "matmul_operands_f16", false)),
    ("matmul_f16_native", || variant("matmul", "operands_f32", "matmul_operands_f16_native", true)),
    ("matmul_subgroup_f16", || variant("matmul_subgroup", "matmul", "matmul_f16", false)),
    ("matmul_subgroup_f16_native", || variant("matmul_subgroup", "matmul", "matmul_f16_native", false)),
    // The matrix-unit kernel (f16 operands only) opens with its own `enable`
    // lines, so it includes these bodies: the f16 variants without them.
    ("matmul_f16_native_body", || variant("matmul", "operands_f32", "matmul_operands_f16_native", false)),
    ("matmul_act_f16_native_body", || {
        variant_swaps(
            "matmul",
            &[("operands_f32", "matmul_operands_f16_native"), ("matmul_store", "matmul_store_act")],
            false,
        )
    }),
    ("matmul_coop_act", || variant("matmul_coop", "matmul_f16_native_body", "matmul_act_f16_native_body", false)),
    ("matmul_tex", || variant("matmul", "operands_f32", "operands_tex", false)),
    ("matmul_subgroup_tex", || variant("matmul_subgroup", "matmul", "matmul_tex", false)),
    // A unary op after the epilogue (matmul_store_sums_act.wgsl), f32 results.
    ("matmul_store_act", || variant("matmul_store", "matmul_store_sums", "matmul_store_sums_act", false)),
    ("matmul_act", || variant("matmul", "matmul_store", "matmul_store_act", false)),
    ("matmul_subgroup_act", || variant("matmul_subgroup", "matmul", "matmul_act", false)),
    ("matmul_act_tex", || {
        variant_swaps("matmul", &[("operands_f32", "operands_tex"), ("matmul_store", "matmul_store_act")], false)
    }),
    ("matmul_subgroup_act_tex", || variant("matmul_subgroup", "matmul", "matmul_act_tex", false)),
    // An LSTM step's cell in the product's store (matmul_store_cell.wgsl):
    // for GPUs, and for CPU adapters with buffer or texture inputs.
    ("matmul_cell", || variant("matmul", "matmul_store", "matmul_store_cell", false)),
    ("matmul_subgroup_cell", || variant("matmul_subgroup", "matmul", "matmul_cell", false)),
    ("matmul_store_cell_tex", || variant("matmul_store_cell", "cell_inputs_f32", "cell_inputs_tex", false)),
    ("matmul_cell_tex", || {
        variant_swaps("matmul", &[("operands_f32", "operands_tex"), ("matmul_store", "matmul_store_cell_tex")], false)
    }),
    ("matmul_subgroup_cell_tex", || variant("matmul_subgroup", "matmul", "matmul_cell_tex", false)),
    ("batch_norm_f16", || variant("batch_norm", "batch_norm_io_f32", "batch_norm_io_f16", false)),
    ("batch_norm_f16_native", || variant("batch_norm", "batch_norm_io_f32", "batch_norm_io_f16_native", true)),
    ("batch_norm_tex", || variant("batch_norm", "batch_norm_io_f32", "batch_norm_io_tex", false)),
    ("softmax_f16", || variant("softmax", "load_x_f32", "load_x_f16", false)),
    ("softmax_f16_native", || variant("softmax", "load_x_f32", "load_x_f16_native", true)),
    ("norm_f16", || variant("norm", "load_x_f32", "load_x_f16", false)),
    ("norm_f16_native", || variant("norm", "load_x_f32", "load_x_f16_native", true)),
    ("reduce_f16", || variant("reduce", "load_x_f32", "load_x_f16", false)),
    ("reduce_f16_native", || variant("reduce", "load_x_f32", "load_x_f16_native", true)),
    ("softmax_tex", || variant_swaps("softmax", &[("load_x_f32", "load_x_tex"), ROW_GRADS_TEX], false)),
    ("norm_tex", || variant_swaps("norm", &[("load_x_f32", "load_x_tex"), ROW_GRADS_TEX], false)),
    ("reduce_tex", || variant("reduce", "load_x_f32", "load_x_tex", false)),
    ("unary_tex", || variant("unary", "load_x_f32", "load_x_tex", false)),
    ("unary_grad_tex", || variant("unary_grad", "unary_grad_inputs_f32", "unary_grad_inputs_tex", false)),
    ("binary_tex", || variant("binary", "operands_f32", "operands_tex", false)),
    ("pool_tex", || variant("pool", "pool_io_f32", "pool_io_tex", false)),
    ("copy_tex", || variant("copy", "copy_src_buffer", "copy_src_tex", false)),
    ("recurrent_tex", || variant("recurrent", "recurrent_inputs_f32", "recurrent_inputs_tex", false)),
    ("pool_f16", || variant("pool", "pool_io_f32", "pool_io_f16", false)),
    ("pool_f16_native", || variant("pool", "pool_io_f32", "pool_io_f16_native", true)),
    ("attention_f16", || variant("attention", "attention_io_f32", "attention_io_f16", false)),
    ("attention_f16_native", || variant("attention", "attention_io_f32", "attention_io_f16_native", true)),
];

/// Kernels that read some of their inputs through r32float textures rather
/// than storage buffers (`shaders/texels.wgsl`; the host copies the launch's
/// buffers in, `gpu/texture_operands.rs`): (shader, entry point or `*` for
/// all, the input indices bound as textures — input `i` is binding `1 + i`).
/// Entries of a listed shader not named here read buffers only.
pub const TEXTURE_OPERANDS: &[(&str, &str, &[usize])] = &[
    ("matmul_tex", "*", &[0, 1]),
    ("matmul_subgroup_tex", "*", &[0, 1]),
    ("matmul_subgroup_act_tex", "*", &[0, 1]),
    // A and B, and the cell's inputs (cell_inputs_tex.wgsl).
    ("matmul_subgroup_cell_tex", "*", &[0, 1, 2, 3, 4]),
    // x, and in the forward its statistics, weight, bias and residual (all inputs).
    ("batch_norm_tex", "stats_partial", &[0]),
    ("batch_norm_tex", "forward", &[0, 1, 2, 3]),
    ("batch_norm_tex", "forward4", &[0, 1, 2, 3]),
    ("batch_norm_tex", "forward_res", &[0, 1, 2, 3, 4]),
    ("batch_norm_tex", "forward4_res", &[0, 1, 2, 3, 4]),
    // dy, x, the saved ReLU output, statistics; in backward also weight and
    // the gradient sums (all inputs).
    ("batch_norm_tex", "grad_partial", &[0, 1, 2, 3]),
    ("batch_norm_tex", "backward", &[0, 1, 2, 3, 4, 5, 6]),
    ("batch_norm_tex", "backward4", &[0, 1, 2, 3, 4, 5, 6]),
    ("batch_norm_tex", "backward_res", &[0, 1, 2, 3, 4, 5, 6]),
    ("batch_norm_tex", "backward4_res", &[0, 1, 2, 3, 4, 5, 6]),
    // x of the row and reduction kernels (load_x_tex.wgsl).
    ("softmax_tex", "softmax_fwd", &[0]),
    ("softmax_tex", "softmax_fwd_serial", &[0]),
    ("softmax_tex", "ce_fwd", &[0]),
    ("softmax_tex", "ce_fwd_serial", &[0]),
    ("norm_tex", "normalize_rows", &[0]),
    ("norm_tex", "normalize_rows_serial", &[0]),
    // dy and y of the row backward passes (row_grads_tex.wgsl).
    ("softmax_tex", "softmax_bwd", &[0, 1]),
    ("softmax_tex", "softmax_bwd_serial", &[0, 1]),
    ("norm_tex", "normalize_rows_backward", &[0, 1]),
    ("norm_tex", "normalize_rows_backward_serial", &[0, 1]),
    ("reduce_tex", "*", &[0]),
    // The elementwise kernels' inputs (fused chains keep their buffers).
    ("unary_tex", "*", &[0]),
    ("unary_grad_tex", "*", &[0, 1, 2]),
    ("binary_tex", "*", &[0, 1]),
    // Pooling's src; max pooling's backward also reads its argmax there.
    ("pool_tex", "max_backward", &[0, 1]),
    ("pool_tex", "*", &[0]),
    // The copy's source words (any 32-bit data, or packed f16).
    ("copy_tex", "*", &[0]),
    // The recurrent cells' inputs (recurrent_inputs_tex.wgsl).
    ("recurrent_tex", "cell_forward", &[0, 1, 2]),
    ("recurrent_tex", "cell_backward", &[0, 1, 2, 3]),
];

/// The inputs of `shader`'s `entry` bound as textures, as a bit mask over
/// input indices (bit `i`: binding `1 + i`).
pub fn texture_inputs(shader: &str, entry: &str) -> u32 {
    TEXTURE_OPERANDS
        .iter()
        .find(|(s, e, _)| *s == shader && (*e == "*" || *e == entry))
        .map_or(0, |(_, _, inputs)| inputs.iter().fold(0, |m, &i| m | 1 << i))
}

/// The variant of `shader` that reads inputs through textures (its name
/// with `_tex`), if [`TEXTURE_OPERANDS`] lists one.
pub fn texture_variant(shader: &str) -> Option<&'static str> {
    TEXTURE_OPERANDS.iter().map(|(s, _, _)| *s).find(|s| s.strip_suffix("_tex") == Some(shader))
}

/// The raw text of `shader` with its line `//#include FROM.wgsl` replaced by
/// `//#include TO.wgsl`: the same kernel over other operand storage. With
/// `enable_f16`, the text starts with `enable f16;` (WGSL wants directives
/// before any declaration, and the files open with comments and includes).
///
/// # Panics
/// When `shader` has no such line (a bug in this table, caught by the tests).
fn variant(shader: &str, from: &str, to: &str, enable_f16: bool) -> String {
    variant_swaps(shader, &[(from, to)], enable_f16)
}

/// The row kernels' texture variants also read their backward inputs through textures.
const ROW_GRADS_TEX: (&str, &str) = ("row_grads_f32", "row_grads_tex");

/// [`variant`] with several includes swapped, each `(from, to)`.
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

/// The generated sources, built on first use and kept for the process (the
/// registry hands out `&'static str` like `include_str!` does).
fn generated(name: &str) -> Option<&'static str> {
    use std::sync::OnceLock;
    static CACHE: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let all = CACHE.get_or_init(|| GENERATED.iter().map(|(n, g)| (*n, g())).collect());
    all.iter().find(|(n, _)| *n == name).map(|(_, s)| s.as_str())
}

/// The raw text of a shader file or generated library.
///
/// # Panics
/// For a name in neither [`SOURCES`] nor [`GENERATED`] (a bug in gpu-core, not a user error).
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
        let names = SOURCES.iter().map(|(n, _)| *n).chain(GENERATED.iter().map(|(n, _)| *n));
        for name in names.filter(|n| !LIBRARIES.contains(n)) {
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
            ["x_in", "dy_in", "x_in2", "y_in", "res_in", "y_out", "y_res_out", "dx_out", "dres_out"];
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

    /// Each entry point of a shader in `TEXTURE_OPERANDS` reads textures at
    /// exactly the bindings the table lists for it (as naga reflects which
    /// globals the entry uses), so the layout the host builds from the table
    /// matches the kernel; every texture is of the r32float kind the host
    /// fills (sampled f32, 2D).
    #[test]
    fn texture_inputs_match_the_kernels() {
        use naga::{ImageClass, ImageDimension, TypeInner};
        let mut shaders: Vec<&str> = TEXTURE_OPERANDS.iter().map(|(s, _, _)| *s).collect();
        shaders.dedup();
        for shader in &shaders {
            // Each is the `_tex` variant of a kernel (found by that name).
            let base = shader.strip_suffix("_tex").expect("texture variants are named NAME_tex");
            assert_eq!(texture_variant(base), Some(*shader));
            raw(base);
        }
        let mut checked = 0;
        for shader in shaders {
            let src = source(shader);
            let module = naga::front::wgsl::parse_str(&src).expect("parses (checked above)");
            let info =
                naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
                    .validate(&module)
                    .expect("validates (checked above)");
            for (k, ep) in module.entry_points.iter().enumerate() {
                let uses = info.get_entry_point(k);
                let mut mask = 0u32;
                for (h, var) in module.global_variables.iter() {
                    let (used, Some(b)) = (!uses[h].is_empty(), &var.binding) else { continue };
                    if let (true, TypeInner::Image { dim, arrayed, class }) = (used, &module.types[var.ty].inner) {
                        assert_eq!((*dim, *arrayed), (ImageDimension::D2, false), "{shader}:{}", ep.name);
                        assert!(
                            matches!(
                                class,
                                ImageClass::Storage { format: naga::StorageFormat::R32Float, access }
                                    if *access == naga::StorageAccess::LOAD
                            ),
                            "{shader}:{}: operand textures are read-only r32float storage textures",
                            ep.name
                        );
                        mask |= 1 << (b.binding - 1);
                    }
                }
                assert_eq!(mask, texture_inputs(shader, &ep.name), "{shader}:{} texture inputs", ep.name);
                checked += (mask != 0) as usize;
            }
        }
        assert!(checked >= 11, "only {checked} entries read textures");
    }

    #[test]
    fn includes_are_pasted_once() {
        let src = source("binary");
        assert_eq!(src.matches("fn strided_offset").count(), 1);
        assert!(!src.lines().any(|l| l.trim_start().starts_with("//#include")));
    }
}

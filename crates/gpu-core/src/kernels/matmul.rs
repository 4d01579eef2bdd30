//! The matmul families' shader variants (f16 and texture operands, the
//! activation and LSTM-cell store epilogues, the matrix-unit bodies) and
//! reference twins: the batched sums over strided (or gathered
//! convolution) B operands, and the store epilogue on them. The launches
//! are `ops/matmul/` and `ops/epilogue.rs`.

use super::conv::{gather_cpu, ConvGather, ConvGeometry};
use super::io::{Binding, IoLibrary, Storage};
use super::unary::UnaryOp;
use super::variants::{FamilyShaders, Variant};
use crate::layout::Layout;

/// The `_act` variant of a product's shader: the same operand library, its
/// store applying an activation and keeping the sums before it; named
/// beside the variants below so that a new operand library is added in one
/// place.
pub(crate) fn act_variant(shader: &str) -> &'static str {
    match shader {
        "matmul" => "matmul_act",
        "matmul_f16" => "matmul_act_f16",
        "matmul_f16_native" => "matmul_act_f16_native",
        "matmul_subgroup" => "matmul_subgroup_act",
        "matmul_subgroup_f16" => "matmul_subgroup_act_f16",
        "matmul_subgroup_f16_native" => "matmul_subgroup_act_f16_native",
        "matmul_subgroup_tex" => "matmul_subgroup_act_tex",
        "matmul_coop" => "matmul_coop_act",
        "matmul_coop8" => "matmul_coop8_act",
        other => unreachable!("no product shader {other}"),
    }
}

/// The shaders this family derives from its files by swapping includes,
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("matmul_f16", "matmul", &[("operands_f32", "operands_f16")]),
        Variant::new("matmul_f16_native", "matmul", &[("operands_f32", "operands_f16_native")]).f16(),
        Variant::new("matmul_subgroup_f16", "matmul_subgroup", &[("matmul", "matmul_f16")]),
        Variant::new("matmul_subgroup_f16_native", "matmul_subgroup", &[("matmul", "matmul_f16_native")]),
        Variant::new("matmul_f16_native_body", "matmul", &[("operands_f32", "operands_f16_native")]).library(),
        Variant::new(
            "matmul_act_f16_native_body",
            "matmul",
            &[("operands_f32", "operands_f16_native"), ("matmul_store", "matmul_store_act")],
        )
        .library(),
        Variant::new("matmul_coop_act", "matmul_coop", &[("matmul_f16_native_body", "matmul_act_f16_native_body")]),
        Variant::new("matmul_coop8", "matmul_coop", &[("coop_frag16", "coop_frag8")]),
        Variant::new(
            "matmul_coop8_act",
            "matmul_coop",
            &[("matmul_f16_native_body", "matmul_act_f16_native_body"), ("coop_frag16", "coop_frag8")],
        ),
        Variant::new("matmul_tex", "matmul", &[("operands_f32", "operands_tex")]),
        Variant::new("matmul_subgroup_tex", "matmul_subgroup", &[("matmul", "matmul_tex")]),
        Variant::new("matmul_store_act", "matmul_store", &[("matmul_store_sums", "matmul_store_sums_act")]).library(),
        Variant::new("matmul_act", "matmul", &[("matmul_store", "matmul_store_act")]),
        Variant::new("matmul_subgroup_act", "matmul_subgroup", &[("matmul", "matmul_act")]),
        Variant::new(
            "matmul_act_f16",
            "matmul",
            &[("operands_f32", "operands_f16"), ("matmul_store", "matmul_store_act")],
        ),
        Variant::new(
            "matmul_act_f16_native",
            "matmul",
            &[("operands_f32", "operands_f16_native"), ("matmul_store", "matmul_store_act")],
        )
        .f16(),
        Variant::new("matmul_subgroup_act_f16", "matmul_subgroup", &[("matmul", "matmul_act_f16")]),
        Variant::new("matmul_subgroup_act_f16_native", "matmul_subgroup", &[("matmul", "matmul_act_f16_native")]),
        Variant::new(
            "matmul_act_tex",
            "matmul",
            &[("operands_f32", "operands_tex"), ("matmul_store", "matmul_store_act")],
        ),
        Variant::new("matmul_subgroup_act_tex", "matmul_subgroup", &[("matmul", "matmul_act_tex")]),
        Variant::new("matmul_cell", "matmul", &[("matmul_store", "matmul_store_cell")]),
        Variant::new("matmul_subgroup_cell", "matmul_subgroup", &[("matmul", "matmul_cell")]),
        Variant::new("matmul_store_cell_tex", "matmul_store_cell", &[("cell_inputs_f32", "cell_inputs_tex")]).library(),
        Variant::new(
            "matmul_cell_tex",
            "matmul",
            &[("operands_f32", "operands_tex"), ("matmul_store", "matmul_store_cell_tex")],
        ),
        Variant::new("matmul_subgroup_cell_tex", "matmul_subgroup", &[("matmul", "matmul_cell_tex")]),
    ],
    io: &[
        // A and B (binary.wgsl's a and b too), declared as vec4 so that the
        // subgroup matmul and binary's main4 load four elements at once.
        IoLibrary {
            stem: "operands",
            storages: Storage::ALL,
            bindings: &[Binding::load("a", 1).quads(), Binding::load("b", 2).quads()],
        },
        // matmul_store_cell.wgsl's read-only inputs (the LSTM cell's bias,
        // gate pre-activations, saved gates, dy and states by CELL mode).
        IoLibrary {
            stem: "cell_inputs",
            storages: Storage::F32_TEX,
            bindings: &[Binding::load("in3", 3), Binding::load("in4", 4), Binding::load("in5", 5)],
        },
    ],
};

/// Which index of the product a bias value belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BiasAxis {
    /// One value per output row: a convolution's output channel in its
    /// `[OC, pixels]` product (the shaders' `bias_axis = 1`).
    Rows,
    /// One value per output column: a Linear layer's `x @ Wᵀ` (`bias_axis = 2`).
    Columns,
}

/// The B operand of one launch: a strided matrix per batch entry, or (with
/// `conv`) a convolution operand gathered from the tensor at `offset`.
#[derive(Clone)]
pub(crate) struct BOperand {
    /// Batch dims as a view of the broadcast batch shape (offset included).
    pub(crate) view: Layout,
    pub(crate) k: usize,
    pub(crate) n: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
    pub(crate) offset: usize,
    pub(crate) conv: Option<(ConvGather, ConvGeometry)>,
}

/// A strided matrix view for [`sums`]' product: (data, row stride, column stride).
pub(crate) type View<'a> = (&'a [f32], usize, usize);

/// The kernels' sums: `xo` (`m x n` per batch entry, in order) gets
/// `a @ b` for each batch entry, `a` read from `xa` through `la`'s last two
/// dims with its batch dims seen as `va`, B as `bop` (a gathered B
/// materialised per entry into a fresh vector by [`gather_cpu`], which
/// defines its values). Each entry's product is `mul((m, k, n), a, b, c)`
/// into the row-major `c`: the caller's `matrixmultiply` sgemm
/// (`cpu/gemm.rs`, which kernels/ does not name), so the twin's summation
/// order is that sgemm's.
pub(crate) fn sums(
    (xa, la, va): (&[f32], &Layout, &Layout),
    (xb, bop): (&[f32], &BOperand),
    (m, k, n): (usize, usize, usize),
    xo: &mut [f32],
    mut mul: impl FnMut((usize, usize, usize), View, View, &mut [f32]),
) {
    let vb = &bop.view;
    let ra = la.rank() - 2;
    let (a_rs, a_cs) = (la.strides[ra], la.strides[ra + 1]);
    if k == 0 {
        // An empty sum; the operands may hold no elements at all.
        xo.fill(0.0);
        return;
    }
    for (i, c) in xo.chunks_exact_mut(m * n).enumerate() {
        let (oa, ob) = (va.index_of(i), vb.index_of(i));
        // A gathered B is k x n, row-major; a plain one is read in place.
        let gathered;
        let b = match bop.conv {
            Some((form, geo)) => {
                gathered = gather_cpu(form, &geo, &xb[ob..], k, n);
                (&gathered[..], n, 1)
            }
            None => (&xb[ob..], bop.rs, bop.cs),
        };
        mul((m, k, n), (&xa[oa..], a_rs, a_cs), b, c);
    }
}

/// A store epilogue as its twin reads it (`ops::epilogue::Epilogue` with
/// host slices for its buffers; `pre` and the output storage stay with the
/// caller).
#[derive(Clone, Copy, Default)]
pub(crate) struct HostEpilogue<'a> {
    /// Multiplies the sums first.
    pub(crate) scale: Option<f32>,
    /// The bias values, their axis and their groups (batch entry `e` reads
    /// slice `e % groups`).
    pub(crate) bias: Option<(&'a [f32], BiasAxis, usize)>,
    /// `max(v, 0)` after the bias.
    pub(crate) relu: bool,
    /// Any other op of the unary table after the bias.
    pub(crate) activation: Option<UnaryOp>,
    /// Added last, the result's shape.
    pub(crate) residual: Option<&'a [f32]>,
}

impl HostEpilogue<'_> {
    /// The store epilogue (`store4` in `shaders/matmul.wgsl`) on one row of
    /// `n` f32 sums, in place: row `at` of the product's `batches · m` rows.
    /// The scale, the bias, the ReLU or the activation (the values before
    /// it copied to `pre`, unless `pre` is empty), then the residual, all
    /// in f32. Rows are independent, so they may run on any thread.
    pub(crate) fn apply_row(&self, row: &mut [f32], at: usize, (m, n): (usize, usize), pre: &mut [f32]) {
        if let Some(scale) = self.scale {
            row.iter_mut().for_each(|v| *v *= scale);
        }
        if let Some((bias, axis, groups)) = self.bias {
            let (e, i) = (at / m, at % m);
            let g = e % groups.max(1);
            match axis {
                BiasAxis::Rows => row.iter_mut().for_each(|v| *v += bias[g * m + i]),
                BiasAxis::Columns => row.iter_mut().zip(&bias[g * n..]).for_each(|(v, b)| *v += b),
            }
        }
        if self.relu {
            row.iter_mut().for_each(|v| *v = crate::kernels::unary::relu(*v));
        }
        if !pre.is_empty() {
            pre.copy_from_slice(row);
        }
        if let Some(op) = self.activation {
            row.iter_mut().for_each(|v| *v = op.apply(*v));
        }
        if let Some(res) = self.residual {
            row.iter_mut().zip(&res[at * n..]).for_each(|(v, r)| *v += r);
        }
    }
}

#[cfg(test)]
mod variant_tests {
    use super::{act_variant, SHADERS};

    /// Every product shader's `_act` variant exists and reads the same
    /// operand library (a missing f16 one read packed halves as f32).
    #[test]
    fn each_product_shader_has_an_act_variant_with_its_operands() {
        // A's declaration, which each operand library writes its own way.
        let operands = |name: &str| {
            let src = crate::shaders::source(name);
            let line = src.lines().find(|l| l.contains(" a_in:") && l.contains("var"));
            line.unwrap_or_else(|| panic!("{name} declares no a_in")).trim().to_string()
        };
        for shader in [
            "matmul",
            "matmul_f16",
            "matmul_f16_native",
            "matmul_subgroup",
            "matmul_subgroup_f16",
            "matmul_subgroup_f16_native",
            "matmul_subgroup_tex",
            "matmul_coop",
            "matmul_coop8",
        ] {
            let act = act_variant(shader);
            assert!(SHADERS.variants.iter().any(|v| v.name == act), "{shader}: no variant {act}");
            assert_eq!(operands(act), operands(shader), "{shader} -> {act}: operand library");
        }
    }
}

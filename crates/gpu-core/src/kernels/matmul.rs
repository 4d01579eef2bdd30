//! The matmul families' shader variants: f16 and texture operands, the
//! activation and LSTM-cell store epilogues, the matrix-unit bodies.

use super::io::{Binding, IoLibrary, Storage};
use super::variants::{FamilyShaders, Variant};

/// The shaders this family derives from its files by swapping includes,
/// and the inputs its texture variants read through textures (`shaders.rs`
/// collects every family's).
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
        Variant::new("matmul_tex", "matmul", &[("operands_f32", "operands_tex")]),
        Variant::new("matmul_subgroup_tex", "matmul_subgroup", &[("matmul", "matmul_tex")]),
        Variant::new("matmul_store_act", "matmul_store", &[("matmul_store_sums", "matmul_store_sums_act")]).library(),
        Variant::new("matmul_act", "matmul", &[("matmul_store", "matmul_store_act")]),
        Variant::new("matmul_subgroup_act", "matmul_subgroup", &[("matmul", "matmul_act")]),
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
    texture_inputs: &[
        ("matmul_tex", "*", &[0, 1]),
        ("matmul_subgroup_tex", "*", &[0, 1]),
        ("matmul_subgroup_act_tex", "*", &[0, 1]),
        ("matmul_subgroup_cell_tex", "*", &[0, 1, 2, 3, 4]),
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

//! The row kernels' (softmax, layer and group norm) shader variants: f16
//! inputs and texture operands.

use super::variants::{FamilyShaders, Variant};

/// The shaders this family derives from its files by swapping includes,
/// and the inputs its texture variants read through textures (`shaders.rs`
/// collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("softmax_f16", "softmax", &[("load_x_f32", "load_x_f16")]),
        Variant::new("softmax_f16_native", "softmax", &[("load_x_f32", "load_x_f16_native")]).f16(),
        Variant::new("norm_f16", "norm", &[("load_x_f32", "load_x_f16")]),
        Variant::new("norm_f16_native", "norm", &[("load_x_f32", "load_x_f16_native")]).f16(),
        Variant::new("softmax_tex", "softmax", &[("load_x_f32", "load_x_tex"), ("row_grads_f32", "row_grads_tex")]),
        Variant::new("norm_tex", "norm", &[("load_x_f32", "load_x_tex"), ("row_grads_f32", "row_grads_tex")]),
    ],
    texture_inputs: &[
        ("softmax_tex", "softmax_fwd", &[0]),
        ("softmax_tex", "softmax_fwd_serial", &[0]),
        ("softmax_tex", "ce_fwd", &[0]),
        ("softmax_tex", "ce_fwd_serial", &[0]),
        ("norm_tex", "normalize_rows", &[0]),
        ("norm_tex", "normalize_rows_serial", &[0]),
        ("softmax_tex", "softmax_bwd", &[0, 1]),
        ("softmax_tex", "softmax_bwd_serial", &[0, 1]),
        ("norm_tex", "normalize_rows_backward", &[0, 1]),
        ("norm_tex", "normalize_rows_backward_serial", &[0, 1]),
    ],
};

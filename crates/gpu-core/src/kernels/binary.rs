//! The binary op table (`binary_table!`): each row gives a [`BinaryOp`]
//! variant, its WGSL expression and its reference twin. What a binary op
//! means; the launches (broadcasting, `where`) are in `ops/binary.rs`.

use super::variants::{FamilyShaders, Variant};
use crate::layout::Layout;

use super::table::{wgsl_switch, Binary, WgslRow};
/// Declares the binary op table: one row per op generates the [`BinaryOp`]
/// enum, its `OP` codes (the row index), the CPU twin [`BinaryOp::apply`], the
/// WGSL `f(x, y)` switch library (`binary_fns`, see [`wgsl_library`]) and
/// [`BinaryOp::ALL`] for the test lists. Each row is the variant, its WGSL
/// expression in `x`, `y` (the operands a, b), then `=>` and the Rust twin in
/// the same names.
macro_rules! binary_table {
    (
        ($x:ident, $y:ident)
        $( $(#[doc = $doc:literal])* $name:ident: $wf:literal => $rf:expr; )*
    ) => {
        /// A binary function. Comparisons give 1.0 / 0.0 masks.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum BinaryOp {
            $($(#[doc = $doc])* $name,)*
        }

        /// The rows as the WGSL generator sees them, in code order.
        const WGSL_F: &[WgslRow] = &[$(WgslRow { name: stringify!($name), fields: &[], body: $wf }),*];

        impl BinaryOp {
            /// Every op, in code order (for test lists).
            pub const ALL: &[BinaryOp] = &[$(BinaryOp::$name),*];

            /// The `OP` override value in `binary.wgsl`: the row index.
            pub fn code(self) -> u32 {
                self as u32
            }

            /// The table's name of the op (its variant name).
            pub fn name(self) -> &'static str {
                WGSL_F[self.code() as usize].name
            }

            /// The op's name as PyTorch spells it (`add`, `maximum`): what
            /// autograd records its nodes under.
            pub fn op_name(self) -> &'static str {
                static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
                &crate::kernels::table::snake_names(&NAMES, WGSL_F)[self.code() as usize]
            }

            /// The WGSL row of this op, for the fuser's generated kernels.
            pub(crate) fn wgsl_row(self) -> &'static WgslRow {
                &WGSL_F[self.code() as usize]
            }

            /// The CPU twin: f applied to one pair.
            pub fn apply(self, $x: f32, $y: f32) -> f32 {
                match self {
                    $(BinaryOp::$name => $rf),*
                }
            }

            /// Hands `k` this op's function as a concrete closure, so the
            /// fast CPU loops over it are compiled (and vectorized) per op
            /// instead of matching on the op for every element.
            pub(crate) fn with_fn<K: Binary>(self, k: K) -> K::Out {
                match self {
                    $(BinaryOp::$name => k.call(|$x: f32, $y: f32| $rf)),*
                }
            }
        }
    };
}

/// 1.0 where `c` holds, else 0.0 (the Rust twin of WGSL `select(0.0, 1.0, c)`).
fn mask(c: bool) -> f32 {
    if c {
        1.0
    } else {
        0.0
    }
}

binary_table! {
    (x, y)
    /// a + b
    Add: "x + y" => x + y;
    /// a − b
    Sub: "x - y" => x - y;
    /// a · b
    Mul: "x * y" => x * y;
    /// a / b
    Div: "x / y" => x / y;
    /// a^b (IEEE pow: negative bases with integer exponents work)
    Pow: "pow_ieee(x, y)" => x.powf(y);
    /// max(a, b)
    Maximum: "max(x, y)" => x.max(y);
    /// min(a, b)
    Minimum: "min(x, y)" => x.min(y);
    /// a == b
    Eq: "select(0.0, 1.0, x == y)" => mask(x == y);
    /// a < b
    Lt: "select(0.0, 1.0, x < y)" => mask(x < y);
    /// a ≤ b
    Le: "select(0.0, 1.0, x <= y)" => mask(x <= y);
    /// a > b
    Gt: "select(0.0, 1.0, x > y)" => mask(x > y);
    /// a ≥ b
    Ge: "select(0.0, 1.0, x >= y)" => mask(x >= y);
}

/// The generated WGSL library `binary_fns`: `override OP` and the table's
/// `f(a, b)` switch, included by `binary.wgsl` (which provides `pow_ieee`
/// through `common.wgsl`).
pub fn wgsl_library() -> String {
    let mut s = String::from(
        "// Generated from the binary op table (gpu-core/src/kernels/binary.rs): do not edit.\n\
         override OP: u32 = 0u;\n\n",
    );
    s += &wgsl_switch("f(x: f32, y: f32)", WGSL_F, "x");
    s
}

/// `op(a, b)` elementwise over views of one (broadcast) shape: output
/// element `i` (row-major) from element `i` of each view, as
/// [`BinaryOp::apply`] defines it.
pub(crate) fn binary_views(op: BinaryOp, (a, va): (&[f32], &Layout), (b, vb): (&[f32], &Layout), out: &mut [f32]) {
    for (i, z) in out.iter_mut().enumerate() {
        *z = op.apply(a[va.index_of(i)], b[vb.index_of(i)]);
    }
}

/// `torch.where(cond != 0, a, b)` over views of one (broadcast) shape.
pub(crate) fn where_views(
    (cond, vc): (&[f32], &Layout),
    (a, va): (&[f32], &Layout),
    (b, vb): (&[f32], &Layout),
    out: &mut [f32],
) {
    for (i, z) in out.iter_mut().enumerate() {
        *z = if cond[vc.index_of(i)] != 0.0 { a[va.index_of(i)] } else { b[vb.index_of(i)] };
    }
}

/// The shaders this family derives from its files by swapping includes,
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders =
    FamilyShaders { variants: &[Variant::new("binary_tex", "binary", &[("operands_f32", "operands_tex")])], io: &[] };

#[cfg(test)]
mod tests {
    use super::BinaryOp;

    /// PyTorch's names, from the table's rows (no list kept beside it).
    #[test]
    fn op_names_are_the_rows_in_lower_case() {
        assert_eq!(BinaryOp::Add.op_name(), "add");
        assert_eq!(BinaryOp::Maximum.op_name(), "maximum");
        assert_eq!(BinaryOp::Ge.op_name(), "ge");
        for op in BinaryOp::ALL {
            assert_eq!(op.op_name(), op.name().to_lowercase());
        }
        use crate::kernels::unary::UnaryOp;
        let names: Vec<&str> = UnaryOp::EXAMPLES.iter().map(|op| op.op_name()).collect();
        assert!(names.contains(&"relu") && names.contains(&"leaky_relu") && names.contains(&"gelu_tanh"), "{names:?}");
    }
}

//! The unary op table (`unary_table!`): each row gives a [`UnaryOp`]
//! variant, its WGSL `f` / `df`, its reference twin and its test domain.
//! What a unary op means; the launches are in `ops/unary.rs`.

use super::fast_math::{self, sigmoid, tanh};
use super::io::{Binding, IoLibrary, Storage};
use super::variants::{FamilyShaders, Variant};

use super::table::{field_uniforms, wgsl_switch, Binary, Unary, WgslRow};

const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;

/// erf by Abramowitz & Stegun 7.1.26, the same formula as the WGSL kernel,
/// with the branch-free `exp` of [`fast_math`](super::fast_math) (a few
/// units in the last place; libm's `expf` is a call per element, which kept
/// GELU's loops from vectorizing).
pub fn erf_approx(v: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * v.abs());
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    sign(v) * (1.0 - poly * fast_math::exp(-v * v))
}

/// WGSL's sign: 0 at 0 (Rust's `signum` gives ±1).
pub(crate) fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

// The activations' twins use `fast_math`'s branch-free `exp` (on their
// negative side only, where it is libm's to a few ulps, 0 at -∞), `sigmoid`,
// `tanh` and `ln_1p_unit`: libm's `expf`, `tanhf` and `log1pf` are a call
// per element, which kept the fast CPU path's loops scalar (tanh over 2M
// elements took 29 ms on a 2-core Zen 3, 1.8 now; Mish 53, now 6). Exp,
// Log, Sin, Cos and Powf keep libm's, for their whole range and accuracy.

/// ReLU as PyTorch computes it, `x < 0 ? 0 : x`: NaN and -0.0 pass
/// unchanged (`f32::max` would turn NaN into 0). The twin of WGSL's `relu`
/// (`shaders/common.wgsl`), for every ReLU, fused or not.
/// Generic over f32 and the f64 of the reference twins (`Default` is 0).
pub(crate) fn relu<T: PartialOrd + Default>(v: T) -> T {
    if v < T::default() {
        T::default()
    } else {
        v
    }
}

/// Whether a ReLU with output `y` passes its gradient: not where `y <= 0`
/// (PyTorch's `threshold_backward`; a NaN output passes it).
pub(crate) fn relu_passes<T: PartialOrd + Default>(y: T) -> bool {
    // NaN is incomparable with 0: it passes.
    !matches!(y.partial_cmp(&T::default()), Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal))
}

/// ln(1 + e^x), stable on both sides.
fn softplus1(v: f32) -> f32 {
    v.max(0.0) + fast_math::ln_1p_unit(fast_math::exp(-v.abs()))
}

/// Declares the unary op table: from one row per op it generates the
/// [`UnaryOp`] enum, its `OP` codes (the row index), the CPU twins
/// [`UnaryOp::apply`] / [`UnaryOp::derivative`], the WGSL `f` / `df` switch
/// library (`unary_fns`, see [`wgsl_library`]) and [`UnaryOp::EXAMPLES`] for the
/// test lists (with [`UnaryOp::domain`]). Each row names its variant and fields (at most two `f32`, passed
/// to the kernels as `p.alpha`, `p.beta`), example field values, an optional `[Domain]` tag, then `f:` and
/// `df:` each as WGSL text followed by `=>` and the Rust twin. Both sides see
/// the input as `v`, the output as `y` (in `df` only) and the fields by name.
/// An op whose gradient is a mask gives `gate:` instead of `df:`: the
/// condition (WGSL, then Rust) under which the gradient passes unchanged
/// ([`UnaryOp::gated`]).
macro_rules! unary_table {
    (
        ($v:ident, $y:ident)
        $(
            $(#[doc = $doc:literal])*
            $name:ident $(( $($ta:ident),* ))? $({ $($(#[doc = $fdoc:literal])* $sa:ident),* })?
            example ($($ex:expr),*) $([$domain:ident])?
            f: $wf:literal => $rf:expr;
            $dk:ident: $wdf:literal => $rdf:expr;
        )*
    ) => {
        /// A unary function. Parameterised ones carry their PyTorch arguments.
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub enum UnaryOp {
            $(
                $(#[doc = $doc])*
                $name $(( $(f32_field!($ta)),* ))? $({ $($(#[doc = $fdoc])* $sa: f32),* })?,
            )*
        }

        /// The `OP` code of each row: its position in the table.
        #[repr(u32)]
        #[allow(dead_code)]
        enum Code {
            $($name),*
        }

        /// The rows as the WGSL generator sees them, in code order.
        const WGSL_F: &[WgslRow] = &[
            $(WgslRow {
                name: stringify!($name),
                fields: &[$($(stringify!($ta)),*)? $($(stringify!($sa)),*)?],
                body: $wf,
            }),*
        ];

        /// The derivative rows, in code order.
        const WGSL_DF: &[WgslRow] = &[
            $(WgslRow {
                name: stringify!($name),
                fields: &[$($(stringify!($ta)),*)? $($(stringify!($sa)),*)?],
                body: df_wgsl!($dk, $wdf),
            }),*
        ];

        impl UnaryOp {
            /// One instance of every op (the table's example fields), for test lists.
            pub const EXAMPLES: &[UnaryOp] = &[
                $({
                    #[allow(unused_variables, unused_mut)]
                    let mut i = 0;
                    #[allow(unused_variables)]
                    let ex: &[f32] = &[$($ex),*];
                    $($(let $ta = ex[{ i += 1; i - 1 }];)*)?
                    $($(let $sa = ex[{ i += 1; i - 1 }];)*)?
                    UnaryOp::$name $(( $($ta),* ))? $({ $($sa),* })?
                }),*
            ];

            /// Where the op is defined and differentiable (the table's `[domain]`
            /// tag, `Real` when absent): what gradient tests feed it.
            pub fn domain(self) -> Domain {
                match self {
                    $(UnaryOp::$name { .. } => domain_of!($($domain)?)),*
                }
            }

            /// The `OP` override value in `unary.wgsl` / `unary_grad.wgsl`.
            pub fn code(self) -> u32 {
                match self {
                    $(UnaryOp::$name { .. } => Code::$name as u32),*
                }
            }

            /// The table's name of the op (its variant name).
            pub fn name(self) -> &'static str {
                WGSL_F[self.code() as usize].name
            }

            /// The op's name as PyTorch spells it (`leaky_relu`, `gelu_tanh`):
            /// what autograd records its nodes under, so a profile tells
            /// `relu` from `tanh`.
            pub fn op_name(self) -> &'static str {
                static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
                &crate::kernels::table::snake_names(&NAMES, WGSL_F)[self.code() as usize]
            }

            /// The WGSL rows (`f`, `df`) of this op, for the fuser's generated kernels.
            pub(crate) fn wgsl_rows(self) -> (&'static WgslRow, &'static WgslRow) {
                (&WGSL_F[self.code() as usize], &WGSL_DF[self.code() as usize])
            }

            /// The (alpha, beta) uniforms: the variant's fields in order.
            pub(crate) fn args(self) -> (f32, f32) {
                match self {
                    $(UnaryOp::$name $(( $($ta),* ))? $({ $($sa),* })? => field_uniforms(&[$($($ta),*)? $($($sa),*)?])),*
                }
            }

            /// The CPU twin: f applied to one value.
            #[allow(unused_variables)]
            pub fn apply(self, $v: f32) -> f32 {
                match self {
                    $(UnaryOp::$name $(( $($ta),* ))? $({ $($sa),* })? => $rf),*
                }
            }

            /// The CPU twin of the derivative: f'(v), given y = f(v) (1 or 0
            /// for a [gated](Self::gated) op).
            #[allow(unused_variables)]
            pub fn derivative(self, $v: f32, $y: f32) -> f32 {
                match self {
                    $(UnaryOp::$name $(( $($ta),* ))? $({ $($sa),* })? => df_twin!($dk, $rdf)),*
                }
            }

            /// Whether the op's gradient is a mask (a `gate:` row: ReLU,
            /// clamp, sign): where its derivative is 0 no gradient passes,
            /// not even an infinite or NaN one ([`chain_rule`]).
            pub fn gated(self) -> bool {
                match self {
                    $(UnaryOp::$name { .. } => gated!($dk)),*
                }
            }

            /// Hands `k` this op's function as a concrete closure (see
            /// `BinaryOp::with_fn`).
            #[allow(unused_variables)]
            pub(crate) fn with_fn<K: Unary>(self, k: K) -> K::Out {
                match self {
                    $(UnaryOp::$name $(( $($ta),* ))? $({ $($sa),* })? => k.call(move |$v: f32| $rf)),*
                }
            }

            /// Hands `k` this op's derivative `(v, y) -> f'(v)` as a concrete closure.
            #[allow(unused_variables)]
            pub(crate) fn with_derivative<K: Binary>(self, k: K) -> K::Out {
                match self {
                    $(UnaryOp::$name $(( $($ta),* ))? $({ $($sa),* })? => k.call(move |$v: f32, $y: f32| df_twin!($dk, $rdf))),*
                }
            }
        }
    };
}

impl UnaryOp {
    /// Which values the derivative reads, from its WGSL row: the input
    /// (`v`), the output (`y`). Autograd keeps only those for the backward
    /// (`Neg`, `Affine` keep nothing, `Exp`, `Tanh`, `Sigmoid` their output).
    pub fn derivative_reads(self) -> (bool, bool) {
        let body = self.wgsl_rows().1.body;
        (names(body, b'v'), names(body, b'y'))
    }
}

/// Whether WGSL `text` names the one-letter identifier `id`.
fn names(text: &str, id: u8) -> bool {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = text.as_bytes();
    (0..b.len()).any(|i| b[i] == id && (i == 0 || !ident(b[i - 1])) && b.get(i + 1).is_none_or(|&c| !ident(c)))
}

/// Where a unary op is defined and differentiable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Every real (kinks at isolated points at most).
    Real,
    /// Positive inputs only (log, sqrt, reciprocals).
    Positive,
    /// Piecewise constant: the derivative is zero wherever it exists.
    Steps,
}

/// A row's domain tag in `unary_table!` (`Real` when absent).
macro_rules! domain_of {
    () => {
        Domain::Real
    };
    ($d:ident) => {
        Domain::$d
    };
}

/// A row's derivative as WGSL: a `df:` row's text, or a `gate:` row's
/// condition as 1 or 0.
macro_rules! df_wgsl {
    (df, $w:literal) => {
        $w
    };
    (gate, $w:literal) => {
        concat!("select(0.0, 1.0, ", $w, ")")
    };
}

/// A row's derivative as Rust: a `df:` row's twin, or a `gate:` row's
/// condition as 1 or 0.
macro_rules! df_twin {
    (df, $r:expr) => {
        $r
    };
    (gate, $r:expr) => {
        step($r, 1.0, 0.0)
    };
}

/// Whether a row is a `gate:` row.
macro_rules! gated {
    (df) => {
        false
    };
    (gate) => {
        true
    };
}

/// The chain rule of a unary op: `g · f'(v)`, except that a gated op's 0
/// stops `g` whatever it is. PyTorch's masks do the same (ReLU's
/// `threshold_backward`, clamp's and sign's rules give 0 where the op is
/// flat, for an infinite or NaN `g` too), and so must wgrad: under mixed
/// precision an overflowed gradient at an inactive unit would otherwise
/// turn into NaN there and skip a step that PyTorch takes.
#[inline(always)]
pub fn chain_rule(gated: bool, g: f32, d: f32) -> f32 {
    if gated && d == 0.0 {
        0.0
    } else {
        g * d
    }
}

/// A tuple field's type in `unary_table!` (every field is an `f32`).
macro_rules! f32_field {
    ($t:ident) => {
        f32
    };
}

/// `step(c, a, b)`: `a` where `c` holds, else `b` (the Rust twin of WGSL `select(b, a, c)`).
fn step(c: bool, a: f32, b: f32) -> f32 {
    if c {
        a
    } else {
        b
    }
}

unary_table! {
    (v, y)
    /// -x
    Neg example()
        f: "-v" => -v;
        df: "-1.0" => -1.0;
    /// |x|
    Abs example()
        f: "abs(v)" => v.abs();
        df: "sign(v)" => sign(v);
    /// -1, 0 or 1
    Sign example() [Steps]
        f: "sign(v)" => sign(v);
        gate: "false" => false;
    /// e^x
    Exp example()
        f: "exp(v)" => v.exp();
        df: "y" => y;
    /// ln x
    Log example() [Positive]
        f: "log(v)" => v.ln();
        df: "1.0 / v" => 1.0 / v;
    /// √x
    Sqrt example() [Positive]
        f: "sqrt(v)" => v.sqrt();
        df: "0.5 / y" => 0.5 / y;
    /// 1/√x
    Rsqrt example() [Positive]
        f: "1.0 / sqrt(v)" => 1.0 / v.sqrt();
        df: "-0.5 * y * y * y" => -0.5 * y * y * y;
    /// x²
    Square example()
        f: "v * v" => v * v;
        df: "2.0 * v" => 2.0 * v;
    /// 1/x
    Reciprocal example() [Positive]
        f: "1.0 / v" => 1.0 / v;
        df: "-y * y" => -y * y;
    /// sin x
    Sin example()
        f: "sin(v)" => v.sin();
        df: "cos(v)" => v.cos();
    /// cos x
    Cos example()
        f: "cos(v)" => v.cos();
        df: "-sin(v)" => -v.sin();
    /// tanh x
    Tanh example()
        f: "tanh_stable(v)" => tanh(v);
        df: "1.0 - y * y" => 1.0 - y * y;
    /// 1/(1+e^-x)
    Sigmoid example()
        f: "sigmoid(v)" => sigmoid(v);
        df: "y * (1.0 - y)" => y * (1.0 - y);
    /// max(x, 0), NaN and -0.0 kept (PyTorch's `x < 0 ? 0 : x`)
    Relu example()
        f: "relu(v)" => relu(v);
        gate: "relu_passes(y)" => relu_passes(y);
    /// x if x > 0 else slope·x
    LeakyRelu(slope) example(0.01)
        f: "select(slope * v, v, v > 0.0)" => step(v > 0.0, v, slope * v);
        df: "select(slope, 1.0, v > 0.0)" => step(v > 0.0, 1.0, slope);
    /// x if x > 0 else alpha·(e^x − 1)
    Elu(alpha) example(1.0)
        f: "select(alpha * (exp(v) - 1.0), v, v > 0.0)" => step(v > 0.0, v, alpha * (fast_math::exp(v) - 1.0));
        df: "select(y + alpha, 1.0, v > 0.0)" => step(v > 0.0, 1.0, y + alpha);
    /// scale·(x if x > 0 else alpha·(e^x − 1)) with the self-normalising constants
    Selu example()
        f: "SELU_SCALE * select(SELU_ALPHA * (exp(v) - 1.0), v, v > 0.0)"
            => SELU_SCALE * step(v > 0.0, v, SELU_ALPHA * (fast_math::exp(v) - 1.0));
        df: "select(y + SELU_SCALE * SELU_ALPHA, SELU_SCALE, v > 0.0)"
            => step(v > 0.0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA);
    /// x·Φ(x), exact (erf) form
    Gelu example()
        f: "0.5 * v * (1.0 + erf_approx(v * 0.7071067811865476))"
            => 0.5 * v * (1.0 + erf_approx(v * std::f32::consts::FRAC_1_SQRT_2));
        df: "let cdf = 0.5 * (1.0 + erf_approx(v * 0.7071067811865476)); cdf + v * 0.3989422804014327 * exp(-0.5 * v * v)"
            => {
                let cdf = 0.5 * (1.0 + erf_approx(v * std::f32::consts::FRAC_1_SQRT_2));
                cdf + v * 0.398_942_3 * fast_math::exp(-0.5 * v * v)
            };
    /// GELU's tanh approximation
    GeluTanh example()
        f: "0.5 * v * (1.0 + tanh_stable(0.7978845608028654 * (v + 0.044715 * v * v * v)))"
            => 0.5 * v * (1.0 + tanh(0.797_884_6 * (v + 0.044715 * v * v * v)));
        df: "let k = 0.7978845608028654; let t = tanh_stable(k * (v + 0.044715 * v * v * v)); \
             0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v)"
            => {
                let k = 0.797_884_6;
                let t = tanh(k * (v + 0.044715 * v * v * v));
                0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v)
            };
    /// x·sigmoid(x) (swish)
    Silu example()
        f: "v * sigmoid(v)" => v * sigmoid(v);
        df: "let s = sigmoid(v); s * (1.0 + v * (1.0 - s))" => {
                let s = sigmoid(v);
                s * (1.0 + v * (1.0 - s))
            };
    /// x·tanh(softplus(x))
    Mish example()
        f: "v * tanh_stable(softplus1(v))" => v * tanh(softplus1(v));
        df: "let t = tanh_stable(softplus1(v)); t + v * (1.0 - t * t) * sigmoid(v)" => {
                let t = tanh(softplus1(v));
                t + v * (1.0 - t * t) * sigmoid(v)
            };
    /// ln(1+e^(beta·x))/beta, linear where beta·x > threshold
    Softplus {
        /// Sharpness (PyTorch default 1).
        beta,
        /// Linear above this (PyTorch default 20).
        threshold
    } example(2.0, 20.0)
        f: "select(softplus1(beta * v) / beta, v, beta * v > threshold)"
            => step(beta * v > threshold, v, softplus1(beta * v) / beta);
        df: "select(sigmoid(beta * v), 1.0, beta * v > threshold)"
            => step(beta * v > threshold, 1.0, sigmoid(beta * v));
    /// min(max(x, lo), hi), NaN kept (PyTorch's; WGSL's clamp leaves NaN open)
    Clamp(lo, hi) example(-0.5, 0.75)
        f: "let t = select(v, lo, v < lo); select(t, hi, t > hi)" => {
                let t = step(v < lo, lo, v);
                step(t > hi, hi, t)
            };
        gate: "v >= lo && v <= hi" => v >= lo && v <= hi;
    /// scale·x + shift: scalar add, sub, mul and div in one pass
    Affine {
        /// Multiplier.
        scale,
        /// Addend.
        shift
    } example(-1.5, 0.25)
        f: "scale * v + shift" => scale * v + shift;
        df: "scale" => scale;
    /// x^p for a scalar exponent (IEEE pow, so negative x with integer p works)
    Powf(exponent) example(3.0)
        f: "pow_ieee(v, exponent)" => v.powf(exponent);
        df: "exponent * pow_ieee(v, exponent - 1.0)" => exponent * v.powf(exponent - 1.0);
}

/// The generated WGSL library `unary_fns`: `override OP`, the helpers, and the
/// table's `f(v)` / `df(v, y)` switches. Included by `unary.wgsl` and
/// `unary_grad.wgsl`, whose `Params` provide `p.alpha` / `p.beta`.
pub fn wgsl_library() -> String {
    let mut s = String::from(
        "// Generated from the unary op table (gpu-core/src/kernels/unary.rs): do not edit.\n\
         override OP: u32 = 0u;\n//#include unary_helpers.wgsl\n\n// y = f(v)\n",
    );
    s += &wgsl_switch("f(v: f32)", WGSL_F, "v");
    s += "\n// f'(v), given y = f(v) where that is cheaper.\n";
    s += &wgsl_switch("df(v: f32, y: f32)", WGSL_DF, "1.0");
    s +=
        "\n// The chain rule (chain_rule in gpu-core/src/kernels/unary.rs): a gated op's 0 stops g, inf and NaN too.\n";
    s += "fn chain(g: f32, d: f32) -> f32 {\n    return select(g * d, 0.0, d == 0.0 && (false";
    for op in UnaryOp::EXAMPLES.iter().filter(|op| op.gated()) {
        s += &format!(" || OP == {}u", op.code());
    }
    s += "));\n}\n";
    s
}

/// The shaders this family derives from its files by swapping includes,
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("unary_tex", "unary", &[("load_x_f32", "load_x_tex")]),
        Variant::new("unary_grad_tex", "unary_grad", &[("unary_grad_inputs_f32", "unary_grad_inputs_tex")]),
    ],
    io: &[IoLibrary {
        stem: "unary_grad_inputs",
        storages: Storage::F32_TEX,
        // unary_grad.wgsl's x, forward output y and incoming gradient g.
        bindings: &[Binding::load("x", 1), Binding::load("y", 2), Binding::load("g", 3)],
    }],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The activations at ±∞ and far out, against PyTorch 2.x's values
    /// (`torch.nn.functional`): NaN where PyTorch gives NaN (`x · sigmoid(x)`
    /// at -∞ is -∞ · 0), saturated values elsewhere.
    #[test]
    fn activations_at_the_extremes_are_pytorchs() {
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        let cases: [(UnaryOp, [f32; 4]); 8] = [
            // At -∞, +∞, -100, +100.
            (UnaryOp::Silu, [nan, inf, -0.0, 100.0]),
            (UnaryOp::Mish, [nan, inf, -0.0, 100.0]),
            (UnaryOp::Gelu, [nan, inf, -0.0, 100.0]),
            (UnaryOp::GeluTanh, [nan, inf, -0.0, 100.0]),
            (UnaryOp::Sigmoid, [0.0, 1.0, 0.0, 1.0]),
            (UnaryOp::Tanh, [-1.0, 1.0, -1.0, 1.0]),
            (UnaryOp::Elu(1.0), [-1.0, inf, -1.0, 100.0]),
            (UnaryOp::Softplus { beta: 1.0, threshold: 20.0 }, [0.0, inf, 0.0, 100.0]),
        ];
        for (op, want) in cases {
            for (x, w) in [-inf, inf, -100.0, 100.0].into_iter().zip(want) {
                let got = op.apply(x);
                let ok = if w.is_nan() { got.is_nan() } else { got == w || (got - w).abs() < 1e-30 };
                assert!(ok, "{op:?}({x}) = {got}, PyTorch {w}");
            }
        }
    }

    /// The twins read what the WGSL rows name and no more: with the value a
    /// row does not name replaced by NaN, every derivative is unchanged
    /// (autograd does not keep that value, `derivative_reads`).
    #[test]
    fn derivatives_read_only_what_their_rows_name() {
        // y > 0 exactly where v > 0: a ReLU's gradient needs only its output.
        assert_eq!(UnaryOp::Relu.derivative_reads(), (false, true));
        assert_eq!(UnaryOp::Square.derivative_reads(), (true, false));
        assert_eq!(UnaryOp::Exp.derivative_reads(), (false, true));
        assert_eq!(UnaryOp::Affine { scale: 2.0, shift: 1.0 }.derivative_reads(), (false, false));
        assert_eq!(UnaryOp::Elu(1.0).derivative_reads(), (true, true));
        for &op in UnaryOp::EXAMPLES {
            let (reads_v, reads_y) = op.derivative_reads();
            for v in [0.7f32, 1.3, -0.4, 2.5] {
                let v = if op.domain() == Domain::Positive { v.abs() } else { v };
                let y = op.apply(v);
                let want = op.derivative(v, y);
                let got = op.derivative(if reads_v { v } else { f32::NAN }, if reads_y { y } else { f32::NAN });
                assert_eq!(got.to_bits(), want.to_bits(), "{op:?} at {v}: {got} vs {want}");
            }
        }
    }
}

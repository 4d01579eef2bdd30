//! [`ReduceOp`]: which reduction, and its reference twin for one reduced
//! block ([`ReduceOp::word_of`], f64 sums, first-wins picks). The launch
//! over axes of a strided view is `ops/reduce.rs`.

use super::variants::{FamilyShaders, Variant};
use crate::layout::Layout;

/// A reduction. Max, Min, ArgMax and ArgMin propagate NaN like PyTorch (a
/// NaN is the extreme value; ArgMax/ArgMin give the index of the first NaN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Σx (0 over an empty set)
    Sum,
    /// Σx / n (NaN over an empty set)
    Mean,
    /// largest value
    Max,
    /// smallest value
    Min,
    /// u32 index of the largest value in the flattened reduced block; ties pick the first
    ArgMax,
    /// u32 index of the smallest value in the flattened reduced block; ties pick the first
    ArgMin,
    /// Σ(x − mean)² / max(n − correction, 0), computed in two passes
    Var {
        /// PyTorch's `correction`: 0 = population (biased), 1 = sample (unbiased).
        correction: usize,
    },
}

impl ReduceOp {
    /// One instance of every op (both variance corrections), for test lists.
    pub const EXAMPLES: &[ReduceOp] = &[
        ReduceOp::Sum,
        ReduceOp::Mean,
        ReduceOp::Max,
        ReduceOp::Min,
        ReduceOp::ArgMax,
        ReduceOp::ArgMin,
        ReduceOp::Var { correction: 0 },
        ReduceOp::Var { correction: 1 },
    ];

    /// The `OP` override value in `reduce.wgsl`.
    pub(crate) fn code(self) -> u32 {
        match self {
            ReduceOp::Sum => 0,
            ReduceOp::Mean => 1,
            ReduceOp::Max => 2,
            ReduceOp::Min => 3,
            ReduceOp::ArgMax => 4,
            ReduceOp::ArgMin => 5,
            ReduceOp::Var { .. } => 6,
        }
    }

    /// The op's name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
            ReduceOp::ArgMax => "argmax",
            ReduceOp::ArgMin => "argmin",
            ReduceOp::Var { .. } => "var",
        }
    }

    /// True for the ops that pick one element (undefined over an empty set).
    pub(crate) fn selects(self) -> bool {
        matches!(self, ReduceOp::Max | ReduceOp::Min | ReduceOp::ArgMax | ReduceOp::ArgMin)
    }

    /// Whether `b` (at index `ib`) replaces the running pick `a` (at `ia`):
    /// the same rule as `beats` in the kernel, whose threads meet indices out of order.
    pub(crate) fn beats(self, b: f32, ib: usize, a: f32, ia: usize) -> bool {
        if b.is_nan() || a.is_nan() {
            return b.is_nan() && (!a.is_nan() || ib < ia);
        }
        if b == a {
            return ib < ia;
        }
        match self {
            ReduceOp::Max | ReduceOp::ArgMax => b > a,
            _ => b < a,
        }
    }

    /// The CPU twin: the output word for one reduced block (f32 bits, or the
    /// index for ArgMax/ArgMin) of the `m` values `values()` yields in
    /// order, read where they lie (a block is never copied out: a sum over
    /// a whole tensor needs no memory beside it). A variance walks them
    /// twice, every other op once. `m` must be non-zero for the selecting ops.
    pub(crate) fn word_of<I: Iterator<Item = f32>>(self, m: usize, values: impl Fn() -> I) -> u32 {
        let n = m as f64;
        let sum = || values().map(|v| v as f64).sum::<f64>();
        match self {
            ReduceOp::Sum => (sum() as f32).to_bits(),
            ReduceOp::Mean => ((sum() / n) as f32).to_bits(),
            ReduceOp::Var { correction } => {
                let mean = sum() / n;
                let m2: f64 = values().map(|v| (v as f64 - mean).powi(2)).sum();
                let dof = m.saturating_sub(correction) as f64;
                ((m2 / dof) as f32).to_bits()
            }
            _ => {
                let mut it = values();
                let first = it.next().expect("a selecting reduction over at least one value");
                let (mut best, mut at) = (first, 0);
                for (i, v) in it.enumerate() {
                    if self.beats(v, i + 1, best, at) {
                        (best, at) = (v, i + 1);
                    }
                }
                match self {
                    ReduceOp::ArgMax | ReduceOp::ArgMin => at as u32,
                    _ => best.to_bits(),
                }
            }
        }
    }
}

/// The reference reduction (`torch.sum`, `mean`, `amax`, `argmax`, `var`, …
/// over the axes in `block`): output `o` is [`ReduceOp::word_of`] the `m`
/// elements of `xs` at `kept.index_of(o) + block.index_of(j)`, in order.
pub(crate) fn reduce_blocks(op: ReduceOp, xs: &[f32], kept: &Layout, block: &Layout, m: usize, out: &mut [u32]) {
    for (o, y) in out.iter_mut().enumerate() {
        let base = kept.index_of(o);
        *y = op.word_of(m, || (0..m).map(move |j| xs[base + block.index_of(j)]));
    }
}

/// The shaders this family derives from its files by swapping includes,
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("reduce_f16", "reduce", &[("load_x_f32", "load_x_f16")]),
        Variant::new("reduce_f16_native", "reduce", &[("load_x_f32", "load_x_f16_native")]).f16(),
        Variant::new("reduce_tex", "reduce", &[("load_x_f32", "load_x_tex")]),
    ],
    io: &[],
};

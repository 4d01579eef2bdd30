//! Automatic mixed precision: inside [`autocast`], the ops of the policy
//! table's f16 rows cast their f32 operands to f16 (casts recorded in the
//! graph, so gradients flow back through them) and compute with f16 loads
//! and f32 sums; every other op runs in f32 as before.
//!
//! Like `torch.autocast`, the state is per thread and scoped: [`autocast`]
//! for a closure, [`AutocastGuard`] for a block, and nesting with
//! `enabled = false` turns it off for a region. Parameters stay f32 (the
//! master weights the optimizer updates); a backward pass always runs with
//! autocast off, each op's backward in the dtypes its forward recorded.

use std::cell::Cell;

use crate::{DType, Tensor};

/// Where an op runs under autocast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// f32 operands are cast to f16 (loads of half the bytes; products and
    /// sums in f32).
    F16,
    /// The op runs in f32: f16 inputs are widened first (a recorded cast).
    F32,
    /// The op runs in its input's dtype: an f16 activation is read and
    /// written as f16 with f32 math inside (statistics, sums), an f32 one
    /// stays f32; nothing is cast.
    Input,
}

/// One row of the autocast policy.
#[derive(Clone, Copy, Debug)]
pub struct PolicyRow {
    /// The op, as `Tensor` names it (and as recorded graph nodes show it).
    pub op: &'static str,
    /// Where it runs under autocast.
    pub precision: Precision,
    /// Why, in a few words (docs/mixed-precision.md prints this table).
    pub why: &'static str,
}

/// The autocast policy: PyTorch's CUDA lists, cut to wgrad's ops. Ops not
/// listed run in their inputs' dtype, as in PyTorch: elementwise ops,
/// pooling, the data movers (views, `cat`, `contiguous`) and batch norm keep
/// f16. The f32 rows read f16 inputs in their kernels and return f32; the
/// ops without f16 kernels (nll_loss) widen f16 inputs and return f32 (see
/// docs/mixed-precision.md).
pub const POLICY: &[PolicyRow] = &[
    PolicyRow {
        op: "matmul",
        precision: Precision::F16,
        why: "products: bandwidth- and FLOP-bound; the result is f16, rounded once from the f32 sums",
    },
    PolicyRow {
        op: "linear",
        precision: Precision::F16,
        why: "x @ Wᵀ + b in one launch: the f32 bias is added to the sums, then one rounding to f16",
    },
    PolicyRow {
        op: "conv2d",
        precision: Precision::F16,
        why: "products; the result is an f16 activation (conv1d goes through conv2d)",
    },
    PolicyRow { op: "softmax", precision: Precision::F32, why: "exp overflows f16's range" },
    PolicyRow { op: "log_softmax", precision: Precision::F32, why: "exp/log of large ranges" },
    PolicyRow { op: "cross_entropy", precision: Precision::F32, why: "log of small probabilities, sums" },
    PolicyRow {
        op: "batch_norm",
        precision: Precision::Input,
        why: "f16 activations in and out; statistics are f32 sums of squares",
    },
    PolicyRow { op: "layer_norm", precision: Precision::F32, why: "statistics are sums of squares" },
    PolicyRow { op: "sum", precision: Precision::F32, why: "long sums lose f16's 11-bit precision" },
    PolicyRow { op: "mean", precision: Precision::F32, why: "long sums lose f16's 11-bit precision" },
    PolicyRow { op: "exp", precision: Precision::F32, why: "overflows past 11.1 in f16" },
    PolicyRow { op: "log", precision: Precision::F32, why: "small inputs underflow in f16" },
    PolicyRow {
        op: "attention",
        precision: Precision::F16,
        why: "products; the softmax inside is f32 (odd head dims: f32)",
    },
    PolicyRow {
        op: "lstm",
        precision: Precision::F32,
        why: "recurrent state accumulates over steps; no f16 kernel yet",
    },
];

/// Where `op` runs under autocast: its row's precision, f32 if unlisted.
pub fn policy(op: &str) -> Precision {
    POLICY.iter().find(|r| r.op == op).map_or(Precision::F32, |r| r.precision)
}

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
}

/// Whether ops on this thread currently autocast.
pub fn is_autocast_enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// Sets this thread's autocast state until dropped, then restores the
/// previous one (so guards nest).
#[must_use = "autocast ends when the guard drops"]
pub struct AutocastGuard {
    previous: bool,
}

impl AutocastGuard {
    /// Autocast on (`true`) or off (`false`) until the guard drops: an
    /// `--amp` flag passes straight through.
    pub fn new(enabled: bool) -> Self {
        AutocastGuard { previous: ENABLED.with(|e| e.replace(enabled)) }
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        ENABLED.with(|e| e.set(self.previous));
    }
}

/// Runs `f` with autocast on: `torch.autocast("cuda", torch.float16)`.
///
/// ```
/// use wgrad_autograd::{autocast, DType, Device, Tensor};
/// let dev = Device::cpu();
/// let x = Tensor::ones(&[4, 8], &dev);
/// let w = Tensor::ones(&[8, 2], &dev).requires_grad_();
/// let y = autocast(|| x.matmul(&w)); // f16 operands, f32 sums, f16 result
/// assert_eq!(y.dtype(), DType::F16);
/// y.sum_all().backward();
/// assert_eq!(w.grad().unwrap().dtype(), DType::F32); // master weights stay f32
/// ```
pub fn autocast<R>(f: impl FnOnce() -> R) -> R {
    let _guard = AutocastGuard::new(true);
    f()
}

/// Whether autocast asks `op` to run in f32 now: autocast is on and the
/// policy lists `op` as f32 (an f16 input is then widened, as PyTorch's
/// autocast does for its f32 list). Unlisted ops run in their inputs' dtype.
pub(crate) fn wants_f32(op: &str) -> bool {
    is_autocast_enabled() && POLICY.iter().any(|r| r.op == op && r.precision == Precision::F32)
}

/// The operands of `op` cast to f16 when autocast is on, `op` is on the
/// policy's f16 list, every operand is a float and at least one is f32 (an
/// f16 activation from the layer before stays as it is); `None` otherwise
/// (the op then runs as called).
pub(crate) fn f16_operands<const N: usize>(op: &str, operands: [&Tensor; N]) -> Option<[Tensor; N]> {
    let floats = operands.iter().all(|t| matches!(t.dtype(), DType::F32 | DType::F16));
    let applies = is_autocast_enabled()
        && policy(op) == Precision::F16
        && floats
        && operands.iter().any(|t| t.dtype() == DType::F32);
    applies.then(|| operands.map(|t| t.to_dtype(DType::F16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_nest_and_restore() {
        assert!(!is_autocast_enabled());
        autocast(|| {
            assert!(is_autocast_enabled());
            {
                let _off = AutocastGuard::new(false);
                assert!(!is_autocast_enabled());
            }
            assert!(is_autocast_enabled());
        });
        assert!(!is_autocast_enabled());
    }

    #[test]
    fn the_policy_has_one_row_per_op() {
        for (i, r) in POLICY.iter().enumerate() {
            assert!(POLICY[..i].iter().all(|q| q.op != r.op), "{} listed twice", r.op);
        }
        assert_eq!(policy("matmul"), Precision::F16);
        assert_eq!(policy("softmax"), Precision::F32);
        assert_eq!(policy("not an op"), Precision::F32);
    }
}

//! Unary functions, scalar arithmetic, broadcasting binary ops, `where`.

use wgrad_gpu_core::layout::broadcast_shapes;
use wgrad_gpu_core::ops::binary::{self, BinaryOp};
use wgrad_gpu_core::ops::cast;
use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::ops::unary::{self, UnaryOp};
use wgrad_gpu_core::{Buffer, Error, Layout, Result};

use crate::graph::Saves;
use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// Applies an elementwise function; its backward is one fused kernel.
    ///
    /// An F16 tensor gives an F16 result (PyTorch's dtype), computed in f32:
    /// the fuser merges the widening, the function and the rounding into
    /// one kernel that reads and writes f16. Under
    /// [`autocast`](crate::autocast()), the policy's f32 ops (`exp`, `log`)
    /// widen instead and return F32.
    pub fn unary(&self, op: UnaryOp) -> Tensor {
        let scope = crate::trace::scope();
        scope.output(|| TraceOp::Unary(op), &[self], self.unary_untraced(op))
    }

    fn unary_untraced(&self, op: UnaryOp) -> Tensor {
        if self.dtype() == DType::F16 && crate::autocast::wants_f32(op.op_name()) {
            return self.f32_input("unary").unary(op);
        }
        let (dtype, io) = (self.dtype(), self.float_storage("unary"));
        let n = self.numel();
        let layout = Layout::contiguous(&self.shape());
        let y = expect("unary", in_f32(io, n, &[&self.dense_buffer()], |[x]| unary::unary(op, x, n)));
        // The rule keeps what the derivative's row reads (`v`, `y`), and an
        // op that reads neither its input (bound for both, so that the
        // gradient, bound once, still fuses with its producer). A value not
        // kept is bound as the one kept (never read), unless that is a
        // view's dense copy made at backward time: bound twice, the fuser
        // could not compute the copy inside the gradient's kernel (a
        // launch more), so the output is kept to bind instead.
        let (reads_x, reads_y) = op.derivative_reads();
        let keep_x = reads_x || !reads_y;
        let keep_y = reads_y || !self.layout().is_contiguous();
        let saves = Saves::inputs([keep_x]);
        let saves = if keep_y { saves.and_output() } else { saves };
        Tensor::from_op_saving(op.op_name(), y, layout, dtype, &[self], saves, move |g, inputs, out| {
            let gb = g.dense_buffer();
            let kept = |keep: bool, t: &Tensor| keep.then(|| t.dense_buffer());
            let (x, y) = match (kept(keep_x, &inputs[0]), kept(keep_y, out)) {
                (Some(x), Some(y)) => (x, y),
                (Some(v), None) | (None, Some(v)) => (v.clone(), v),
                (None, None) => unreachable!("a unary rule keeps its input or its output"),
            };
            let dx = in_f32(io, n, &[&x, &y, &gb], |[x, y, g]| unary::unary_grad(op, x, y, g, n));
            vec![Some(Tensor::from_parts(expect("unary backward", dx), Layout::contiguous(&g.shape()), dtype))]
        })
    }

    /// -x
    pub fn neg(&self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
    /// |x|
    pub fn abs(&self) -> Tensor {
        self.unary(UnaryOp::Abs)
    }
    /// Sign (-1, 0, 1); its gradient is zero.
    pub fn sign(&self) -> Tensor {
        self.unary(UnaryOp::Sign)
    }
    /// e^x
    pub fn exp(&self) -> Tensor {
        self.unary(UnaryOp::Exp)
    }
    /// Natural log.
    pub fn log(&self) -> Tensor {
        self.unary(UnaryOp::Log)
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        self.unary(UnaryOp::Sqrt)
    }
    /// 1/√x
    pub fn rsqrt(&self) -> Tensor {
        self.unary(UnaryOp::Rsqrt)
    }
    /// x²
    pub fn square(&self) -> Tensor {
        self.unary(UnaryOp::Square)
    }
    /// 1/x
    pub fn reciprocal(&self) -> Tensor {
        self.unary(UnaryOp::Reciprocal)
    }
    /// sin x
    pub fn sin(&self) -> Tensor {
        self.unary(UnaryOp::Sin)
    }
    /// cos x
    pub fn cos(&self) -> Tensor {
        self.unary(UnaryOp::Cos)
    }
    /// tanh x
    pub fn tanh(&self) -> Tensor {
        self.unary(UnaryOp::Tanh)
    }
    /// Logistic sigmoid.
    pub fn sigmoid(&self) -> Tensor {
        self.unary(UnaryOp::Sigmoid)
    }
    /// max(x, 0)
    pub fn relu(&self) -> Tensor {
        self.unary(UnaryOp::Relu)
    }
    /// Leaky ReLU with negative `slope` (PyTorch default 0.01).
    pub fn leaky_relu(&self, slope: f32) -> Tensor {
        self.unary(UnaryOp::LeakyRelu(slope))
    }
    /// ELU with `alpha` (PyTorch default 1.0).
    pub fn elu(&self, alpha: f32) -> Tensor {
        self.unary(UnaryOp::Elu(alpha))
    }
    /// SELU.
    pub fn selu(&self) -> Tensor {
        self.unary(UnaryOp::Selu)
    }
    /// GELU, exact (erf) form.
    pub fn gelu(&self) -> Tensor {
        self.unary(UnaryOp::Gelu)
    }
    /// GELU, tanh approximation.
    pub fn gelu_tanh(&self) -> Tensor {
        self.unary(UnaryOp::GeluTanh)
    }
    /// SiLU / swish: x·sigmoid(x).
    pub fn silu(&self) -> Tensor {
        self.unary(UnaryOp::Silu)
    }
    /// Mish: x·tanh(softplus(x)).
    pub fn mish(&self) -> Tensor {
        self.unary(UnaryOp::Mish)
    }
    /// Softplus with PyTorch's defaults (beta 1, threshold 20).
    pub fn softplus(&self) -> Tensor {
        self.unary(UnaryOp::Softplus { beta: 1.0, threshold: 20.0 })
    }
    /// Clamps into `[lo, hi]`; the gradient passes where `lo <= x <= hi`.
    pub fn clamp(&self, lo: f32, hi: f32) -> Tensor {
        self.unary(UnaryOp::Clamp(lo, hi))
    }
    /// x^p for a scalar p.
    pub fn powf(&self, p: f32) -> Tensor {
        self.unary(UnaryOp::Powf(p))
    }
    /// scale·x + shift in one pass.
    pub fn affine(&self, scale: f32, shift: f32) -> Tensor {
        self.unary(UnaryOp::Affine { scale, shift })
    }
    /// x + s
    pub fn add_scalar(&self, s: f32) -> Tensor {
        self.affine(1.0, s)
    }
    /// x · s
    pub fn mul_scalar(&self, s: f32) -> Tensor {
        self.affine(s, 0.0)
    }

    /// A broadcasting binary op; an error (not a panic) for incompatible shapes.
    ///
    /// Comparisons also take U32 and F16 tensors (`pred.eq(&labels)` of two
    /// class-id tensors), compared as f32: exact for f16 and for integers
    /// below 2^24; they return F32 masks. Arithmetic on two F16 tensors
    /// returns F16 (computed in f32, rounded once: one fused kernel that
    /// reads and writes f16 on a GPU); F16 with F32 promotes to F32, as in
    /// PyTorch. U32 operands are an error (convert with `.float()`).
    pub fn try_binary(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        let scope = crate::trace::scope();
        scope.result(|| TraceOp::Binary(op), &[self, other], self.try_binary_untraced(op, other))
    }

    fn try_binary_untraced(&self, op: BinaryOp, other: &Tensor) -> Result<Tensor> {
        let name = op.op_name();
        if is_comparison(op) && (self.dtype() != DType::F32 || other.dtype() != DType::F32) {
            return self.float().try_binary(op, &other.float());
        }
        if let (DType::F16, DType::F32) | (DType::F32, DType::F16) = (self.dtype(), other.dtype()) {
            return self.f32_input(name).try_binary(op, &other.f32_input(name));
        }
        let dtype = self.dtype();
        for t in [self, other] {
            if !matches!(t.dtype(), DType::F32 | DType::F16) {
                return Err(Error::invalid(
                    name,
                    format!("expects f32 or f16 tensors, got {:?} (convert with .float())", t.dtype()),
                ));
            }
        }
        if self.device() != other.device() {
            return Err(Error::invalid(
                name,
                format!("tensors on {} and {}", self.device().name(), other.device().name()),
            ));
        }
        let (sa, sb) = (self.shape(), other.shape());
        if broadcast_shapes(&sa, &sb).is_none() {
            return Err(Error::invalid(name, format!("shapes {sa:?} and {sb:?} cannot be broadcast together")));
        }
        // f16 operands: the viewed spans widen (exactly) and keep their
        // views, so broadcast and strided operands need no copy.
        let ((ba, la), (bb, lb)) = (self.f32_words(), other.f32_words());
        let (z, shape) = binary::binary(op, &ba, &la, &bb, &lb)?;
        drop((ba, bb));
        let layout = Layout::contiguous(&shape);
        if is_comparison(op) {
            return Ok(Tensor::constant(z, layout, DType::F32));
        }
        let z = match dtype {
            DType::F16 => cast::f32_to_f16(&z, layout.numel())?,
            _ => z,
        };
        // The rules are tensor ops in the operands' dtype, so f16 gradients
        // are f16.
        Ok(Tensor::from_op_saving(name, z, layout, dtype, &[self, other], binary_saves(op), move |g, inputs, out| {
            binary_grads(op, g, inputs, out, (&sa, &sb))
        }))
    }

    fn binary(&self, op: BinaryOp, other: &Tensor) -> Tensor {
        self.try_binary(op, other).unwrap_or_else(|e| crate::recover::fail(e))
    }

    /// Elementwise sum with broadcasting (also `a + b`).
    pub fn add(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Add, other)
    }
    /// Elementwise difference with broadcasting (also `a - b`).
    pub fn sub(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Sub, other)
    }
    /// Elementwise product with broadcasting (also `a * b`).
    pub fn mul(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Mul, other)
    }
    /// Elementwise quotient with broadcasting (also `a / b`).
    pub fn div(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Div, other)
    }
    /// Elementwise power with broadcasting.
    pub fn pow(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Pow, other)
    }
    /// Elementwise maximum with broadcasting.
    pub fn maximum(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Maximum, other)
    }
    /// Elementwise minimum with broadcasting.
    pub fn minimum(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Minimum, other)
    }
    /// Mask (1.0 / 0.0, F32) of `self == other`; U32 and F16 operands
    /// compare too, so accuracy reads `pred.eq(&labels).mean_all()`.
    pub fn eq(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Eq, other)
    }
    /// Mask of `self < other`.
    pub fn lt(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Lt, other)
    }
    /// Mask of `self <= other`.
    pub fn le(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Le, other)
    }
    /// Mask of `self > other`.
    pub fn gt(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Gt, other)
    }
    /// Mask of `self >= other`.
    pub fn ge(&self, other: &Tensor) -> Tensor {
        self.binary(BinaryOp::Ge, other)
    }

    /// `cond != 0 ? a : b`, broadcasting all three (`torch.where`).
    pub fn where_cond(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
        let scope = crate::trace::scope();
        scope.output(|| TraceOp::Where, &[cond, a, b], Tensor::where_untraced(cond, a, b))
    }

    fn where_untraced(cond: &Tensor, a: &Tensor, b: &Tensor) -> Tensor {
        if [cond, a, b].iter().any(|t| t.dtype() == DType::F16) {
            return Tensor::where_cond(&cond.f32_input("where"), &a.f32_input("where"), &b.f32_input("where"));
        }
        for t in [cond, a, b] {
            t.expect_dtype("where", DType::F32);
            t.expect_same_device("where", a);
        }
        let ((bc, lc), (ba, la), (bb, lb)) = (cond.buffer_and_layout(), a.buffer_and_layout(), b.buffer_and_layout());
        let (z, shape) = expect("where", binary::where_select(&bc, &lc, &ba, &la, &bb, &lb));
        let (sa, sb) = (a.shape(), b.shape());
        let cond = cond.detach();
        let layout = Layout::contiguous(&shape);
        Tensor::from_op_saving("where", z, layout, DType::F32, &[a, b], Saves::NOTHING, move |g, _, _| {
            let zero = Tensor::zeros(&[], &g.device());
            vec![
                Some(Tensor::where_cond(&cond, g, &zero).sum_to_shape(&sa)),
                Some(Tensor::where_cond(&cond, &zero, g).sum_to_shape(&sb)),
            ]
        })
    }
}

/// What [`binary_grads`] reads of `a`, `b` and `out` for `op`.
fn binary_saves(op: BinaryOp) -> Saves {
    match op {
        BinaryOp::Add | BinaryOp::Sub => Saves::NOTHING,
        BinaryOp::Mul | BinaryOp::Maximum | BinaryOp::Minimum => Saves::inputs([true, true]),
        BinaryOp::Div => Saves::inputs([false, true]).and_output(),
        _ => Saves::ALL,
    }
}

/// The gradients of `out = op(a, b)` (`inputs = [a, b]`, of shapes `sa`,
/// `sb` before broadcasting) from the output gradient `g`, as tensor ops in
/// the operands' dtype.
fn binary_grads(
    op: BinaryOp,
    g: &Tensor,
    inputs: &[Tensor],
    out: &Tensor,
    (sa, sb): (&[usize], &[usize]),
) -> Vec<Option<Tensor>> {
    let (a, b) = (&inputs[0], &inputs[1]);
    let (ga, gb) = match op {
        BinaryOp::Add => (g.clone(), g.clone()),
        BinaryOp::Sub => (g.clone(), g.neg()),
        BinaryOp::Mul => (g * b, g * a),
        BinaryOp::Div => (g / b, -(g * out) / b),
        BinaryOp::Pow => (g * b * a.pow(&b.add_scalar(-1.0)), g * out * a.log()),
        // PyTorch's rule: ties split the gradient evenly, and the side that
        // loses gets 0 whatever g is (masked, not multiplied by 0, which
        // would turn an infinite g into NaN); with a NaN neither side loses.
        BinaryOp::Maximum | BinaryOp::Minimum => {
            let (a_loses, b_loses) = if op == BinaryOp::Maximum { (a.lt(b), a.gt(b)) } else { (a.gt(b), a.lt(b)) };
            let passed = Tensor::where_cond(&a.eq(b), &g.mul_scalar(0.5), g);
            let zero = Tensor::zeros(&[], &g.device());
            // `where` computes in f32: an f16 gradient goes back as f16.
            let mask = |loses: &Tensor| Tensor::where_cond(loses, &zero, &passed).to_dtype(g.dtype());
            (mask(&a_loses), mask(&b_loses))
        }
        _ => unreachable!("comparisons have no gradient"),
    };
    vec![Some(ga.sum_to_shape(sa)), Some(gb.sum_to_shape(sb))]
}

/// Runs the f32 kernel `f` on `n`-element operands stored as `io`: as they
/// are for f32; for f16 widened, then `f`'s result rounded to f16. The f32
/// buffers are dropped at once, so on a GPU the fuser merges the three
/// steps into one kernel that reads and writes f16.
fn in_f32<const N: usize>(
    io: Operands,
    n: usize,
    inputs: &[&Buffer; N],
    f: impl FnOnce([&Buffer; N]) -> Result<Buffer>,
) -> Result<Buffer> {
    if io == Operands::F32 {
        return f(*inputs);
    }
    let wide: Vec<Buffer> = inputs.iter().map(|h| cast::f16_to_f32(h, n)).collect::<Result<_>>()?;
    let refs: [&Buffer; N] = std::array::from_fn(|i| &wide[i]);
    let y = f(refs)?;
    drop(wide);
    cast::f32_to_f16(&y, n)
}

fn is_comparison(op: BinaryOp) -> bool {
    matches!(op, BinaryOp::Eq | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge)
}

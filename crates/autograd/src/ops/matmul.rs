//! Matrix products: batched with broadcasting, 1-D operands like
//! `torch.matmul`; and `linear` (`x @ Wᵀ + b`), whose bias is added in the
//! product's store (the matmul kernels' epilogue).

use wgrad_gpu_core::ops::matmul::{self, BiasAxis, Epilogue, MatmulConfig, Operands};
use wgrad_gpu_core::{Buffer, Error, Layout, Result};

use crate::graph::Saves;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// `self @ other` with PyTorch's `matmul` rules: 1-D operands are treated
    /// as a row (left) or column (right) vector and that dim is removed from
    /// the result; batch dims broadcast. Transposed views cost no copy.
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        self.try_matmul(other).unwrap_or_else(|e| crate::recover::fail(e))
    }

    /// [`matmul`](Self::matmul) returning shape errors instead of panicking.
    ///
    /// Two F16 operands (or two F32 ones under [`autocast`](crate::autocast()),
    /// which casts them) multiply with f16 loads and f32 sums, and the
    /// result is F16 (each value rounded once as it is stored), as PyTorch
    /// returns; their gradients are F16, like the operands.
    pub fn try_matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.try_matmul_scaled(other, None)
    }

    /// `scale · (self @ other)` with the scale applied to the f32 sums in
    /// the product's store, and the same for each gradient product (the
    /// composite attention's `q kᵀ · scale`). `matmul` then `mul_scalar`
    /// is one launch forward too (the fuser merges the scale), but its
    /// backward scales the gradient in a launch of its own: the fuser keeps
    /// the unfused bits, and `s·(a·g)` is not `a·(s·g)`. Rules, dtypes and
    /// panics as [`matmul`](Self::matmul).
    pub fn matmul_scaled(&self, other: &Tensor, scale: f32) -> Tensor {
        self.try_matmul_scaled(other, Some(scale)).unwrap_or_else(|e| crate::recover::fail(e))
    }

    /// `scale · (self @ other)` for two F16 tensors with an F32 result (the
    /// f32 sums stored unrounded; the gradients F16, like the operands):
    /// attention's scores on f16 operands, whose softmax wants them exact.
    pub(crate) fn matmul_scaled_f32(&self, other: &Tensor, scale: f32) -> Tensor {
        let store = Store { scale: Some(scale), ..Store::plain(DType::F32) };
        self.product(other, store).unwrap_or_else(|e| crate::recover::fail(e))
    }

    /// [`matmul`](Self::matmul), times `scale` when given.
    fn try_matmul_scaled(&self, other: &Tensor, scale: Option<f32>) -> Result<Tensor> {
        let scope = crate::trace::scope();
        let out = self.try_matmul_scaled_untraced(other, scale);
        scope.result(|| TraceOp::MatMul { scale: scale.unwrap_or(1.0) }, &[self, other], out)
    }

    fn try_matmul_scaled_untraced(&self, other: &Tensor, scale: Option<f32>) -> Result<Tensor> {
        if let Some([a, b]) = crate::autocast::f16_operands("matmul", [self, other]) {
            return a.try_matmul_scaled(&b, scale);
        }
        let (sa, sb) = (self.shape(), other.shape());
        let (da, db) = (self.dtype(), other.dtype());
        if !matches!((da, db), (DType::F32, DType::F32) | (DType::F16, DType::F16)) {
            return Err(Error::invalid(
                "matmul",
                format!("expects two f32 or two f16 tensors, got {da:?} and {db:?} (see Tensor::to_dtype)"),
            ));
        }
        if sa.is_empty() || sb.is_empty() {
            return Err(Error::invalid("matmul", format!("0-d operands: shapes {sa:?} and {sb:?}")));
        }
        if self.device() != other.device() {
            return Err(Error::invalid("matmul", "operands on different devices"));
        }
        let a = if sa.len() == 1 { self.reshape(&[1, sa[0]]) } else { self.clone() };
        let b = if sb.len() == 1 { other.reshape(&[sb[0], 1]) } else { other.clone() };
        let out = a.product(&b, Store { scale, ..Store::plain(a.dtype()) }).map_err(|e| match e {
            // The kernel's message names the 2-D shapes it saw; the caller's
            // own shapes differ only where a 1-D operand was reshaped.
            Error::Invalid { msg, .. } if sa.len() == 1 || sb.len() == 1 => {
                Error::invalid("matmul", format!("{msg} (operands of shapes {sa:?} and {sb:?})"))
            }
            e => e,
        })?;
        // Drop the dims that the 1-D operands were given: M (second to last), then N (last).
        let mut shape = out.shape();
        if sa.len() == 1 {
            let m = shape.len() - 2;
            shape.remove(m);
        }
        if sb.len() == 1 {
            shape.pop();
        }
        Ok(if shape == out.shape() { out } else { out.reshape(&shape) })
    }

    /// `self @ other` (both at least 2-D, both F32 or both F16) through
    /// `store`: its f32 sums times the scale (if any), plus the bias (F32,
    /// one value per output column),
    /// stored as `store.out` (F32, or F16 for F16 operands): one launch (an
    /// F16 result of odd width takes a cast too). Records op "matmul"
    /// without a bias, "linear" with one. An activation or a residual add
    /// that follows is merged into the store by the fuser on a GPU
    /// (`gpu-core`'s `gpu/tails.rs`), not here.
    fn product(&self, other: &Tensor, store: Store) -> Result<Tensor> {
        let Store { bias, out, scale } = store;
        let ((ba, la), (bb, lb)) = (self.buffer_and_layout(), other.buffer_and_layout());
        let dtype = self.dtype();
        let (cfg, storage) = match dtype {
            DType::F16 => (MatmulConfig::f16(), if out == DType::F16 { Operands::F16 } else { Operands::F32 }),
            _ => (MatmulConfig::default(), Operands::F32),
        };
        let bias_buf: Option<Buffer> = bias.map(|b| b.dense_buffer());
        let mut epi = Epilogue { output: storage, scale, ..Epilogue::default() };
        if let Some(b) = &bias_buf {
            epi = epi.with_bias(b, BiasAxis::Columns, 1);
        }
        let inputs: Vec<&Tensor> = [Some(self), Some(other), bias].into_iter().flatten().collect();
        let (c, shape) = matmul::matmul_epilogue(cfg, &epi, &ba, &la, &bb, &lb)?;
        let out = if storage == Operands::F16 { DType::F16 } else { DType::F32 };
        let (sa, sb) = (la.shape.clone(), lb.shape.clone());
        let op = if bias.is_some() { "linear" } else { "matmul" };
        let has_bias = bias.is_some();
        let layout = Layout::contiguous(&shape);
        // The operands, never the bias.
        let saves = Saves::inputs([true, true, false]);
        Ok(Tensor::from_op_saving(op, c, layout, out, &inputs, saves, move |g, inputs, _| {
            let (a, b) = (&inputs[0], &inputs[1]);
            // f16 operands: the output gradient is read as f16 and the
            // products run like the forward one, each gradient rounded to
            // f16 once: in the product's store, or after the batch sum
            // where an operand was broadcast.
            let g = g.to_dtype(dtype);
            // Both gradient products have the output's batch dims.
            let out_batch = g.shape()[..g.dims() - 2].to_vec();
            // A scaled product's gradients are scaled products too.
            let back = |x: &Tensor, y: &Tensor, shape: &[usize]| {
                if out_batch == shape[..shape.len() - 2] {
                    x.try_matmul_scaled(y, scale).unwrap_or_else(|e| crate::recover::fail(e))
                } else {
                    let store = Store { scale, ..Store::plain(DType::F32) };
                    let sum = x.product(y, store).unwrap_or_else(|e| crate::recover::fail(e));
                    sum.sum_to_shape(shape).to_dtype(dtype)
                }
            };
            // Only the operands that need a gradient get one: the first
            // layer's input (data) would otherwise cost a full product. An
            // operand that is a transposed view (a Linear's Wᵀ, attention's
            // Kᵀ) gets its gradient as the transpose of the product in the
            // other order (dB = (gᵀ A)ᵀ, same sums), so the transpose that
            // made it hands its tensor a dense gradient instead of one that
            // would be copied to accumulate it.
            let ga = a.requires_grad().then(|| match is_transposed(a) {
                true => back(b, &g.transpose(-1, -2), &swapped(&sa)).transpose(-1, -2),
                false => back(&g, &b.transpose(-1, -2), &sa),
            });
            let gb = b.requires_grad().then(|| match is_transposed(b) {
                true => back(&g.transpose(-1, -2), a, &swapped(&sb)).transpose(-1, -2),
                false => back(&a.transpose(-1, -2), &g, &sb),
            });
            // The bias gradient: the output gradient summed over the rows.
            let gbias = has_bias.then(|| {
                let cols = g.shape()[g.dims() - 1];
                g.reshape(&[g.numel() / cols.max(1), cols]).sum(&[0], false).to_dtype(DType::F32)
            });
            let mut grads = vec![ga, gb];
            grads.extend(gbias.map(Some));
            grads
        }))
    }

    /// `self @ weightᵀ + bias` for `self` `[.., in]`, `weight` `[out, in]`,
    /// `bias` `[out]`: PyTorch's `F.linear`, returning `[.., out]`. The bias
    /// is added to the product's f32 sums as they are stored (one launch).
    ///
    /// F16 operands (or F32 ones under [`autocast`](crate::autocast()), which
    /// casts them; the bias stays F32) give an F16 result rounded once from
    /// the f32 sums plus the bias, as PyTorch's autocast linear returns f16.
    ///
    /// # Panics
    /// On shapes that do not fit, a bias that is not F32 `[out]`, mixed
    /// dtypes or devices, naming `linear`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
        let scope = crate::trace::scope();
        scope.output_opt(|| TraceOp::Linear, &[Some(self), Some(weight), bias], self.linear_untraced(weight, bias))
    }

    fn linear_untraced(&self, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
        const OP: &str = "linear";
        if let Some([x, w]) = crate::autocast::f16_operands(OP, [self, weight]) {
            return x.linear(&w, bias);
        }
        let (xs, ws) = (self.shape(), weight.shape());
        assert!(ws.len() == 2, "{OP}: weight shape {ws:?} must be [out_features, in_features]");
        assert!(
            xs.last() == Some(&ws[1]),
            "{OP}: input shape {xs:?} must end in in_features = {} (weight {ws:?})",
            ws[1]
        );
        if let Some(b) = bias {
            b.expect_dtype(OP, DType::F32);
            self.expect_same_device(OP, b);
            assert!(b.shape() == [ws[0]], "{OP}: bias shape {:?} must be [{}] (weight {ws:?})", b.shape(), ws[0]);
        }
        if xs.len() != 2 {
            // [.., in] as rows of a matrix, and the rows back.
            let mut out_shape = xs[..xs.len() - 1].to_vec();
            out_shape.push(ws[0]);
            let rows = xs[..xs.len() - 1].iter().product();
            return self.reshape(&[rows, ws[1]]).linear(weight, bias).reshape(&out_shape);
        }
        let (da, db) = (self.dtype(), weight.dtype());
        assert!(
            matches!((da, db), (DType::F32, DType::F32) | (DType::F16, DType::F16)),
            "{OP}: expects two f32 or two f16 tensors, got {da:?} and {db:?} (see Tensor::to_dtype)"
        );
        self.expect_same_device(OP, weight);
        let store = Store { bias, out: da, scale: None };
        self.product(&weight.t(), store).unwrap_or_else(|e| crate::recover::fail(e))
    }
}

/// What a product's store does besides storing: [`Tensor::product`].
#[derive(Clone, Copy)]
struct Store<'a> {
    bias: Option<&'a Tensor>,
    out: DType,
    scale: Option<f32>,
}

impl Store<'_> {
    /// The sums as they are, stored as `out`.
    fn plain(out: DType) -> Self {
        Store { bias: None, out, scale: None }
    }
}

/// Whether `t`'s last two dims are a transposed dense matrix (column-major:
/// rows one element apart), as `w.t()` is.
fn is_transposed(t: &Tensor) -> bool {
    let l = t.layout();
    let d = l.rank();
    d >= 2 && l.shape[d - 2] > 1 && l.shape[d - 1] > 1 && l.strides[d - 2] == 1 && l.strides[d - 1] == l.shape[d - 2]
}

/// `shape` with its last two dims swapped.
fn swapped(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    let d = s.len();
    s.swap(d - 2, d - 1);
    s
}

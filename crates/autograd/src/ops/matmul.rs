//! Matrix products: batched with broadcasting, 1-D operands like `torch.matmul`.

use wgrad_gpu_core::ops::matmul;
use wgrad_gpu_core::{Error, Layout, Result};

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
    /// Two F16 operands (or two F32 ones under [`autocast`](crate::autocast),
    /// which casts them) multiply with f16 loads and f32 sums, and the
    /// result is F32; their gradients are F16, like the operands.
    pub fn try_matmul(&self, other: &Tensor) -> Result<Tensor> {
        if let Some([a, b]) = crate::autocast::f16_operands("matmul", [self, other]) {
            return a.try_matmul(&b);
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
        let out = a.matmul_2d(&b).map_err(|e| match e {
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
            shape.remove(shape.len() - 2);
        }
        if sb.len() == 1 {
            shape.pop();
        }
        Ok(if shape == out.shape() { out } else { out.reshape(&shape) })
    }

    /// Both operands at least 2-D.
    fn matmul_2d(&self, other: &Tensor) -> Result<Tensor> {
        let ((ba, la), (bb, lb)) = (self.buffer_and_layout(), other.buffer_and_layout());
        let dtype = self.dtype();
        let (c, shape) = match dtype {
            DType::F16 => matmul::matmul_f16(&ba, &la, &bb, &lb)?,
            _ => matmul::matmul(&ba, &la, &bb, &lb)?,
        };
        let (sa, sb) = (la.shape.clone(), lb.shape.clone());
        Ok(Tensor::from_op("matmul", c, Layout::contiguous(&shape), &[self, other], move |g, inputs, _| {
            let (a, b) = (&inputs[0], &inputs[1]);
            // f16 operands: the (f32) output gradient is rounded to f16 and
            // the products run like the forward one; each gradient is
            // rounded to f16 after its batch sum, in the operand's dtype.
            let g = g.to_dtype(dtype);
            let back = |t: Tensor, shape: &[usize]| t.sum_to_shape(shape).to_dtype(dtype);
            // Only the operands that need a gradient get one: the first
            // layer's input (data) would otherwise cost a full product.
            let ga = a.requires_grad().then(|| back(g.matmul(&b.transpose(-1, -2)), &sa));
            let gb = b.requires_grad().then(|| back(a.transpose(-1, -2).matmul(&g), &sb));
            vec![ga, gb]
        }))
    }
}

//! Matrix products: batched with broadcasting, 1-D operands like `torch.matmul`.

use wgrad_gpu_core::ops::matmul;
use wgrad_gpu_core::{Error, Layout, Result};

use crate::{DType, Tensor};

impl Tensor {
    /// `self @ other` with PyTorch's `matmul` rules: 1-D operands are treated
    /// as a row (left) or column (right) vector and that dim is removed from
    /// the result; batch dims broadcast. Transposed views cost no copy.
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        self.try_matmul(other).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`matmul`](Self::matmul) returning shape errors instead of panicking.
    pub fn try_matmul(&self, other: &Tensor) -> Result<Tensor> {
        let (sa, sb) = (self.shape(), other.shape());
        for t in [self, other] {
            if t.dtype() != DType::F32 {
                return Err(Error::invalid("matmul", format!("expects f32 tensors, got {:?}", t.dtype())));
            }
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
            Error::Invalid { msg, .. } => Error::invalid("matmul", format!("{msg} (shapes {sa:?} and {sb:?})")),
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
        let (c, shape) = matmul::matmul(&ba, &la, &bb, &lb)?;
        let (sa, sb) = (la.shape.clone(), lb.shape.clone());
        Ok(Tensor::from_op("matmul", c, Layout::contiguous(&shape), &[self, other], move |g, inputs, _| {
            let (a, b) = (&inputs[0], &inputs[1]);
            // Only the operands that need a gradient get one: the first
            // layer's input (data) would otherwise cost a full product.
            let ga = a.requires_grad().then(|| g.matmul(&b.transpose(-1, -2)).sum_to_shape(&sa));
            let gb = b.requires_grad().then(|| a.transpose(-1, -2).matmul(g).sum_to_shape(&sb));
            vec![ga, gb]
        }))
    }
}

//! Embedding lookup: rows of a weight table picked by U32 ids.

use wgrad_gpu_core::ops::index;
use wgrad_gpu_core::Layout;

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// `torch.nn.functional.embedding` with the ids as the receiver:
    /// `ids.embedding(&weight, padding_idx)` gives `weight[ids]`, of shape
    /// `ids.shape() + [dim]` for U32 `ids` of any shape and `weight [num, dim]`.
    ///
    /// The weight's gradient adds the output gradient of every occurrence of
    /// an id into its row (repeated ids accumulate, in order of occurrence
    /// on every device: [`index_add`](Self::index_add)); the `padding_idx`
    /// row gets none, as in PyTorch (its forward value is returned
    /// unchanged). An id ≥ `num` is [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange) as in
    /// PyTorch: on a GPU from the next readback (the row reads zero and adds
    /// nothing meanwhile), on the CPU backend from the op.
    ///
    /// An F16 table gives F16 rows and an F16 gradient (summed in f32,
    /// rounded once); with an even `dim` the rows are gathered as whole
    /// words, one launch and no widened copy of the table.
    ///
    /// # Panics
    /// When `ids` is not U32, `weight` not a 2-D F32 or F16 table, or the devices differ.
    pub fn embedding(&self, weight: &Tensor, padding_idx: Option<u32>) -> Tensor {
        let scope = crate::trace::scope();
        scope.output(|| TraceOp::Embedding, &[self, weight], self.embedding_untraced(weight, padding_idx))
    }

    fn embedding_untraced(&self, weight: &Tensor, padding_idx: Option<u32>) -> Tensor {
        const OP: &str = "embedding";
        self.expect_dtype(OP, DType::U32);
        self.expect_same_device(OP, weight);
        let ws = weight.shape();
        assert_eq!(ws.len(), 2, "{OP}: weight must be [num, dim], got shape {ws:?}");
        let (num, dim) = (ws[0], ws[1]);
        let k = self.numel();
        let ids = self.dense_buffer();
        if weight.dtype() == DType::F16 {
            let pad = padding_idx.map(|p| p as usize).filter(|&p| p < num);
            let Some(rows) = weight.select_rows_f16(OP, &ids, k, pad) else {
                // Odd widths: through f32, both casts exact.
                return self.embedding(&weight.to_dtype(DType::F32), padding_idx).to_dtype(DType::F16);
            };
            let mut shape = self.shape();
            shape.push(dim);
            return rows.reshape(&shape);
        }
        weight.expect_dtype(OP, DType::F32);
        let (b, l) = weight.buffer_and_layout();
        let (out, _) = expect(OP, index::index_select(&b, &l, 0, &ids, k));
        let mut shape = self.shape();
        shape.push(dim);
        let ids = Tensor::constant(ids, Layout::contiguous(&[k]), DType::U32);
        let dev = weight.device();
        // Multiplies the padding row of the gradient by 0 (built once, here).
        let pad_mask = padding_idx.filter(|&p| (p as usize) < num).map(|p| {
            let mut keep = vec![1.0; num];
            keep[p as usize] = 0.0;
            Tensor::from_vec(&keep, &[num, 1], &dev)
        });
        Tensor::from_op(OP, out, Layout::contiguous(&shape), &[weight], move |g, _, _| {
            let gw = super::index::index_add_to_zeros(&[num, dim], 0, &ids, &g.reshape(&[k, dim]));
            vec![Some(match &pad_mask {
                Some(mask) => &gw * mask,
                None => gw,
            })]
        })
    }
}

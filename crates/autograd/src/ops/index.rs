//! Indexing: index_select, gather, scatter_add, index_add, one_hot. Indices
//! are U32 tensors; out-of-range indices read 0 / are skipped (kernels
//! cannot raise) and the next readback reports them.

use wgrad_gpu_core::ops::{copy, fill, index, index_add};
use wgrad_gpu_core::{Buffer, Layout};

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// Rows (or slices along `dim`) picked by a 1-D U32 `indices` (`torch.index_select`).
    pub fn index_select(&self, dim: isize, indices: &Tensor) -> Tensor {
        let scope = crate::trace::scope();
        let y = self.index_select_untraced(dim, indices);
        scope.output(|| TraceOp::IndexSelect { dim: self.dim_index("index_select", dim) }, &[self, indices], y)
    }

    fn index_select_untraced(&self, dim: isize, indices: &Tensor) -> Tensor {
        indices.expect_dtype("index_select indices", DType::U32);
        assert_eq!(indices.dims(), 1, "index_select: indices must be 1-D, got shape {:?}", indices.shape());
        let d = self.dim_index("index_select", dim);
        let k = indices.numel();
        let idx = indices.dense_buffer();
        if self.dtype() == DType::F16 {
            if d == 0 {
                if let Some(out) = self.select_rows_f16("index_select", &idx, k, None) {
                    return out;
                }
            }
            // Rows that are not whole words: through f32 (exact both ways).
            return self.to_dtype(DType::F32).index_select(dim, indices).to_dtype(DType::F16);
        }
        let (b, l) = self.buffer_and_layout();
        let (out, shape) = expect("index_select", index::index_select(&b, &l, d, &idx, k));
        if self.dtype() != DType::F32 {
            return Tensor::constant(out, Layout::contiguous(&shape), self.dtype());
        }
        let in_shape = self.shape();
        let indices = indices.detach();
        Tensor::from_op("index_select", out, Layout::contiguous(&shape), &[self], move |g, _, _| {
            vec![Some(index_add_to_zeros(&in_shape, d, &indices, g))]
        })
    }

    /// Rows `ids` (a dense U32 buffer of `k` ids) of an F16 tensor whose
    /// rows are whole 32-bit words (dense, even row width, even offset),
    /// gathered as words by the f32 kernel: one launch, no widening, bits
    /// moved unchanged. `None` for other layouts. The gradient adds the f16
    /// output gradient into the selected rows in f32 and rounds once; row
    /// `frozen` (embedding's padding row) gets none.
    pub(crate) fn select_rows_f16(
        &self,
        op: &'static str,
        ids: &Buffer,
        k: usize,
        frozen: Option<usize>,
    ) -> Option<Tensor> {
        let (b, l) = self.buffer_and_layout();
        let shape = l.shape.clone();
        let rows = *shape.first()?;
        let width: usize = shape[1..].iter().product();
        if !l.is_contiguous() || !l.offset.is_multiple_of(2) || !width.is_multiple_of(2) || width == 0 {
            return None;
        }
        let words = Layout { offset: l.offset / 2, ..Layout::contiguous(&[rows, width / 2]) };
        let (out, _) = expect(op, index::index_select(&b, &words, 0, ids, k));
        let mut out_shape = shape.clone();
        out_shape[0] = k;
        let ids = Tensor::constant(ids.clone(), Layout::contiguous(&[k]), DType::U32);
        Some(Tensor::from_op_dtype(op, out, Layout::contiguous(&out_shape), DType::F16, &[self], move |g, _, _| {
            let g = g.to_dtype(DType::F32).reshape(&[k, width]);
            let mut gw = index_add_to_zeros(&[rows, width], 0, &ids, &g);
            if let Some(p) = frozen {
                let mut keep = vec![1.0; rows];
                keep[p] = 0.0;
                gw = &gw * &Tensor::from_vec(&keep, &[rows, 1], &g.device());
            }
            vec![Some(gw.reshape(&shape).to_dtype(DType::F16))]
        }))
    }

    /// `out[i][j] = self[index[i][j]][j]` for dim 0, etc. (`torch.gather`).
    pub fn gather(&self, dim: isize, index_t: &Tensor) -> Tensor {
        let scope = crate::trace::scope();
        index_t.expect_dtype("gather index", DType::U32);
        self.expect_dtype("gather", DType::F32);
        let d = self.dim_index("gather", dim);
        let (b, l) = self.buffer_and_layout();
        let ishape = index_t.shape();
        let out = expect("gather", index::gather(&b, &l, d, &index_t.dense_buffer(), &ishape));
        let in_shape = self.shape();
        let index_t_saved = index_t.detach();
        let y = Tensor::from_op("gather", out, Layout::contiguous(&ishape), &[self], move |g, _, _| {
            vec![Some(Tensor::zeros(&in_shape, &g.device()).scatter_add(d as isize, &index_t_saved, g))]
        });
        scope.output(|| TraceOp::Gather { dim: d }, &[self, index_t], y)
    }

    /// A copy of `self` with `src` added at `index` along `dim` (`Tensor.scatter_add`).
    pub fn scatter_add(&self, dim: isize, index_t: &Tensor, src: &Tensor) -> Tensor {
        let scope = crate::trace::scope();
        index_t.expect_dtype("scatter_add index", DType::U32);
        self.expect_dtype("scatter_add", DType::F32);
        src.expect_dtype("scatter_add", DType::F32);
        assert_eq!(
            index_t.shape(),
            src.shape(),
            "scatter_add: index shape {:?} vs src shape {:?}",
            index_t.shape(),
            src.shape()
        );
        let d = self.dim_index("scatter_add", dim);
        let (b, l) = self.buffer_and_layout();
        let out = expect("scatter_add", copy::contiguous(&b, &l));
        let shape = self.shape();
        let ishape = index_t.shape();
        expect(
            "scatter_add",
            index::scatter_add(&out, &shape, d, &index_t.dense_buffer(), &src.dense_buffer(), &ishape),
        );
        let index_saved = index_t.detach();
        let y = Tensor::from_op("scatter_add", out, Layout::contiguous(&shape), &[self, src], move |g, _, _| {
            vec![Some(g.clone()), Some(g.gather(d as isize, &index_saved))]
        });
        scope.output(|| TraceOp::Opaque("scatter_add"), &[self, index_t, src], y)
    }

    /// A copy of `self` with the slices of `src` along `dim` added at the
    /// 1-D U32 `indices` (`Tensor.index_add`): slice `t` of `src` goes to
    /// slice `indices[t]`, and `src` has `self`'s shape but
    /// `indices.numel()` along `dim`. Repeated indices add in increasing
    /// `t` on every device, so the result is deterministic (unlike
    /// [`scatter_add`](Self::scatter_add) on a GPU). index_select's and
    /// embedding's gradients are this op.
    pub fn index_add(&self, dim: isize, indices: &Tensor, src: &Tensor) -> Tensor {
        const OP: &str = "index_add";
        let scope = crate::trace::scope();
        indices.expect_dtype("index_add indices", DType::U32);
        self.expect_dtype(OP, DType::F32);
        src.expect_dtype(OP, DType::F32);
        assert_eq!(indices.dims(), 1, "{OP}: indices must be 1-D, got shape {:?}", indices.shape());
        let d = self.dim_index(OP, dim);
        let k = indices.numel();
        let shape = self.shape();
        let mut want = shape.clone();
        want[d] = k;
        assert_eq!(src.shape(), want, "{OP}: src shape {:?} must be {want:?} ({k} indices along dim {d})", src.shape());
        let (b, l) = self.buffer_and_layout();
        let y = add_slices(expect(OP, copy::contiguous(&b, &l)), &shape, d, indices, src, Some(self));
        scope.output(|| TraceOp::Opaque(OP), &[self, indices, src], y)
    }

    /// F32 one-hot rows `[n, classes]` of a 1-D U32 tensor (out-of-range rows stay zero).
    pub fn one_hot(&self, classes: usize) -> Tensor {
        let scope = crate::trace::scope();
        self.expect_dtype("one_hot", DType::U32);
        let n = self.numel();
        let out = expect("one_hot", index::one_hot(&self.dense_buffer(), n, classes));
        let mut shape = self.shape();
        shape.push(classes);
        let y = Tensor::constant(out, Layout::contiguous(&shape), DType::F32);
        scope.output(|| TraceOp::Opaque("one_hot"), &[self], y)
    }
}

/// `src`'s slices along `dim` added at `indices` into zeros of `shape`:
/// [`Tensor::index_add`] on a zero tensor without copying it first (the
/// gradient of index_select and of embedding, a table's size each step).
pub(crate) fn index_add_to_zeros(shape: &[usize], dim: usize, indices: &Tensor, src: &Tensor) -> Tensor {
    let zeros = expect("index_add", fill::fill(&src.device(), shape.iter().product(), 0.0));
    add_slices(zeros, shape, dim, indices, src, None)
}

/// `out`, a fresh dense buffer of `shape` (a copy of `base`, or zeros
/// without one), with `src`'s slices added at `indices` along `dim`, as a
/// tensor whose gradient reaches `base` unchanged and `src` gathered back.
fn add_slices(
    out: Buffer,
    shape: &[usize],
    dim: usize,
    indices: &Tensor,
    src: &Tensor,
    base: Option<&Tensor>,
) -> Tensor {
    const OP: &str = "index_add";
    expect(OP, index_add::index_add(&out, shape, dim, &indices.dense_buffer(), indices.numel(), &src.dense_buffer()));
    let indices = indices.detach();
    let gather = move |g: &Tensor| g.index_select(dim as isize, &indices);
    let layout = Layout::contiguous(shape);
    match base {
        Some(base) => {
            Tensor::from_op(OP, out, layout, &[base, src], move |g, _, _| vec![Some(g.clone()), Some(gather(g))])
        }
        None => Tensor::from_op(OP, out, layout, &[src], move |g, _, _| vec![Some(gather(g))]),
    }
}

//! Views and copies that change shape: reshape, permute, narrow, expand,
//! squeeze/unsqueeze, contiguous, concat, stack.

use wgrad_gpu_core::ops::{copy, fill};
use wgrad_gpu_core::{Error, Layout, Result};

use crate::graph::Saves;
use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

impl Tensor {
    /// A view with new layout over the same buffer; backward maps the gradient back with `back`.
    fn view_op(
        &self,
        op: &'static str,
        layout: Layout,
        back: impl Fn(&Tensor) -> Tensor + Send + Sync + 'static,
    ) -> Tensor {
        let (b, _) = self.buffer_and_layout();
        if !self.requires_grad() || !crate::is_grad_enabled() {
            return Tensor::constant_like(self, b, layout);
        }
        Tensor::from_op_saving(op, b, layout, self.dtype(), &[self], Saves::NOTHING, move |g, _, _| vec![Some(back(g))])
    }

    /// Same data in a new shape: a view when the dims it splits or merges
    /// are dense together (PyTorch's `view` rule), a copy otherwise.
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        self.try_reshape(shape).unwrap_or_else(|e| crate::recover::fail(e))
    }

    /// [`reshape`](Self::reshape) returning an error for a wrong element count.
    pub fn try_reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let scope = crate::trace::scope();
        scope.result(|| TraceOp::Reshape, &[self], self.try_reshape_untraced(shape))
    }

    fn try_reshape_untraced(&self, shape: &[usize]) -> Result<Tensor> {
        let from = self.shape();
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return Err(Error::invalid(
                "reshape",
                format!("cannot view shape {from:?} ({} elements) as {shape:?} ({n} elements)", self.numel()),
            ));
        }
        // A view when the dims it splits or merges are dense together (a
        // narrowed projection split into heads), else a copy first.
        let (src, new) = match self.layout().reshape(shape) {
            Ok(view) => (self.clone(), view),
            Err(_) => {
                let dense = self.contiguous();
                let view = dense.layout().reshape(shape)?;
                (dense, view)
            }
        };
        Ok(src.view_op("reshape", new, move |g| g.reshape(&from)))
    }

    /// Alias of [`reshape`](Self::reshape).
    pub fn view(&self, shape: &[usize]) -> Tensor {
        self.reshape(shape)
    }

    /// Flattens dims `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Tensor {
        let s = self.shape();
        if s.is_empty() {
            return self.reshape(&[1]);
        }
        let (a, b) = (self.dim_index("flatten", start), self.dim_index("flatten", end));
        let mut shape = s[..a].to_vec();
        shape.push(s[a..=b].iter().product());
        shape.extend_from_slice(&s[b + 1..]);
        self.reshape(&shape)
    }

    /// Reorders dims: output dim `i` is input dim `dims[i]` (a view).
    pub fn permute(&self, dims: &[usize]) -> Tensor {
        let scope = crate::trace::scope();
        let layout = expect("permute", self.layout().permute(dims));
        let mut inverse = vec![0; dims.len()];
        for (i, &d) in dims.iter().enumerate() {
            inverse[d] = i;
        }
        let out = self.view_op("permute", layout, move |g| g.permute(&inverse));
        scope.output(|| TraceOp::Permute { dims: dims.to_vec() }, &[self], out)
    }

    /// Swaps two dims (a view; negative dims count from the end).
    pub fn transpose(&self, d0: isize, d1: isize) -> Tensor {
        let (a, b) = (self.dim_index("transpose", d0), self.dim_index("transpose", d1));
        let mut dims: Vec<usize> = (0..self.dims()).collect();
        dims.swap(a, b);
        self.permute(&dims)
    }

    /// Transpose of a 2-D tensor.
    pub fn t(&self) -> Tensor {
        assert_eq!(self.dims(), 2, "t: expects a 2-D tensor, got shape {:?}", self.shape());
        self.transpose(0, 1)
    }

    /// `len` elements of `dim` from `start` (a view).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Tensor {
        let scope = crate::trace::scope();
        let d = self.dim_index("narrow", dim);
        let layout = expect("narrow", self.layout().narrow(d, start, len));
        let shape = self.shape();
        let out = self.view_op("narrow", layout, move |g| g.pad_into(&shape, d, start));
        out.mark_narrowed(d, start);
        scope.output(|| TraceOp::Slice { dim: d, start, len, step: 1 }, &[self], out)
    }

    /// Every `step`-th element of `dim` from `start` (Python's `x[start::step]`
    /// along one dim), as a view; its gradient is scattered back into zeros.
    pub fn slice_step(&self, dim: isize, start: usize, step: usize) -> Tensor {
        let scope = crate::trace::scope();
        assert!(step > 0, "slice_step: step must be positive");
        let d = self.dim_index("slice_step", dim);
        let shape = self.shape();
        assert!(start <= shape[d], "slice_step: start {start} beyond dim {d} of shape {shape:?}");
        let mut layout = self.layout();
        layout.offset += start * layout.strides[d];
        layout.shape[d] = (shape[d] - start).div_ceil(step);
        layout.strides[d] *= step;
        let len = layout.shape[d];
        let out = self.view_op("slice_step", layout, move |g| {
            // The copy kernels move f32 words: an f16 gradient is widened
            // (the graph rounds the result back to f16, exactly).
            let g = g.f32_input("slice_step backward");
            let out = expect("slice_step backward", fill::fill(&g.device(), shape.iter().product(), 0.0));
            let mut region = Layout::contiguous(&shape);
            region.offset += start * region.strides[d];
            region.shape[d] = len;
            region.strides[d] *= step;
            let (b, l) = g.buffer_and_layout();
            expect("slice_step backward", copy::copy_into(&b, &l, &out, &region));
            Tensor::from_parts(out, Layout::contiguous(&shape), crate::DType::F32)
        });
        scope.output(|| TraceOp::Slice { dim: d, start, len, step }, &[self], out)
    }

    /// Alias of [`narrow`](Self::narrow) with a range.
    pub fn slice(&self, dim: isize, range: std::ops::Range<usize>) -> Tensor {
        self.narrow(dim, range.start, range.end.saturating_sub(range.start))
    }

    /// Zeros of `shape` with `self` written at `start` along `dim` (narrow's backward).
    pub(crate) fn pad_into(&self, shape: &[usize], dim: usize, start: usize) -> Tensor {
        if self.dtype() == crate::DType::F16 {
            // The copy kernels move f32 words; zeros and f16 values widen exactly.
            return self.f32_input("pad").pad_into(shape, dim, start);
        }
        let (b, l) = self.buffer_and_layout();
        let out = expect("narrow backward", copy::pad(&b, &l, shape, dim, start));
        let full = Layout::contiguous(shape);
        let my_shape = self.shape();
        Tensor::from_op_saving("pad", out, full, DType::F32, &[self], Saves::NOTHING, move |g, _, _| {
            vec![Some(g.narrow(dim as isize, start, my_shape[dim]))]
        })
    }

    /// Broadcasts to `shape` without copying (stride-0 dims).
    pub fn expand(&self, shape: &[usize]) -> Tensor {
        let scope = crate::trace::scope();
        let layout = expect("expand", self.layout().broadcast_to(shape));
        let from = self.shape();
        scope.output(|| TraceOp::Expand, &[self], self.view_op("expand", layout, move |g| g.sum_to_shape(&from)))
    }

    /// Inserts a size-1 dim at `dim` (0..=rank; negative counts from the end).
    pub fn unsqueeze(&self, dim: isize) -> Tensor {
        let r = self.dims() as isize;
        let d = if dim < 0 { dim + r + 1 } else { dim };
        assert!((0..=r).contains(&d), "unsqueeze: dim {dim} out of range for shape {:?}", self.shape());
        let mut s = self.shape();
        s.insert(d as usize, 1);
        self.reshape(&s)
    }

    /// Removes dim `dim` if its size is 1.
    pub fn squeeze(&self, dim: isize) -> Tensor {
        let d = self.dim_index("squeeze", dim);
        let mut s = self.shape();
        if s[d] != 1 {
            return self.clone();
        }
        s.remove(d);
        self.reshape(&s)
    }

    /// Dense row-major data (a copy unless already contiguous).
    pub fn contiguous(&self) -> Tensor {
        let scope = crate::trace::scope();
        scope.output(|| TraceOp::Identity, &[self], self.contiguous_untraced())
    }

    fn contiguous_untraced(&self) -> Tensor {
        let l = self.layout();
        if l.is_contiguous() {
            return self.clone();
        }
        let out = self.dense_buffer();
        if self.dtype() == crate::DType::U32 {
            return Tensor::constant(out, Layout::contiguous(&l.shape), self.dtype());
        }
        let layout = Layout::contiguous(&l.shape);
        Tensor::from_op_saving("contiguous", out, layout, self.dtype(), &[self], Saves::NOTHING, |g, _, _| {
            vec![Some(g.clone())]
        })
    }

    /// Joins tensors along `dim`; shapes must agree elsewhere. F16 and F32
    /// parts together give F32 (PyTorch's promotion); F16 parts alone give
    /// F16.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Tensor {
        let scope = crate::trace::scope();
        let out = Tensor::cat_untraced(tensors, dim);
        scope.output(|| TraceOp::Concat { dim: tensors[0].dim_index("cat", dim), stack: false }, tensors, out)
    }

    fn cat_untraced(tensors: &[&Tensor], dim: isize) -> Tensor {
        use crate::DType;
        assert!(!tensors.is_empty(), "cat: needs at least one tensor");
        let dtype = tensors[0].dtype();
        if tensors.iter().any(|t| t.dtype() != dtype) {
            let wide: Vec<Tensor> = tensors.iter().map(|t| t.f32_input("cat")).collect();
            return Tensor::cat(&wide.iter().collect::<Vec<_>>(), dim);
        }
        let d = tensors[0].dim_index("cat", dim);
        let parts: Vec<_> = tensors.iter().map(|t| t.f32_words()).collect();
        let refs: Vec<_> = parts.iter().map(|(b, l)| (b, l)).collect();
        let (out, shape) = expect("cat", copy::concat(&refs, d));
        let out = match dtype {
            DType::F16 => expect("cat", wgrad_gpu_core::ops::cast::f32_to_f16(&out, shape.iter().product())),
            _ => out,
        };
        let sizes: Vec<usize> = tensors.iter().map(|t| t.shape()[d]).collect();
        if dtype == DType::U32 {
            return Tensor::constant(out, Layout::contiguous(&shape), dtype);
        }
        let layout = Layout::contiguous(&shape);
        Tensor::from_op_saving("cat", out, layout, dtype, tensors, Saves::NOTHING, move |g, _, _| {
            g.split_sizes(&sizes, d as isize).into_iter().map(Some).collect()
        })
    }

    /// Joins same-shaped tensors along a new dim.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Tensor {
        let scope = crate::trace::scope();
        assert!(!tensors.is_empty(), "stack: needs at least one tensor");
        let shape = tensors[0].shape();
        for t in tensors {
            assert_eq!(t.shape(), shape, "stack: shapes {:?} and {:?} differ", shape, t.shape());
        }
        let expanded: Vec<Tensor> = tensors.iter().map(|t| t.unsqueeze(dim)).collect();
        let refs: Vec<&Tensor> = expanded.iter().collect();
        let d = if dim < 0 { dim + shape.len() as isize + 1 } else { dim };
        let out = Tensor::cat(&refs, d);
        scope.output(|| TraceOp::Concat { dim: d as usize, stack: true }, tensors, out)
    }
}

impl Tensor {
    /// A non-differentiable tensor sharing `like`'s dtype.
    pub(crate) fn constant_like(like: &Tensor, buffer: wgrad_gpu_core::Buffer, layout: Layout) -> Tensor {
        Tensor::constant(buffer, layout, like.dtype())
    }
}

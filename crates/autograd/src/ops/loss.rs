//! Classification losses with PyTorch's options: fused softmax cross-entropy
//! (one gpu-core kernel each way) and the negative log-likelihood.
//!
//! Both accept inputs `[N, C]`, `[N, C, d1, ...]` (the class dim is moved
//! last, as a view) or a single sample `[C]`, and reduce like PyTorch:
//! `'mean'` divides the summed loss by the summed weight of the samples that
//! count (their count without class weights; ignored samples weigh 0).

use wgrad_gpu_core::ops::index::class_targets;
use wgrad_gpu_core::ops::softmax::{self, CeArgs, CeTarget};
use wgrad_gpu_core::{Buffer, Layout};

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

/// How per-sample losses are combined (PyTorch's `reduction`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// `'mean'`: the (weighted) average, a 0-d tensor.
    #[default]
    Mean,
    /// `'sum'`: the total, a 0-d tensor.
    Sum,
    /// `'none'`: one loss per sample, shaped like the batch (`[N, d1, ...]`).
    None,
}

/// The options of [`Tensor::cross_entropy`], PyTorch's defaults by `Default`.
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyOptions {
    /// Class weights `[C]` (F32, no gradient), as PyTorch's `weight`.
    pub weight: Option<Tensor>,
    /// Samples whose class target equals this contribute nothing and do not
    /// count in the mean (class targets only). PyTorch's default `-100`
    /// cannot occur among u32 targets, hence `None`.
    pub ignore_index: Option<u32>,
    /// Label smoothing in `[0, 1]`: the target becomes `(1 − e)·target + e / C`.
    pub label_smoothing: f32,
    /// How to combine the per-sample losses.
    pub reduction: Reduction,
}

impl Tensor {
    /// The input as `[M, C]` rows with the class dim last, plus the batch
    /// shape (`[N, d1, ...]`, or `[]` for a single sample `[C]`) and `C`.
    fn classes_last(&self, op: &str) -> (Tensor, Vec<usize>, usize) {
        let shape = self.shape();
        assert!(!shape.is_empty(), "{op}: input needs a class dim, got a 0-d tensor");
        if shape.len() == 1 {
            return (self.reshape(&[1, shape[0]]), vec![], shape[0]);
        }
        let c = shape[1];
        let mut batch = shape.clone();
        batch.remove(1);
        let moved = if shape.len() == 2 {
            self.clone()
        } else {
            let mut perm: Vec<usize> = (0..shape.len()).filter(|&d| d != 1).collect();
            perm.push(1);
            self.permute(&perm)
        };
        (moved.reshape(&[batch.iter().product(), c]), batch.to_vec(), c)
    }

    /// Softmax cross-entropy of logits `self` (`[N, C]`, `[N, C, d1, ...]` or
    /// `[C]`) against `target`: U32 class indices shaped like the batch
    /// (`[N, d1, ...]`, or `[]` for `[C]`), or F32 class probabilities shaped
    /// like `self`. Follows `torch.nn.functional.cross_entropy` exactly,
    /// including how class weights enter the label-smoothing term and the
    /// `'mean'` divisor (see gpu-core's `ops::softmax`).
    ///
    /// Fused: one kernel computes the loss and saves the softmax, one computes
    /// the gradient. Only the logits get a gradient (not the target or the
    /// weights). A class target ≥ C that is not `ignore_index` (an error in
    /// PyTorch; kernels cannot raise) makes the loss NaN.
    ///
    /// # Panics
    /// On shape, dtype or device mismatches, `ignore_index` with probability
    /// targets, or label smoothing outside `[0, 1]`.
    pub fn cross_entropy(&self, target: &Tensor, opts: &CrossEntropyOptions) -> Tensor {
        const OP: &str = "cross_entropy";
        let scope = crate::trace::scope();
        // F16 logits are read as f16 (no widened copy); the loss is F32 and
        // the logits' gradient (f32 math) is rounded to F16.
        let (dtype, io) = (self.dtype(), self.float_storage(OP));
        self.expect_same_device(OP, target);
        let (x, batch, c) = self.classes_last(OP);
        let m = x.shape()[0];
        let is_probs = match target.dtype() {
            DType::U32 => {
                assert_eq!(
                    target.shape(),
                    batch,
                    "{OP}: class target shape {:?} must be the batch shape {batch:?} of input {:?}",
                    target.shape(),
                    self.shape()
                );
                false
            }
            DType::F32 => {
                assert_eq!(
                    target.shape(),
                    self.shape(),
                    "{OP}: probability target shape {:?} must equal the input shape",
                    target.shape()
                );
                assert!(
                    opts.ignore_index.is_none(),
                    "{OP}: ignore_index is not supported with probability targets (as in PyTorch)"
                );
                true
            }
            DType::F16 => panic!("{OP}: targets must be U32 classes or F32 probabilities, got F16"),
        };
        let target_buf =
            if is_probs { target.detach().classes_last(OP).0.dense_buffer() } else { target.dense_buffer() };
        let weight_buf = opts.weight.as_ref().map(|w| {
            w.expect_dtype(OP, DType::F32);
            self.expect_same_device(OP, w);
            assert_eq!(w.shape(), [c], "{OP}: class weights of shape {:?} for {c} classes", w.shape());
            w.dense_buffer()
        });
        let saved = CeSaved {
            rows: m,
            cols: c,
            target: target_buf,
            is_probs,
            weight: weight_buf,
            ignore_index: opts.ignore_index,
            label_smoothing: opts.label_smoothing,
        };
        let (loss, weight, probs) = expect(OP, softmax::cross_entropy_rows_io(&x.dense_buffer(), io, &saved.args()));
        let loss = Tensor::from_op(OP, loss, Layout::contiguous(&[m]), &[&x], move |g, _, _| {
            let dx = softmax::cross_entropy_rows_backward(&probs, &saved.args(), &g.dense_buffer());
            let dx = Tensor::from_parts(expect("cross_entropy backward", dx), Layout::contiguous(&[m, c]), DType::F32);
            vec![Some(dx.to_dtype(dtype))]
        });
        let weight = Tensor::constant(weight, Layout::contiguous(&[m]), DType::F32);
        let y = reduce_weighted(&loss, &weight, &batch, opts.reduction);
        scope.output_opt(|| TraceOp::Opaque(OP), &[Some(self), Some(target), opts.weight.as_ref()], y)
    }

    /// Negative log-likelihood of log-probabilities `self` (`[N, C]`,
    /// `[N, C, d1, ...]` or `[C]`) at U32 class targets shaped like the batch:
    /// `loss = −w[t]·self[t]` per sample, 0 where `t == ignore_index`
    /// (`torch.nn.functional.nll_loss`; `'mean'` divides by the summed `w[t]`
    /// of the samples that count). Composed of gather, index_select and where;
    /// only `self` gets a gradient. A target ≥ C that is not ignored is an
    /// index error, as in PyTorch: on the CPU backend a panic here, on a GPU
    /// at the next readback (`item`, `to_vec`), naming `nll_loss`.
    ///
    /// # Panics
    /// On shape, dtype or device mismatches.
    pub fn nll_loss(
        &self,
        target: &Tensor,
        weight: Option<&Tensor>,
        ignore_index: Option<u32>,
        reduction: Reduction,
    ) -> Tensor {
        let scope = crate::trace::scope();
        let y = self.nll_loss_untraced(target, weight, ignore_index, reduction);
        scope.output_opt(|| TraceOp::Opaque("nll_loss"), &[Some(self), Some(target), weight], y)
    }

    fn nll_loss_untraced(
        &self,
        target: &Tensor,
        weight: Option<&Tensor>,
        ignore_index: Option<u32>,
        reduction: Reduction,
    ) -> Tensor {
        const OP: &str = "nll_loss";
        if self.dtype() == DType::F16 {
            return self.f32_input(OP).nll_loss(target, weight, ignore_index, reduction);
        }
        self.expect_dtype(OP, DType::F32);
        target.expect_dtype(OP, DType::U32);
        self.expect_same_device(OP, target);
        let (x, batch, c) = self.classes_last(OP);
        assert_eq!(
            target.shape(),
            batch,
            "{OP}: target shape {:?} must be the batch shape {batch:?} of input {:?}",
            target.shape(),
            self.shape()
        );
        let dev = self.device();
        let m = x.shape()[0];
        // 1 for the classes that count, 0 for the ignored one.
        let mut keep = vec![1.0; c];
        if let Some(i) = ignore_index.filter(|&i| (i as usize) < c) {
            keep[i as usize] = 0.0;
        }
        let keep = Tensor::from_vec(&keep, &[c], &dev);
        let class_w = match weight {
            Some(w) => {
                w.expect_dtype(OP, DType::F32);
                self.expect_same_device(OP, w);
                assert_eq!(w.shape(), [c], "{OP}: class weights of shape {:?} for {c} classes", w.shape());
                &w.detach() * &keep
            }
            None => keep.clone(),
        };
        // Targets safe to look up (an ignored -100 becomes 0) and whether each
        // row counts; a target ≥ C that is not ignored is an index error.
        let (safe, counts) = expect(OP, class_targets(&target.dense_buffer(), m, c, ignore_index));
        let t = Tensor::constant(safe, Layout::contiguous(&[m]), DType::U32);
        let counts = Tensor::constant(counts, Layout::contiguous(&[m]), DType::F32);
        let w_rows = &class_w.index_select(0, &t) * &counts;
        let picked = x.gather(1, &t.reshape(&[m, 1])).reshape(&[m]);
        // `where` rather than a product, so an ignored −inf log-probability cannot make a NaN.
        let loss = Tensor::where_cond(&counts, &-(&picked * &w_rows), &Tensor::zeros(&[], &dev));
        reduce_weighted(&loss, &w_rows, &batch, reduction)
    }
}

/// What the cross-entropy backward keeps of its forward's arguments.
struct CeSaved {
    rows: usize,
    cols: usize,
    target: Buffer,
    is_probs: bool,
    weight: Option<Buffer>,
    ignore_index: Option<u32>,
    label_smoothing: f32,
}

impl CeSaved {
    fn args(&self) -> CeArgs<'_> {
        CeArgs {
            rows: self.rows,
            cols: self.cols,
            target: if self.is_probs { CeTarget::Probs(&self.target) } else { CeTarget::Classes(&self.target) },
            weight: self.weight.as_ref(),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
        }
    }
}

/// PyTorch's reductions of per-sample losses `[M]` with their weights `[M]`.
fn reduce_weighted(loss: &Tensor, weight: &Tensor, batch: &[usize], reduction: Reduction) -> Tensor {
    match reduction {
        Reduction::Mean => loss.sum_all() / weight.sum_all(),
        Reduction::Sum => loss.sum_all(),
        Reduction::None => loss.reshape(batch),
    }
}

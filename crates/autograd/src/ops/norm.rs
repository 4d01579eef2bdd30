//! Layer, group, instance and batch normalisation, like
//! `torch.nn.functional`'s layer_norm, group_norm and batch_norm.
//!
//! Layer, group and instance norm arrange the tensor so that each set of
//! values sharing a mean and variance is one contiguous row and run gpu-core's
//! `normalize_rows` pair (biased variance; one fused backward pass). Batch
//! norm runs gpu-core's `batch_norm` kernels straight on `[N, C, *]` data:
//! statistics and running update in two launches, one forward (normalise
//! and affine; on a GPU the fuser merges a residual add and a ReLU that
//! read it into its launch), and a backward of three launches whose
//! per-channel sums are the weight and bias gradients. Layer norm with a weight applies it
//! (and its bias) in the normalisation's own launch, and its backward
//! scales the output gradient inside the row backward; group norm's affine
//! (per channel, not per column) is batch norm's kernel on already
//! normalised input. Either way the weight and bias gradients are parallel
//! two-level column sums.

use wgrad_gpu_core::ops::batch_norm::{self as bn, Centre, ChannelDims, Running};
use wgrad_gpu_core::ops::norm;
use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::{Buffer, Layout};

use crate::graph::Saves;
use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{no_grad, DType, Tensor};

impl Tensor {
    /// Normalises `self` seen as `rows × cols` (copied dense if it is not):
    /// returns `y` (shape `[rows, cols]`, differentiable) and the per-row mean
    /// and rstd (`[rows]`, constants).
    fn normalize_rows_op(&self, op: &'static str, rows: usize, cols: usize, eps: f32) -> (Tensor, Tensor, Tensor) {
        // An F16 input is read as f16 (no widened copy); y, mean and rstd
        // are F32, and the input's gradient (f32 math) is rounded to F16.
        let (dtype, io) = (self.dtype(), self.float_storage(op));
        let x = self.reshape(&[rows, cols]);
        let (y, mean, rstd) = expect(op, norm::normalize_rows_io(&x.dense_buffer(), io, rows, cols, eps));
        let saved_rstd = rstd.clone();
        let y = Tensor::from_op(op, y, Layout::contiguous(&[rows, cols]), &[&x], move |g, _, out| {
            let dx = norm::normalize_rows_backward(&g.dense_buffer(), &out.dense_buffer(), &saved_rstd, rows, cols);
            let dx = Tensor::from_parts(expect(op, dx), Layout::contiguous(&[rows, cols]), DType::F32);
            vec![Some(dx.to_dtype(dtype))]
        });
        let stat = |b| Tensor::constant(b, Layout::contiguous(&[rows]), DType::F32);
        (y, stat(mean), stat(rstd))
    }

    /// `xhat · weight + bias` per channel of `self` (whose
    /// dense data is `x`) seen as `d` (`[A, C, B]`), one launch, where
    /// xhat is `self` normalised with `stats` (`[mean; rstd]`, constants) or
    /// `self` itself when `stats` is `None`. `training` picks the backward formula in which the
    /// statistics depend on `self` (batch norm in training); otherwise the
    /// input gradient is `weight · rstd · dy'`. Weight and bias gradients are
    /// the per-channel sums of dy and dy·xhat, two launches.
    ///
    /// `self` may be F16 (batch norm under mixed precision): the output and
    /// the input gradient are then F16 too, computed in f32 from the widened values
    /// and rounded; weight, bias, statistics and their gradients stay F32.
    #[allow(clippy::too_many_arguments)]
    fn channel_affine(
        &self,
        op: &'static str,
        x: Buffer,
        d: ChannelDims,
        stats: Option<Buffer>,
        training: bool,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
    ) -> Tensor {
        let shape = self.shape();
        let dtype = self.dtype();
        let io = self.float_storage(op);
        let wb = weight.map(|w| w.dense_buffer());
        let bb = bias.map(|b| b.dense_buffer());
        let centre = stats.as_ref().map_or(Centre::Normalized, Centre::Stats);
        let y = expect(op, bn::batch_norm_forward(&x, d, centre, wb.as_ref(), bb.as_ref(), None, false, io));

        // Input slots: x, then weight and bias where given.
        let present = [weight, bias];
        let mut index = [None; 2];
        let mut inputs = vec![self];
        for (k, t) in present.iter().enumerate() {
            if let Some(t) = t {
                index[k] = Some(inputs.len());
                inputs.push(t);
            }
        }
        let [wi, bi] = index;
        let n_in = inputs.len();
        let layout = Layout::contiguous(&shape);
        let grad_shape = shape.clone();
        // The rule reads x and the weight through the buffers it captured,
        // not the output: held by nothing else, it is free for the fuser to
        // merge its readers into its launch (`relu(bn(x) + r)` is one).
        Tensor::from_op_saving(op, y, layout, dtype, &inputs, Saves::NOTHING, move |g, inputs, _| {
            let wants = |i: Option<usize>| i.is_some_and(|i| inputs[i].requires_grad());
            let dy = g.to_dtype(dtype).dense_buffer();
            let centre = stats.as_ref().map_or(Centre::Normalized, Centre::Stats);
            let mut grads: Vec<Option<Tensor>> = vec![None; n_in];
            let sums = (training || wants(wi) || wants(bi))
                .then(|| expect(op, bn::batch_norm_grad_sums(&dy, &x, None, d, centre, io)));
            if let Some((db, dw)) = &sums {
                let param = |b: &Buffer| Tensor::from_parts(b.clone(), Layout::contiguous(&[d.channels]), DType::F32);
                if let Some(i) = bi {
                    grads[i] = Some(param(db));
                }
                if let Some(i) = wi {
                    grads[i] = Some(param(dw));
                }
            }
            if inputs[0].requires_grad() {
                let training_sums = sums.as_ref().filter(|_| training).map(|(a, b)| (a, b));
                let (dx, _) = expect(
                    op,
                    bn::batch_norm_backward(&dy, &x, None, d, centre, wb.as_ref(), training_sums, false, io),
                );
                grads[0] = Some(Tensor::from_parts(dx, Layout::contiguous(&grad_shape), dtype));
            }
            grads
        })
    }

    /// A norm's weight and bias (each optional), checked to be F32 of shape
    /// `want` on `self`'s device, flattened.
    ///
    /// # Panics
    /// Naming `op`, for another shape, dtype or device.
    fn affine_params(
        &self,
        op: &str,
        (weight, bias): (Option<&Tensor>, Option<&Tensor>),
        want: &[usize],
    ) -> (Option<Tensor>, Option<Tensor>) {
        let prepare = |t: &Tensor, what: &str| {
            assert_eq!(t.shape(), want, "{op}: {what} has shape {:?}, expected {want:?}", t.shape());
            self.expect_same_device(op, t);
            t.expect_dtype(op, DType::F32);
            t.reshape(&[want.iter().product()])
        };
        (weight.map(|w| prepare(w, "weight")), bias.map(|b| prepare(b, "bias")))
    }

    /// `self · weight + bias` on normalised `[A, C, B]` data, each optional
    /// (the affine part of layer and group norm), reshaped back to `self`'s shape.
    fn norm_affine(
        &self,
        op: &'static str,
        d: ChannelDims,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        want: &[usize],
    ) -> Tensor {
        if weight.is_none() && bias.is_none() {
            return self.clone();
        }
        let (w, b) = self.affine_params(op, (weight, bias), want);
        let y = self.channel_affine(op, self.dense_buffer(), d, None, false, w.as_ref(), b.as_ref());
        y.reshape(&self.shape())
    }

    /// Layer normalisation over the trailing dims `normalized_shape`
    /// (`F.layer_norm`): each slice is normalised with its mean and biased
    /// variance, then scaled by `weight` and shifted by `bias` (both shaped
    /// `normalized_shape`). PyTorch's default eps is 1e-5.
    ///
    /// # Panics
    /// When `normalized_shape` is empty or is not the tail of the shape, or
    /// weight/bias have another shape.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Tensor {
        let scope = crate::trace::scope();
        let y = self.layer_norm_untraced(normalized_shape, weight, bias, eps);
        let op = || TraceOp::LayerNorm { normalized_shape: normalized_shape.to_vec(), eps };
        scope.output_opt(op, &[Some(self), weight, bias], y)
    }

    fn layer_norm_untraced(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Tensor {
        const OP: &str = "layer_norm";
        let shape = self.shape();
        assert!(
            !normalized_shape.is_empty() && normalized_shape.len() <= shape.len() && shape.ends_with(normalized_shape),
            "{OP}: normalized_shape {normalized_shape:?} must be a non-empty tail of the input shape {shape:?}"
        );
        let cols: usize = normalized_shape.iter().product();
        let rows: usize = shape[..shape.len() - normalized_shape.len()].iter().product();
        if let Some(w) = weight {
            return self.layer_norm_affine((rows, cols), normalized_shape, w, bias, eps).reshape(&shape);
        }
        let (y, _, _) = self.normalize_rows_op(OP, rows, cols, eps);
        let d = ChannelDims { outer: rows, channels: cols, inner: 1 };
        y.norm_affine(OP, d, weight, bias, normalized_shape).reshape(&shape)
    }

    /// Layer norm with a weight (and maybe a bias) in the normalisation's own
    /// launches (gpu-core's `normalize_rows_affine_io`): one launch forward;
    /// backward, the input gradient in one (the row backward of `dz · w`)
    /// and the weight and bias gradients as per-column sums of `dz · y` and
    /// `dz` (two launches, batch norm's parallel sums), where the two-op form
    /// takes two and four. `y`, the normalised input, is kept for them.
    fn layer_norm_affine(
        &self,
        (rows, cols): (usize, usize),
        normalized_shape: &[usize],
        weight: &Tensor,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Tensor {
        const OP: &str = "layer_norm";
        let (w, b) = self.affine_params(OP, (Some(weight), bias), normalized_shape);
        let w = w.expect("a weight");
        let (dtype, io) = (self.dtype(), self.float_storage(OP));
        let x = self.reshape(&[rows, cols]);
        let wb = w.dense_buffer();
        let bb = b.as_ref().map(Tensor::dense_buffer);
        let (y, z, _, rstd) =
            expect(OP, norm::normalize_rows_affine_io(&x.dense_buffer(), io, (rows, cols, eps), &wb, bb.as_ref()));
        let inputs: Vec<&Tensor> = [Some(&x), Some(&w), b.as_ref()].into_iter().flatten().collect();
        Tensor::from_op(OP, z, Layout::contiguous(&[rows, cols]), &inputs, move |g, inputs, _| {
            let dz = g.dense_buffer();
            let mut grads: Vec<Option<Tensor>> = vec![None; inputs.len()];
            if inputs[0].requires_grad() {
                let dx = expect(OP, norm::normalize_rows_affine_backward(&dz, &y, &rstd, &wb, (rows, cols)));
                grads[0] = Some(Tensor::from_parts(dx, Layout::contiguous(&[rows, cols]), DType::F32).to_dtype(dtype));
            }
            if inputs[1..].iter().any(Tensor::requires_grad) {
                let d = ChannelDims { outer: rows, channels: cols, inner: 1 };
                let (db, dw) =
                    expect(OP, bn::batch_norm_grad_sums(&dz, &y, None, d, Centre::Normalized, Operands::F32));
                let param = |b: Buffer| Tensor::from_parts(b, Layout::contiguous(&[cols]), DType::F32);
                for (i, sums) in [(1, dw), (2, db)] {
                    if inputs.get(i).is_some_and(Tensor::requires_grad) {
                        grads[i] = Some(param(sums));
                    }
                }
            }
            grads
        })
    }

    /// Root-mean-square normalisation over the trailing dims
    /// `normalized_shape` (`F.rms_norm`, the norm of LLaMA-style models):
    /// `x / sqrt(mean(x²) + eps) · weight`, no centring and no bias.
    /// PyTorch's default eps (`None`) is f32's machine epsilon,
    /// `f32::EPSILON`. Composed of elementwise ops and a mean, which the
    /// fuser merges on a GPU; gradients come from their rules.
    ///
    /// # Panics
    /// When `normalized_shape` is empty or is not the tail of the shape, or
    /// `weight` has another shape.
    pub fn rms_norm(&self, normalized_shape: &[usize], weight: Option<&Tensor>, eps: f32) -> Tensor {
        const OP: &str = "rms_norm";
        let scope = crate::trace::scope();
        let shape = self.shape();
        assert!(
            !normalized_shape.is_empty() && normalized_shape.len() <= shape.len() && shape.ends_with(normalized_shape),
            "{OP}: normalized_shape {normalized_shape:?} must be a non-empty tail of the input shape {shape:?}"
        );
        let axes: Vec<isize> = (shape.len() - normalized_shape.len()..shape.len()).map(|a| a as isize).collect();
        let y = self * &self.square().mean(&axes, true).add_scalar(eps).rsqrt();
        let y = match weight {
            Some(w) => {
                assert_eq!(w.shape(), normalized_shape, "{OP}: weight shape must be normalized_shape");
                &y * w
            }
            None => y,
        };
        let op = || TraceOp::RmsNorm { normalized_shape: normalized_shape.to_vec(), eps };
        scope.output_opt(op, &[Some(self), weight], y)
    }

    /// Group normalisation of `[N, C, *]` input (`F.group_norm`): the
    /// channels are split into `groups` groups of C/groups, each (sample,
    /// group) normalised over its channels and positions; then `weight` and
    /// `bias` (shape `[C]`) scale and shift per channel. `groups = C` is
    /// instance normalisation. PyTorch's default eps is 1e-5.
    ///
    /// # Panics
    /// For input of rank below 2, `groups` not dividing C, or weight/bias not `[C]`.
    pub fn group_norm(&self, groups: usize, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32) -> Tensor {
        const OP: &str = "group_norm";
        let scope = crate::trace::scope();
        let shape = self.shape();
        assert!(shape.len() >= 2, "{OP}: expects [N, C, *] input, got shape {shape:?}");
        let c = shape[1];
        assert!(
            groups > 0 && c.is_multiple_of(groups),
            "{OP}: {groups} groups do not divide the {c} channels of shape {shape:?}"
        );
        let rows = shape[0] * groups;
        let cols = c / groups * shape[2..].iter().product::<usize>();
        let (y, _, _) = self.normalize_rows_op(OP, rows, cols, eps);
        let y = y.reshape(&shape).norm_affine(OP, ChannelDims::of_shape(&shape), weight, bias, &[c]);
        scope.output_opt(|| TraceOp::GroupNorm { groups, eps }, &[Some(self), weight, bias], y)
    }

    /// Batch normalisation of `[N, C]` or `[N, C, *]` input, like
    /// `F.batch_norm`: per channel, over the batch and all positions.
    ///
    /// With `training`, the batch mean and biased variance normalise the
    /// input, and the running statistics given are updated
    /// (`running = (1 − momentum)·running + momentum·batch_stat`, PyTorch's
    /// default momentum is 0.1) with the *unbiased* batch variance for
    /// `running_var`, as PyTorch does. Without `training`, `running_mean`
    /// and `running_var` normalise: a plain per-channel affine of the input,
    /// through which the gradient flows; the running statistics are treated
    /// as constants. `weight` and `bias` (shape `[C]`) then scale and shift.
    /// PyTorch's default eps is 1e-5. An empty batch gives an empty output
    /// and leaves the running statistics alone, as PyTorch.
    ///
    /// The input may be F16 (mixed precision, like cuDNN's batch norm under
    /// PyTorch's AMP): the kernels read it as f16 and compute statistics and
    /// everything else in f32; the output is F16 (rounded to nearest even),
    /// the input gradient F16, while the running statistics, weight and bias
    /// (and their gradients) stay F32.
    ///
    /// # Panics
    /// For input of rank below 2; statistics, weight or bias not shaped
    /// `[C]`; evaluation without running statistics; training with one value
    /// per channel.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Tensor {
        let scope = crate::trace::scope();
        // The op itself, as a closure: its early returns (other dtypes,
        // autocast) come back here, to the trace record below.
        let y = (|| -> Tensor {
            const OP: &str = "batch_norm";
            let dtype = self.dtype();
            assert!(
                matches!(dtype, DType::F32 | DType::F16),
                "{OP}: expects F32 or F16 input, got {dtype:?} (use .to_dtype(DType::F32))"
            );
            let shape = self.shape();
            assert!(shape.len() >= 2, "{OP}: expects [N, C] or [N, C, *] input, got shape {shape:?}");
            let d = ChannelDims::of_shape(&shape);
            let c = d.channels;
            for (t, what) in
                [(running_mean, "running_mean"), (running_var, "running_var"), (weight, "weight"), (bias, "bias")]
            {
                if let Some(t) = t {
                    assert_eq!(t.shape(), [c], "{OP}: {what} has shape {:?}, expected [{c}]", t.shape());
                    self.expect_same_device(OP, t);
                    t.expect_dtype(OP, DType::F32);
                }
            }
            let io = self.float_storage(OP);
            let x = self.dense_buffer();
            let stats = if training {
                if d.count() == 0 {
                    return self.batch_norm_empty(weight, bias);
                }
                assert!(
                    d.count() > 1,
                    "{OP}: expected more than 1 value per channel when training, got input shape {shape:?}"
                );
                // Both running statistics are updated by one launch, in place
                // (their buffers stay the same from step to step, as a replayed
                // step needs); a missing one gets a stand-in, and one that is a
                // strided view is updated through a dense copy put back after.
                let stand_in = || Tensor::zeros(&[c], &self.device());
                let rm = running_mean.cloned().or_else(|| running_var.map(|_| stand_in()));
                let rv = running_var.cloned().or_else(|| running_mean.map(|_| stand_in()));
                let bufs = rm.as_ref().zip(rv.as_ref()).map(|(m, v)| (m.dense_buffer(), v.dense_buffer()));
                let running = bufs.as_ref().map(|(m, v)| Running { mean: m, var: v, momentum });
                let stats = expect(OP, bn::batch_norm_stats(&x, d, eps, running, io));
                if let Some((m, v)) = bufs {
                    let put_back = |t: &Tensor, b: Buffer| {
                        if !t.buffer_and_layout().0.same_as(&b) {
                            no_grad(|| t.assign(&Tensor::constant(b, Layout::contiguous(&[c]), DType::F32)));
                        }
                    };
                    running_mean.inspect(|t| put_back(t, m));
                    running_var.inspect(|t| put_back(t, v));
                }
                stats
            } else {
                let (Some(rm), Some(rv)) = (running_mean, running_var) else {
                    panic!("{OP}: evaluation (training = false) needs running_mean and running_var");
                };
                expect(OP, bn::batch_norm_eval_stats(&rm.dense_buffer(), &rv.dense_buffer(), c, eps))
            };
            self.channel_affine(OP, x, d, Some(stats), training, weight, bias)
        })();
        let inputs = [Some(self), running_mean, running_var, weight, bias];
        scope.output_opt(|| TraceOp::BatchNorm { training, momentum, eps }, &inputs, y)
    }

    /// Training batch norm of an empty batch: an empty output, still
    /// connected to weight and bias (their gradients are zeros). F16 input
    /// goes through F32 and back.
    fn batch_norm_empty(&self, weight: Option<&Tensor>, bias: Option<&Tensor>) -> Tensor {
        if self.dtype() == DType::F16 {
            return self.to_dtype(DType::F32).batch_norm_empty(weight, bias).to_dtype(DType::F16);
        }
        let view = channel_view(&self.shape());
        let mut y = self.clone();
        if let Some(w) = weight {
            y = &y * &w.reshape(&view);
        }
        if let Some(b) = bias {
            y = &y + &b.reshape(&view);
        }
        y
    }
}

/// The shape `[C, 1, ...]` that lines a per-channel `[C]` tensor up with dim 1
/// of an `[N, C, *]` input under broadcasting.
fn channel_view(shape: &[usize]) -> Vec<usize> {
    let mut v = vec![1; shape.len() - 1];
    v[0] = shape[1];
    v
}

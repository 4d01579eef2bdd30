//! Layer, group, instance and batch normalisation, like
//! `torch.nn.functional`'s layer_norm, group_norm and batch_norm.
//!
//! All of them run one fused kernel pair, gpu-core's `normalize_rows`: the
//! tensor is arranged so that each set of values sharing a mean and variance
//! is one contiguous row, normalised with the biased variance, and the
//! backward is one fused pass too. The affine weight and bias are ordinary
//! broadcasting ops, so their gradients come from the graph.

use wgrad_gpu_core::ops::norm;
use wgrad_gpu_core::Layout;

use crate::tensor::expect;
use crate::{no_grad, DType, Tensor};

impl Tensor {
    /// Normalises `self` seen as `rows × cols` (copied dense if it is not):
    /// returns `y` (shape `[rows, cols]`, differentiable) and the per-row mean
    /// and rstd (`[rows]`, constants).
    fn normalize_rows_op(&self, op: &'static str, rows: usize, cols: usize, eps: f32) -> (Tensor, Tensor, Tensor) {
        self.expect_dtype(op, DType::F32);
        let x = self.reshape(&[rows, cols]);
        let (y, mean, rstd) = expect(op, norm::normalize_rows(&x.dense_buffer(), rows, cols, eps));
        let saved_rstd = rstd.clone();
        let y = Tensor::from_op(op, y, Layout::contiguous(&[rows, cols]), &[&x], move |g, _, out| {
            let dx = norm::normalize_rows_backward(&g.dense_buffer(), &out.dense_buffer(), &saved_rstd, rows, cols);
            vec![Some(Tensor::from_parts(expect(op, dx), Layout::contiguous(&[rows, cols]), DType::F32))]
        });
        let stat = |b| Tensor::constant(b, Layout::contiguous(&[rows]), DType::F32);
        (y, stat(mean), stat(rstd))
    }

    /// `self * weight + bias` with optional operands, each reshaped to `view`
    /// after checking it has `want` shape.
    fn norm_affine(
        &self,
        op: &str,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        want: &[usize],
        view: &[usize],
    ) -> Tensor {
        let prepare = |t: &Tensor, what: &str| {
            assert_eq!(t.shape(), want, "{op}: {what} has shape {:?}, expected {want:?}", t.shape());
            t.reshape(view)
        };
        let mut y = self.clone();
        if let Some(w) = weight {
            y = &y * &prepare(w, "weight");
        }
        if let Some(b) = bias {
            y = &y + &prepare(b, "bias");
        }
        y
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
        const OP: &str = "layer_norm";
        let shape = self.shape();
        assert!(
            !normalized_shape.is_empty() && normalized_shape.len() <= shape.len() && shape.ends_with(normalized_shape),
            "{OP}: normalized_shape {normalized_shape:?} must be a non-empty tail of the input shape {shape:?}"
        );
        let cols: usize = normalized_shape.iter().product();
        let rows: usize = shape[..shape.len() - normalized_shape.len()].iter().product();
        let (y, _, _) = self.normalize_rows_op(OP, rows, cols, eps);
        y.reshape(&shape).norm_affine(OP, weight, bias, normalized_shape, normalized_shape)
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
        y.reshape(&shape).norm_affine(OP, weight, bias, &[c], &channel_view(&shape))
    }

    /// Batch normalisation of `[N, C]` or `[N, C, *]` input, like
    /// `F.batch_norm`: per channel, over the batch and all positions.
    ///
    /// With `training`, the batch mean and biased variance normalise the
    /// input, and the running statistics given are updated in place
    /// (`running = (1 − momentum)·running + momentum·batch_stat`, PyTorch's
    /// default momentum is 0.1) with the *unbiased* batch variance for
    /// `running_var`, as PyTorch does. Without `training`, `running_mean`
    /// and `running_var` normalise: a plain per-channel affine of the input,
    /// through which the gradient flows; the running statistics are treated
    /// as constants. `weight` and `bias` (shape `[C]`) then scale and shift.
    /// PyTorch's default eps is 1e-5.
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
        const OP: &str = "batch_norm";
        let shape = self.shape();
        assert!(shape.len() >= 2, "{OP}: expects [N, C] or [N, C, *] input, got shape {shape:?}");
        let (n, c) = (shape[0], shape[1]);
        let positions: usize = shape[2..].iter().product();
        let view = channel_view(&shape);
        for (t, what) in [(running_mean, "running_mean"), (running_var, "running_var")] {
            if let Some(t) = t {
                assert_eq!(t.shape(), [c], "{OP}: {what} has shape {:?}, expected [{c}]", t.shape());
            }
        }
        if !training {
            let (Some(rm), Some(rv)) = (running_mean, running_var) else {
                panic!("{OP}: evaluation (training = false) needs running_mean and running_var");
            };
            let scale = rv.detach().add_scalar(eps).rsqrt();
            let shift = -(&rm.detach() * &scale);
            let y = self * &scale.reshape(&view) + shift.reshape(&view);
            return y.norm_affine(OP, weight, bias, &[c], &view);
        }

        let count = n * positions;
        assert!(count > 1, "{OP}: expected more than 1 value per channel when training, got input shape {shape:?}");
        // Channels become rows: [N, C, L] -> [C, N, L], made dense, seen as [C, N·L].
        let by_channel = self.reshape(&[n, c, positions]).permute(&[1, 0, 2]).contiguous();
        let (y, mean, _) = by_channel.normalize_rows_op(OP, c, count, eps);
        let y = y.reshape(&[c, n, positions]).permute(&[1, 0, 2]).reshape(&shape);
        no_grad(|| {
            let update = |running: &Tensor, batch: &Tensor| {
                running.assign(&(running.detach().mul_scalar(1.0 - momentum) + batch.mul_scalar(momentum)));
            };
            if let Some(rm) = running_mean {
                update(rm, &mean);
            }
            if let Some(rv) = running_var {
                update(rv, &by_channel.detach().reshape(&[c, count]).var(&[1], 1, false));
            }
        });
        y.norm_affine(OP, weight, bias, &[c], &view)
    }
}

/// The shape `[C, 1, ...]` that lines a per-channel `[C]` tensor up with dim 1
/// of an `[N, C, *]` input under broadcasting.
fn channel_view(shape: &[usize]) -> Vec<usize> {
    let mut v = vec![1; shape.len() - 1];
    v[0] = shape[1];
    v
}

//! Normalisation layers: batch, layer, group and instance norm.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use wgrad_autograd::{Device, NormEpilogue, Tensor};

use crate::Module;

/// Batch normalisation over the channel dim of `[N, C]`/`[N, C, L]`
/// (`BatchNorm1d`) or `[N, C, H, W]` (`BatchNorm2d`): batch statistics with the
/// biased variance in training, running statistics (momentum 0.1, unbiased
/// variance) in evaluation, as PyTorch. Users build it as
/// [`BatchNorm1d`](crate::BatchNorm1d) or [`BatchNorm2d`](crate::BatchNorm2d).
#[derive(Module)]
pub struct BatchNorm {
    /// Scale γ `[C]` (ones), if affine.
    #[param]
    pub weight: Option<Tensor>,
    /// Shift β `[C]` (zeros), if affine.
    #[param]
    pub bias: Option<Tensor>,
    /// Running mean `[C]` (a buffer).
    #[buffer]
    pub running_mean: Tensor,
    /// Running variance `[C]` (a buffer).
    #[buffer]
    pub running_var: Tensor,
    /// Batches seen in training (a buffer, as PyTorch's `num_batches_tracked`),
    /// up to `pending`; read it with [`BatchNorm::num_batches_tracked`].
    #[buffer(rename = "num_batches_tracked", via = num_batches_tracked)]
    tracked: Tensor,
    /// Training batches not yet added to `tracked`: counted on the host so
    /// that a training step launches no kernel for the counter; added when
    /// the buffer is visited (state dicts, checkpoints) or read.
    pending: AtomicU64,
    /// Running-statistics momentum (PyTorch default 0.1).
    pub momentum: f32,
    /// Added to the variance (PyTorch default 1e-5).
    pub eps: f32,
    rank: usize,
    #[training]
    training: bool,
}

impl BatchNorm {
    fn with_rank(channels: usize, rank: usize, device: &Device) -> Self {
        BatchNorm {
            weight: Some(Tensor::ones(&[channels], device).requires_grad_()),
            bias: Some(Tensor::zeros(&[channels], device).requires_grad_()),
            running_mean: Tensor::zeros(&[channels], device),
            running_var: Tensor::ones(&[channels], device),
            tracked: Tensor::zeros(&[], device),
            pending: AtomicU64::new(0),
            momentum: 0.1,
            eps: 1e-5,
            rank,
            training: true,
        }
    }

    /// Training batches seen (PyTorch's `num_batches_tracked` buffer, a 0-d
    /// f32 tensor): the host-side count is folded in first, so the value is
    /// current, and writing into the returned tensor (loading a state dict)
    /// sets the count.
    pub fn num_batches_tracked(&self) -> Tensor {
        let k = self.pending.swap(0, Relaxed);
        if k > 0 {
            wgrad_autograd::no_grad(|| self.tracked.assign(&(&self.tracked + k as f32)));
        }
        self.tracked.clone()
    }

    /// `BatchNorm1d(channels)` with PyTorch's defaults.
    pub fn new_1d(channels: usize, device: &Device) -> Self {
        Self::with_rank(channels, 1, device)
    }

    /// `BatchNorm2d(channels)` with PyTorch's defaults.
    pub fn new_2d(channels: usize, device: &Device) -> Self {
        Self::with_rank(channels, 2, device)
    }
}

impl BatchNorm {
    /// `relu(self.forward(x))` in one fused kernel (forward and backward),
    /// the conv → BN → ReLU step of a ResNet.
    pub fn forward_relu(&self, x: &Tensor) -> Tensor {
        self.forward_with(x, NormEpilogue::relu())
    }

    /// `relu(self.forward(x) + residual)` in one fused kernel, the end of a
    /// residual block; `residual` gets its gradient from the same backward.
    pub fn forward_add_relu(&self, x: &Tensor, residual: &Tensor) -> Tensor {
        self.forward_with(x, NormEpilogue::add_relu(residual))
    }

    /// The forward pass followed by `epilogue` (see [`NormEpilogue`]).
    pub fn forward_with(&self, x: &Tensor, epilogue: NormEpilogue) -> Tensor {
        let ok = if self.rank == 2 { x.dims() == 4 } else { matches!(x.dims(), 2 | 3) };
        assert!(ok, "{}: unexpected input shape {:?}", self.describe(), x.shape());
        if self.training {
            self.pending.fetch_add(1, Relaxed);
        }
        x.batch_norm_act(
            Some(&self.running_mean),
            Some(&self.running_var),
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.training,
            self.momentum,
            self.eps,
            epilogue,
        )
    }
}

impl Module for BatchNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with(x, NormEpilogue::default())
    }
    fn describe(&self) -> String {
        format!("BatchNorm{}d({}, eps={}, momentum={})", self.rank, self.running_mean.numel(), self.eps, self.momentum)
    }
}

/// Layer normalisation over the trailing `normalized_shape` dims (`nn.LayerNorm`).
#[derive(Module)]
pub struct LayerNorm {
    /// The normalised trailing shape.
    pub normalized_shape: Vec<usize>,
    /// γ (ones), if elementwise affine.
    #[param]
    pub weight: Option<Tensor>,
    /// β (zeros), if elementwise affine.
    #[param]
    pub bias: Option<Tensor>,
    /// Added to the variance (PyTorch default 1e-5).
    pub eps: f32,
}

impl LayerNorm {
    /// With affine parameters and eps 1e-5.
    pub fn new(normalized_shape: &[usize], device: &Device) -> Self {
        LayerNorm {
            normalized_shape: normalized_shape.to_vec(),
            weight: Some(Tensor::ones(normalized_shape, device).requires_grad_()),
            bias: Some(Tensor::zeros(normalized_shape, device).requires_grad_()),
            eps: 1e-5,
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(&self.normalized_shape, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
    fn describe(&self) -> String {
        format!("LayerNorm({:?}, eps={})", self.normalized_shape, self.eps)
    }
}

/// Group normalisation of `[N, C, *]` over groups of channels (`nn.GroupNorm`);
/// with `groups == channels` it is instance normalisation.
#[derive(Module)]
pub struct GroupNorm {
    /// Number of channel groups.
    pub groups: usize,
    /// γ `[C]` (ones).
    #[param]
    pub weight: Option<Tensor>,
    /// β `[C]` (zeros).
    #[param]
    pub bias: Option<Tensor>,
    /// Added to the variance (PyTorch default 1e-5).
    pub eps: f32,
}

impl GroupNorm {
    /// `GroupNorm(groups, channels)` with affine parameters.
    pub fn new(groups: usize, channels: usize, device: &Device) -> Self {
        assert!(
            groups > 0 && channels.is_multiple_of(groups),
            "GroupNorm: {channels} channels do not split into {groups} groups"
        );
        GroupNorm {
            groups,
            weight: Some(Tensor::ones(&[channels], device).requires_grad_()),
            bias: Some(Tensor::zeros(&[channels], device).requires_grad_()),
            eps: 1e-5,
        }
    }

    /// Instance normalisation (one group per channel) with affine parameters,
    /// like `nn.InstanceNorm2d(affine=True)` without running statistics.
    pub fn instance_norm(channels: usize, device: &Device) -> Self {
        Self::new(channels, channels, device)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.group_norm(self.groups, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
    fn describe(&self) -> String {
        let c = self.weight.as_ref().map(|w| w.numel()).unwrap_or(0);
        format!("GroupNorm({}, {}, eps={})", self.groups, c, self.eps)
    }
}

/// Root-mean-square normalisation over the trailing `normalized_shape`
/// (`nn.RMSNorm`, LLaMA's norm): `x / sqrt(mean(x²) + eps) · weight`.
#[derive(Module)]
pub struct RMSNorm {
    /// The normalised trailing shape.
    pub normalized_shape: Vec<usize>,
    /// γ (ones), if elementwise affine.
    #[param]
    pub weight: Option<Tensor>,
    /// Added to the mean square; PyTorch's default (`eps=None`) is the
    /// dtype's machine epsilon, `f32::EPSILON`.
    pub eps: f32,
}

impl RMSNorm {
    /// With a weight of ones and PyTorch's default eps.
    pub fn new(normalized_shape: &[usize], device: &Device) -> Self {
        RMSNorm {
            normalized_shape: normalized_shape.to_vec(),
            weight: Some(Tensor::ones(normalized_shape, device).requires_grad_()),
            eps: f32::EPSILON,
        }
    }

    /// Another eps (LLaMA uses 1e-6 or 1e-5).
    pub fn eps(mut self, eps: f32) -> Self {
        self.eps = eps;
        self
    }
}

impl Module for RMSNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.rms_norm(&self.normalized_shape, self.weight.as_ref(), self.eps)
    }
    fn describe(&self) -> String {
        format!("RMSNorm({:?}, eps={})", self.normalized_shape, self.eps)
    }
}

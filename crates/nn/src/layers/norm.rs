//! Normalisation layers: batch, layer, group and instance norm.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use wgrad_autograd::{Device, Tensor};

use std::marker::PhantomData;

use crate::construction::{copy_builder, setters, Built, Init};
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

/// The options of a batch norm layer, with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormOptions {
    /// Channels C.
    pub num_features: usize,
    /// Added to the variance (default 1e-5).
    pub eps: f32,
    /// Running-statistics momentum (default 0.1).
    pub momentum: f32,
    /// Learned scale and shift (default true).
    pub affine: bool,
}

/// Options of a [`BatchNorm1d`](crate::BatchNorm1d) or
/// [`BatchNorm2d`](crate::BatchNorm2d) (`L`); [`build`](Self::build) makes it.
pub struct BatchNormBuilder<L> {
    options: BatchNormOptions,
    class: PhantomData<fn() -> L>,
}
copy_builder!(BatchNormBuilder);

impl<L> BatchNormBuilder<L> {
    /// PyTorch's defaults for `num_features` channels.
    pub(crate) fn new(num_features: usize) -> Self {
        let options = BatchNormOptions { num_features, eps: 1e-5, momentum: 0.1, affine: true };
        BatchNormBuilder { options, class: PhantomData }
    }

    /// Added to the variance (default 1e-5).
    pub fn eps(mut self, eps: f32) -> Self {
        self.options.eps = eps;
        self
    }

    /// Running-statistics momentum (default 0.1).
    pub fn momentum(mut self, momentum: f32) -> Self {
        self.options.momentum = momentum;
        self
    }

    /// Learned scale γ and shift β (default true).
    pub fn affine(mut self, affine: bool) -> Self {
        self.options.affine = affine;
        self
    }
}

impl<L: Built<BatchNormOptions>> BatchNormBuilder<L> {
    /// The layer: γ ones, β zeros, running mean 0 and variance 1.
    pub fn build(self, init: &mut Init) -> L {
        L::built(self.options, init)
    }
}

impl BatchNorm {
    /// The shared layer for inputs of `rank` spatial dims (1 or 2).
    ///
    /// # Panics
    /// For zero channels.
    pub(crate) fn new(rank: usize, o: BatchNormOptions, device: &Device) -> Self {
        let channels = o.num_features;
        assert!(channels > 0, "BatchNorm: num_features must be positive");
        BatchNorm {
            weight: o.affine.then(|| Tensor::ones(&[channels], device).requires_grad_()),
            bias: o.affine.then(|| Tensor::zeros(&[channels], device).requires_grad_()),
            running_mean: Tensor::zeros(&[channels], device),
            running_var: Tensor::ones(&[channels], device),
            tracked: Tensor::zeros(&[], device),
            pending: AtomicU64::new(0),
            momentum: o.momentum,
            eps: o.eps,
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
}

impl Module for BatchNorm {
    /// On a GPU, `bn.forward(x).relu()` and `bn.forward(x).add(&r).relu()`
    /// (a ResNet block's end) are one launch each: the fuser merges the add
    /// and the ReLU into the normalisation's store, and a ReLU's gradient
    /// into the store of the product computing it.
    fn forward(&self, x: &Tensor) -> Tensor {
        let ok = if self.rank == 2 { x.dims() == 4 } else { matches!(x.dims(), 2 | 3) };
        assert!(ok, "{}: unexpected input shape {:?}", self.describe(), x.shape());
        if self.training {
            self.pending.fetch_add(1, Relaxed);
            if let Some(sync) = crate::layers::sync_batch_norm::current() {
                return crate::layers::sync_batch_norm::forward(
                    x,
                    &*sync,
                    (&self.running_mean, &self.running_var),
                    (self.weight.as_ref(), self.bias.as_ref()),
                    (self.momentum, self.eps),
                );
            }
        }
        x.batch_norm(
            Some(&self.running_mean),
            Some(&self.running_var),
            self.weight.as_ref(),
            self.bias.as_ref(),
            self.training,
            self.momentum,
            self.eps,
        )
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

/// Options of a [`LayerNorm`]; [`build`](Self::build) makes it.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormBuilder {
    normalized_shape: Vec<usize>,
    eps: f32,
    elementwise_affine: bool,
    bias: bool,
}

impl LayerNorm {
    /// `nn.LayerNorm(normalized_shape)`: eps 1e-5, learned weight and bias.
    pub fn builder(normalized_shape: &[usize]) -> LayerNormBuilder {
        LayerNormBuilder {
            normalized_shape: normalized_shape.to_vec(),
            eps: 1e-5,
            elementwise_affine: true,
            bias: true,
        }
    }
}

impl LayerNormBuilder {
    setters! {
        /// Added to the variance (default 1e-5).
        eps: f32,
        /// Learned weight (and bias) over the normalised shape (default true).
        elementwise_affine: bool,
        /// A learned bias when affine (default true).
        bias: bool,
    }

    /// The layer: weight ones, bias zeros.
    ///
    /// # Panics
    /// For an empty or zero-sized normalised shape.
    pub fn build(self, init: &mut Init) -> LayerNorm {
        let shape = self.normalized_shape;
        assert!(!shape.is_empty() && !shape.contains(&0), "LayerNorm: normalized_shape {shape:?} must be non-empty");
        let affine = self.elementwise_affine;
        LayerNorm {
            weight: affine.then(|| Tensor::ones(&shape, init.device()).requires_grad_()),
            bias: (affine && self.bias).then(|| Tensor::zeros(&shape, init.device()).requires_grad_()),
            normalized_shape: shape,
            eps: self.eps,
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

/// Options of a [`GroupNorm`]; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormBuilder {
    num_groups: usize,
    num_channels: usize,
    eps: f32,
    affine: bool,
}

impl GroupNorm {
    /// `nn.GroupNorm(num_groups, num_channels)`: eps 1e-5, affine. With
    /// `num_groups == num_channels` it is `nn.InstanceNorm2d(affine=True)`
    /// without running statistics.
    pub fn builder(num_groups: usize, num_channels: usize) -> GroupNormBuilder {
        GroupNormBuilder { num_groups, num_channels, eps: 1e-5, affine: true }
    }
}

impl GroupNormBuilder {
    setters! {
        /// Added to the variance (default 1e-5).
        eps: f32,
        /// Learned per-channel scale and shift (default true).
        affine: bool,
    }

    /// The layer: weight ones, bias zeros.
    ///
    /// # Panics
    /// When the channels do not split into the groups.
    pub fn build(self, init: &mut Init) -> GroupNorm {
        let (groups, channels) = (self.num_groups, self.num_channels);
        assert!(
            groups > 0 && channels > 0 && channels.is_multiple_of(groups),
            "GroupNorm: {channels} channels do not split into {groups} groups"
        );
        GroupNorm {
            groups,
            weight: self.affine.then(|| Tensor::ones(&[channels], init.device()).requires_grad_()),
            bias: self.affine.then(|| Tensor::zeros(&[channels], init.device()).requires_grad_()),
            eps: self.eps,
        }
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

/// Options of an [`RMSNorm`]; [`build`](Self::build) makes it.
#[derive(Clone, Debug, PartialEq)]
pub struct RMSNormBuilder {
    normalized_shape: Vec<usize>,
    eps: f32,
    elementwise_affine: bool,
}

impl RMSNorm {
    /// `nn.RMSNorm(normalized_shape)`: a learned weight, PyTorch's default
    /// eps (`f32::EPSILON`; LLaMA uses 1e-6 or 1e-5).
    pub fn builder(normalized_shape: &[usize]) -> RMSNormBuilder {
        RMSNormBuilder { normalized_shape: normalized_shape.to_vec(), eps: f32::EPSILON, elementwise_affine: true }
    }
}

impl RMSNormBuilder {
    setters! {
        /// Added to the mean square (default `f32::EPSILON`).
        eps: f32,
        /// A learned weight (default true).
        elementwise_affine: bool,
    }

    /// The layer: weight ones.
    ///
    /// # Panics
    /// For an empty or zero-sized normalised shape.
    pub fn build(self, init: &mut Init) -> RMSNorm {
        let shape = self.normalized_shape;
        assert!(!shape.is_empty() && !shape.contains(&0), "RMSNorm: normalized_shape {shape:?} must be non-empty");
        RMSNorm {
            weight: self.elementwise_affine.then(|| Tensor::ones(&shape, init.device()).requires_grad_()),
            normalized_shape: shape,
            eps: self.eps,
        }
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

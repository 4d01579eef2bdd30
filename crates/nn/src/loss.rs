//! Loss functions with PyTorch's formulas and reductions. Each is a small
//! struct holding its options, with `forward(input, target)`.

use wgrad_autograd::{CrossEntropyOptions, Reduction, Tensor};

fn reduce(loss: Tensor, reduction: Reduction) -> Tensor {
    match reduction {
        Reduction::Mean => loss.mean_all(),
        Reduction::Sum => loss.sum_all(),
        Reduction::None => loss,
    }
}

fn scalar(v: f32, like: &Tensor) -> Tensor {
    Tensor::scalar(v, &like.device())
}

/// Mean squared error: (x − y)².
#[derive(Clone, Copy, Debug)]
pub struct MSELoss {
    /// How to reduce the elementwise losses.
    pub reduction: Reduction,
}

/// L1 / mean absolute error: |x − y|.
#[derive(Clone, Copy, Debug)]
pub struct L1Loss {
    /// How to reduce the elementwise losses.
    pub reduction: Reduction,
}

/// Huber: ½d² where |d| ≤ delta, else delta·(|d| − ½delta).
#[derive(Clone, Copy, Debug)]
pub struct HuberLoss {
    /// Where the loss turns linear (PyTorch default 1).
    pub delta: f32,
    /// How to reduce the elementwise losses.
    pub reduction: Reduction,
}

/// Smooth L1: ½d²/beta where |d| < beta, else |d| − ½beta.
#[derive(Clone, Copy, Debug)]
pub struct SmoothL1Loss {
    /// Where the loss turns linear (PyTorch default 1).
    pub beta: f32,
    /// How to reduce the elementwise losses.
    pub reduction: Reduction,
}

impl Default for MSELoss {
    fn default() -> Self {
        MSELoss { reduction: Reduction::Mean }
    }
}
impl Default for L1Loss {
    fn default() -> Self {
        L1Loss { reduction: Reduction::Mean }
    }
}
impl Default for HuberLoss {
    fn default() -> Self {
        HuberLoss { delta: 1.0, reduction: Reduction::Mean }
    }
}
impl Default for SmoothL1Loss {
    fn default() -> Self {
        SmoothL1Loss { beta: 1.0, reduction: Reduction::Mean }
    }
}

impl MSELoss {
    /// The loss of `input` against `target` (same shape, or broadcastable).
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        reduce((input - target).square(), self.reduction)
    }
}

impl L1Loss {
    /// The loss of `input` against `target`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        reduce((input - target).abs(), self.reduction)
    }
}

/// `where |d| < k: quadratic(d) else linear(|d|)`, the shape of Huber and smooth L1.
fn piecewise(d: &Tensor, k: f32, quadratic: impl Fn(&Tensor) -> Tensor, linear: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let a = d.abs();
    let inside = a.lt(&scalar(k, d));
    Tensor::where_cond(&inside, &quadratic(d), &linear(&a))
}

impl HuberLoss {
    /// The loss of `input` against `target`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        let k = self.delta;
        let l = piecewise(&(input - target), k, |d| d.square() * 0.5, |a| (a - 0.5 * k) * k);
        reduce(l, self.reduction)
    }
}

impl SmoothL1Loss {
    /// The loss of `input` against `target`.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        let b = self.beta;
        let l = piecewise(&(input - target), b, |d| d.square() * (0.5 / b), |a| a - 0.5 * b);
        reduce(l, self.reduction)
    }
}

/// Binary cross-entropy on probabilities; logs are clamped at −100 like PyTorch.
#[derive(Clone, Debug)]
pub struct BCELoss {
    /// Optional per-element rescaling weight (broadcast to the input).
    pub weight: Option<Tensor>,
    /// How to reduce the elementwise losses.
    pub reduction: Reduction,
}

impl Default for BCELoss {
    fn default() -> Self {
        BCELoss { weight: None, reduction: Reduction::Mean }
    }
}

impl BCELoss {
    /// −(t·log p + (1 − t)·log(1 − p)).
    pub fn forward(&self, probs: &Tensor, target: &Tensor) -> Tensor {
        let floor = scalar(-100.0, probs);
        let log_p = probs.log().maximum(&floor);
        let log_q = probs.affine(-1.0, 1.0).log().maximum(&floor);
        let mut l = -(target * &log_p + target.affine(-1.0, 1.0) * &log_q);
        if let Some(w) = &self.weight {
            l = l * w;
        }
        reduce(l, self.reduction)
    }
}

/// Sigmoid + binary cross-entropy in one numerically stable expression.
#[derive(Clone, Debug)]
pub struct BCEWithLogitsLoss {
    /// Optional per-element rescaling weight.
    pub weight: Option<Tensor>,
    /// Weight of positive examples, broadcast along the last (class) dim.
    pub pos_weight: Option<Tensor>,
    /// How to reduce the elementwise losses.
    pub reduction: Reduction,
}

impl Default for BCEWithLogitsLoss {
    fn default() -> Self {
        BCEWithLogitsLoss { weight: None, pos_weight: None, reduction: Reduction::Mean }
    }
}

impl BCEWithLogitsLoss {
    /// (1 − t)·x + (1 + (pw − 1)·t)·softplus(−x): PyTorch's stable form.
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Tensor {
        let sp = logits.neg().softplus();
        let lw = match &self.pos_weight {
            Some(pw) => target * &pw.add_scalar(-1.0) + 1.0,
            None => Tensor::ones(&[], &logits.device()),
        };
        let mut l = target.affine(-1.0, 1.0) * logits + lw * sp;
        if let Some(w) = &self.weight {
            l = l * w;
        }
        reduce(l, self.reduction)
    }
}

/// Kullback–Leibler divergence with `input` as log-probabilities.
#[derive(Clone, Copy, Debug)]
pub struct KLDivLoss {
    /// `Mean` averages over all elements as PyTorch's default; use
    /// [`KLDivLoss::batchmean`] for the mathematically correct per-sample mean.
    pub reduction: Reduction,
    /// Divide the sum by the batch size (PyTorch's `reduction='batchmean'`).
    pub batchmean: bool,
    /// The target is given as log-probabilities too.
    pub log_target: bool,
}

impl Default for KLDivLoss {
    fn default() -> Self {
        KLDivLoss { reduction: Reduction::Mean, batchmean: false, log_target: false }
    }
}

impl KLDivLoss {
    /// `reduction='batchmean'`.
    pub fn batchmean() -> Self {
        KLDivLoss { reduction: Reduction::Sum, batchmean: true, log_target: false }
    }

    /// t·(log t − input), with 0 where t = 0.
    pub fn forward(&self, input: &Tensor, target: &Tensor) -> Tensor {
        let l = if self.log_target {
            target.exp() * (target - input)
        } else {
            let zero = scalar(0.0, target);
            let positive = target.gt(&zero);
            // log of the zero entries is replaced before it can become -inf * 0 = NaN.
            let safe_t = Tensor::where_cond(&positive, target, &scalar(1.0, target));
            Tensor::where_cond(&positive, &(target * &(safe_t.log() - input)), &zero)
        };
        let reduced = reduce(l, self.reduction);
        if self.batchmean {
            reduced * (1.0 / input.shape()[0] as f32)
        } else {
            reduced
        }
    }
}

/// Cross-entropy from logits: class-index or probability targets, label
/// smoothing, class weights, ignore_index (see [`CrossEntropyOptions`]).
#[derive(Clone, Debug, Default)]
pub struct CrossEntropyLoss {
    /// PyTorch's options.
    pub options: CrossEntropyOptions,
}

impl CrossEntropyLoss {
    /// The loss of `logits [N, C, ...]` against `target`.
    pub fn forward(&self, logits: &Tensor, target: &Tensor) -> Tensor {
        logits.cross_entropy(target, &self.options)
    }
}

/// Negative log-likelihood of log-probabilities.
#[derive(Clone, Debug)]
pub struct NLLLoss {
    /// Optional class weights `[C]`.
    pub weight: Option<Tensor>,
    /// Targets with this class contribute nothing.
    pub ignore_index: Option<u32>,
    /// How to reduce.
    pub reduction: Reduction,
}

impl Default for NLLLoss {
    fn default() -> Self {
        NLLLoss { weight: None, ignore_index: None, reduction: Reduction::Mean }
    }
}

impl NLLLoss {
    /// The loss of `log_probs [N, C]` against class indices `target [N]` (U32).
    pub fn forward(&self, log_probs: &Tensor, target: &Tensor) -> Tensor {
        log_probs.nll_loss(target, self.weight.as_ref(), self.ignore_index, self.reduction)
    }
}

/// 1 − cos(x₁, x₂) for y = 1, max(0, cos − margin) for y = −1.
#[derive(Clone, Copy, Debug)]
pub struct CosineEmbeddingLoss {
    /// Margin for dissimilar pairs (PyTorch default 0).
    pub margin: f32,
    /// How to reduce.
    pub reduction: Reduction,
}

impl Default for CosineEmbeddingLoss {
    fn default() -> Self {
        CosineEmbeddingLoss { margin: 0.0, reduction: Reduction::Mean }
    }
}

impl CosineEmbeddingLoss {
    /// `x1, x2 [N, D]`, `y [N]` of ±1.
    pub fn forward(&self, x1: &Tensor, x2: &Tensor, y: &Tensor) -> Tensor {
        // PyTorch adds eps = 1e-12 to the squared norms.
        let dot = (x1 * x2).sum(&[1], false);
        let n1 = x1.square().sum(&[1], false).add_scalar(1e-12);
        let n2 = x2.square().sum(&[1], false).add_scalar(1e-12);
        let cos = dot / (n1 * n2).sqrt();
        let zero = scalar(0.0, y);
        let pos = cos.affine(-1.0, 1.0);
        let neg = cos.add_scalar(-self.margin).maximum(&zero);
        let l = Tensor::where_cond(&y.gt(&zero), &pos, &neg);
        reduce(l, self.reduction)
    }
}

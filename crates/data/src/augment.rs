//! Data augmentation of device batches: an [`Augment`] pipeline (random crop
//! with zero padding + horizontal flip, per-channel normalisation, cutout)
//! run on the device through autograd's image ops (`Tensor::try_random_crop_flip`
//! and friends, constants without gradient history), and [`mixup`].
//!
//! Every random decision comes from a [`Generator`]: a call reads the
//! Philox counters from `gen.offset` on and advances `offset` past them, so
//! consecutive batches are augmented differently and the same seed repeats a
//! whole run, on a GPU and on the CPU backend alike.

use wgrad_autograd::{DType, Generator, Tensor};

/// A per-batch augmentation pipeline, applied in the order crop+flip,
/// normalize, cutout (the usual CIFAR recipe; DeVries & Taylor cut out after
/// normalising, so the hole is the mean colour). `Augment::default()` does
/// nothing.
///
/// The crop pads with zeros *in the input's units*: on [0, 1] images (the
/// [`DataLoader`](crate::DataLoader) without `normalize`) that is black, as in
/// torchvision; normalise here rather than in the loader to keep it so.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Augment {
    crop_pad: usize,
    flip_p: f32,
    mean: Vec<f32>,
    std: Vec<f32>,
    cutout: usize,
}

impl Augment {
    /// The identity pipeline; add steps with the builder methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Random crop back to the input size after zero padding by `pad`
    /// (a shift in `[-pad, pad]` per axis), then a horizontal flip with
    /// probability `flip_p`: torchvision's `RandomCrop(size, padding=pad)`
    /// and `RandomHorizontalFlip(flip_p)`, fused into one kernel.
    ///
    /// # Panics
    /// When `flip_p` is outside `[0, 1]`.
    pub fn crop_flip(mut self, pad: usize, flip_p: f32) -> Self {
        assert!((0.0..=1.0).contains(&flip_p), "Augment::crop_flip: flip probability {flip_p} must be in [0, 1]");
        self.crop_pad = pad;
        self.flip_p = flip_p;
        self
    }

    /// Per-channel `(x − mean[c]) / std[c]` (torchvision's `Normalize`).
    ///
    /// # Panics
    /// When the lengths differ or a std is zero.
    pub fn normalize(mut self, mean: &[f32], std: &[f32]) -> Self {
        assert_eq!(mean.len(), std.len(), "Augment::normalize: one std per mean, got {mean:?} and {std:?}");
        assert!(!std.contains(&0.0), "Augment::normalize: std {std:?} contains a zero");
        self.mean = mean.to_vec();
        self.std = std.to_vec();
        self
    }

    /// Cutout: zero one `size`×`size` square per image at a random centre,
    /// clipped at the borders (DeVries & Taylor 2017; 16 for CIFAR-10).
    pub fn cutout(mut self, size: usize) -> Self {
        self.cutout = size;
        self
    }

    /// Augments an F32 `[N, C, H, W]` batch on its device: a new tensor
    /// without gradient history. Each random step consumes
    /// [`Tensor::augment_counters(N)`](Tensor::augment_counters) counters of
    /// `gen` (crop+flip first, then cutout).
    ///
    /// # Panics
    /// When `images` is not F32 of rank 4, or normalisation was configured
    /// for a different number of channels.
    pub fn apply(&self, images: &Tensor, gen: &mut Generator) -> Tensor {
        const OP: &str = "Augment::apply";
        let shape = images.shape();
        assert!(
            images.dtype() == DType::F32 && shape.len() == 4,
            "{OP}: expects an F32 [N, C, H, W] batch, got {:?} {shape:?}",
            images.dtype()
        );
        let ok = |r: wgrad_autograd::Result<Tensor>| r.unwrap_or_else(|e| panic!("{}", e.in_op(OP)));
        let mut x = images.detach();
        if self.crop_pad > 0 || self.flip_p > 0.0 {
            x = ok(x.try_random_crop_flip(self.crop_pad, self.flip_p, gen));
        }
        if !self.mean.is_empty() {
            x = ok(x.try_normalize_channels(&self.mean, &self.std));
        }
        if self.cutout > 0 {
            x = ok(x.try_cutout(self.cutout, gen));
        }
        x
    }
}

/// A mixed batch from [`mixup`].
#[derive(Debug)]
pub struct Mixup {
    /// `λ·x + (1 − λ)·x[perm]`, shaped like the input images.
    pub images: Tensor,
    /// `λ·t + (1 − λ)·t[perm]`: F32 `[N, classes]` probabilities (rows sum to
    /// 1 when the input rows do), usable as `cross_entropy` targets.
    pub targets: Tensor,
    /// The mixing weight drawn from `Beta(alpha, alpha)`.
    pub lambda: f32,
    /// The batch permutation: row `i` was mixed with row `perm[i]`.
    pub perm: Vec<u32>,
}

/// mixup (Zhang et al. 2018) as a batch op: one `λ ~ Beta(alpha, alpha)`
/// for the batch, images and targets mixed with a random permutation of
/// the batch. `targets` are U32 class labels `[N]` (made one-hot with
/// `classes`) or F32 probabilities `[N, classes]`. `alpha <= 0` gives
/// `λ = 1` (no mixing; the permutation is still drawn), as in the reference
/// code.
///
/// # How the host draws
/// λ and the permutation are drawn on the host from `gen`'s Philox stream:
/// the four words of counter `gen.offset`, then `gen.offset + 1`, … are
/// consumed in order, and `gen.offset` ends past the last block touched.
/// Uniforms in `[0, 1)` take 53 bits of two words; `λ = X / (X + Y)` with
/// `X, Y ~ Gamma(alpha)` from Marsaglia & Tsang's method (normals by
/// Box–Muller; for `alpha < 1` the boost `Gamma(alpha + 1)·U^(1/alpha)`,
/// kept in logs so tiny alphas do not underflow to 0/0). The permutation is a
/// Fisher–Yates shuffle with 64-bit words (`j = word % (i + 1)`). The draw is
/// in f64 on the host, so both backends see the same λ.
///
/// # Panics
/// On shapes that disagree, a 0-row batch, or targets of another dtype.
pub fn mixup(images: &Tensor, targets: &Tensor, classes: usize, alpha: f32, gen: &mut Generator) -> Mixup {
    const OP: &str = "mixup";
    let shape = images.shape();
    assert!(!shape.is_empty() && shape[0] > 0, "{OP}: images need a non-empty batch dim, got {shape:?}");
    let n = shape[0];
    let soft = match targets.dtype() {
        DType::U32 => {
            assert_eq!(targets.shape(), [n], "{OP}: class labels must be [{n}] for images {shape:?}");
            targets.one_hot(classes)
        }
        DType::F32 => {
            assert_eq!(targets.shape(), [n, classes], "{OP}: probability targets must be [{n}, {classes}]");
            targets.clone()
        }
        d => panic!("{OP}: targets must be U32 labels or F32 probabilities, got {d:?}"),
    };
    let mut stream = HostStream { gen, words: [0; 4], used: 4 };
    let lambda = if alpha > 0.0 { stream.beta_symmetric(alpha as f64) as f32 } else { 1.0 };
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        perm.swap(i, (stream.u64() % (i as u64 + 1)) as usize);
    }
    let idx = Tensor::from_u32(&perm, &[n], &images.device());
    let mix = |t: &Tensor| t.mul_scalar(lambda).add(&t.index_select(0, &idx).mul_scalar(1.0 - lambda));
    Mixup { images: mix(&images.detach()), targets: mix(&soft.detach()), lambda, perm }
}

/// The generator's Philox words, block by block, read on the host.
struct HostStream<'a> {
    gen: &'a mut Generator,
    words: [u32; 4],
    used: usize,
}

impl HostStream<'_> {
    fn word(&mut self) -> u32 {
        if self.used == 4 {
            self.words = self.gen.next_block();
            self.used = 0;
        }
        self.used += 1;
        self.words[self.used - 1]
    }

    fn u64(&mut self) -> u64 {
        (self.word() as u64) << 32 | self.word() as u64
    }

    /// Uniform in `[0, 1)` with 53 bits.
    fn uniform(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: never ln 0
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// `ln X` for `X ~ Gamma(alpha, 1)` (Marsaglia & Tsang 2000).
    fn ln_gamma_sample(&mut self, alpha: f64) -> f64 {
        if alpha < 1.0 {
            let boost = (1.0 - self.uniform()).ln() / alpha;
            return self.ln_gamma_sample(alpha + 1.0) + boost;
        }
        let d = alpha - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = 1.0 - self.uniform();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return (d * v).ln();
            }
        }
    }

    /// `X / (X + Y)` with `X, Y ~ Gamma(alpha)`: a `Beta(alpha, alpha)` draw.
    fn beta_symmetric(&mut self, alpha: f64) -> f64 {
        let (lx, ly) = (self.ln_gamma_sample(alpha), self.ln_gamma_sample(alpha));
        1.0 / (1.0 + (ly - lx).exp())
    }
}

//! Autoencoders for `[N, 1, 28, 28]` images in `[0, 1]` (MNIST without
//! normalisation): a plain [`Autoencoder`] (MLP or convolutional) and the
//! variational autoencoder [`Vae`] of Kingma & Welling, laid out as PyTorch's
//! `examples/vae` so its checkpoints load.
//!
//! Both losses are binary cross-entropy **summed over the 784 pixels and
//! averaged over the batch**. PyTorch's example sums over the batch too; the
//! per-image sum keeps the reconstruction and KL terms on the scale the ELBO
//! defines (so their balance does not change with the batch size), and the
//! batch mean keeps the learning rate independent of the batch size.

use wgrad_autograd::{ConvTranspose2dOptions, Generator, Reduction, Tensor};
use wgrad_nn::loss::BCELoss;
use wgrad_nn::{Conv2d, Conv2dOptions, ConvTranspose2d, Flatten, Init, Linear, Module, ReLU, Sequential, Sigmoid};

/// Pixels of one 28x28 image.
const PIXELS: usize = 28 * 28;

/// BCE of `probs` against `target` (both `[N, ...]`), summed over each
/// image's pixels and averaged over the batch.
pub fn reconstruction_loss(probs: &Tensor, target: &Tensor) -> Tensor {
    assert_eq!(
        probs.shape(),
        target.shape(),
        "reconstruction_loss: prediction {:?} and target {:?} differ",
        probs.shape(),
        target.shape()
    );
    let n = probs.shape()[0];
    BCELoss { weight: None, reduction: Reduction::Sum }.forward(probs, target).mul_scalar(1.0 / n as f32)
}

/// `KL(N(mu, exp(logvar)) || N(0, I)) = -0.5 * sum(1 + logvar - mu² - exp(logvar))`,
/// summed over the latent dims and averaged over the batch (`mu`, `logvar`: `[N, latent]`).
pub fn kl_divergence(mu: &Tensor, logvar: &Tensor) -> Tensor {
    assert_eq!(mu.shape(), logvar.shape(), "kl_divergence: mu {:?} and logvar {:?} differ", mu.shape(), logvar.shape());
    let n = mu.shape()[0];
    let inner = logvar.add_scalar(1.0) - mu.square() - logvar.exp();
    inner.sum_all().mul_scalar(-0.5 / n as f32)
}

/// Reshapes dim 1 into `shape` (`nn.Unflatten(1, shape)`), to turn the
/// decoder's dense features back into feature maps.
#[derive(Module)]
struct Unflatten(Vec<usize>);

impl Module for Unflatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut shape = vec![x.shape()[0]];
        shape.extend_from_slice(&self.0);
        x.reshape(&shape)
    }
    fn describe(&self) -> String {
        format!("Unflatten(dim=1, unflattened_size={:?})", self.0)
    }
}

/// A deterministic autoencoder: `encoder` maps `[N, 1, 28, 28]` to `[N, latent]`,
/// `decoder` maps back to `[N, 1, 28, 28]` probabilities (sigmoid output).
/// Parameters are named `encoder.<i>.weight`, `decoder.<i>.bias`, ... as two
/// `nn.Sequential` fields in PyTorch.
#[derive(Module)]
pub struct Autoencoder {
    /// Image to code.
    #[module]
    pub encoder: Sequential,
    /// Code to pixel probabilities.
    #[module]
    pub decoder: Sequential,
    latent: usize,
    kind: &'static str,
}

impl Autoencoder {
    /// Flatten → Linear(784, hidden) → ReLU → Linear(hidden, latent), mirrored
    /// by Linear(latent, hidden) → ReLU → Linear(hidden, 784) → Sigmoid.
    pub fn mlp(hidden: usize, latent: usize, init: &mut Init) -> Self {
        let encoder = Sequential::new()
            .add(Flatten::default())
            .add(Linear::builder(PIXELS, hidden).build(init))
            .add(ReLU)
            .add(Linear::builder(hidden, latent).build(init));
        let decoder = Sequential::new()
            .add(Linear::builder(latent, hidden).build(init))
            .add(ReLU)
            .add(Linear::builder(hidden, PIXELS).build(init))
            .add(Sigmoid)
            .add(Unflatten(vec![1, 28, 28]));
        Autoencoder { encoder, decoder, latent, kind: "mlp" }
    }

    /// Two stride-2 3x3 convolutions (16, 32 channels: 28 → 14 → 7) and a
    /// Linear to `latent`; the decoder mirrors them with transposed
    /// convolutions (output padding 1 restores the even sizes).
    pub fn conv(latent: usize, init: &mut Init) -> Self {
        let down = Conv2dOptions::new().stride(2).padding(1);
        let up = ConvTranspose2dOptions::new().stride(2).padding(1).output_padding(1);
        let encoder = Sequential::new()
            .add(Conv2d::builder(1, 16, 3).options(down).build(init))
            .add(ReLU)
            .add(Conv2d::builder(16, 32, 3).options(down).build(init))
            .add(ReLU)
            .add(Flatten::default())
            .add(Linear::builder(32 * 7 * 7, latent).build(init));
        let decoder = Sequential::new()
            .add(Linear::builder(latent, 32 * 7 * 7).build(init))
            .add(ReLU)
            .add(Unflatten(vec![32, 7, 7]))
            .add(ConvTranspose2d::builder(32, 16, 3).options(up).build(init))
            .add(ReLU)
            .add(ConvTranspose2d::builder(16, 1, 3).options(up).build(init))
            .add(Sigmoid);
        Autoencoder { encoder, decoder, latent, kind: "conv" }
    }

    /// The code of `x` (`[N, 1, 28, 28]` → `[N, latent]`).
    pub fn encode(&self, x: &Tensor) -> Tensor {
        self.encoder.forward(x)
    }

    /// Pixel probabilities for codes `z` (`[N, latent]` → `[N, 1, 28, 28]`).
    pub fn decode(&self, z: &Tensor) -> Tensor {
        self.decoder.forward(z)
    }

    /// Width of the code.
    pub fn latent_dim(&self) -> usize {
        self.latent
    }

    /// Reconstruction BCE of `x` (see [`reconstruction_loss`]).
    pub fn loss(&self, x: &Tensor) -> Tensor {
        reconstruction_loss(&self.forward(x), x)
    }
}

impl Module for Autoencoder {
    /// The reconstruction `decode(encode(x))`.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.decode(&self.encode(x))
    }
    fn describe(&self) -> String {
        format!("Autoencoder({}, latent={})", self.kind, self.latent)
    }
}

/// The variational autoencoder of PyTorch's `examples/vae`: `fc1` (784 →
/// hidden) + ReLU, then `fc21` → mu and `fc22` → log-variance (hidden →
/// latent); the decoder is `fc3` (latent → hidden) + ReLU, `fc4` (hidden →
/// 784) + sigmoid. Parameter names are those of the example.
#[derive(Module)]
pub struct Vae {
    /// Encoder hidden layer.
    #[module]
    pub fc1: Linear,
    /// Hidden → mean of q(z|x).
    #[module]
    pub fc21: Linear,
    /// Hidden → log-variance of q(z|x).
    #[module]
    pub fc22: Linear,
    /// Decoder hidden layer.
    #[module]
    pub fc3: Linear,
    /// Hidden → pixel logits.
    #[module]
    pub fc4: Linear,
    latent: usize,
}

impl Vae {
    /// A VAE with `hidden` units and a `latent`-dimensional code.
    pub fn new(hidden: usize, latent: usize, init: &mut Init) -> Self {
        Vae {
            fc1: Linear::builder(PIXELS, hidden).build(init),
            fc21: Linear::builder(hidden, latent).build(init),
            fc22: Linear::builder(hidden, latent).build(init),
            fc3: Linear::builder(latent, hidden).build(init),
            fc4: Linear::builder(hidden, PIXELS).build(init),
            latent,
        }
    }

    /// PyTorch example's sizes: 400 hidden units, 20 latent dims (652,824 parameters).
    pub fn mnist(init: &mut Init) -> Self {
        Vae::new(400, 20, init)
    }

    /// Width of the code.
    pub fn latent_dim(&self) -> usize {
        self.latent
    }

    /// `(mu, logvar)` of q(z|x), each `[N, latent]`, for `x` `[N, 1, 28, 28]` (or `[N, 784]`).
    pub fn encode(&self, x: &Tensor) -> (Tensor, Tensor) {
        let h = self.fc1.forward(&x.flatten(1, -1)).relu();
        (self.fc21.forward(&h), self.fc22.forward(&h))
    }

    /// `z = mu + exp(0.5 logvar) * eps` with `eps ~ N(0, I)` drawn from `gen`,
    /// so the sample is differentiable in `mu` and `logvar` and a generator
    /// state reproduces it.
    pub fn reparameterize(mu: &Tensor, logvar: &Tensor, gen: &mut Generator) -> Tensor {
        let eps = gen.normal(&mu.shape(), 0.0, 1.0, &mu.device());
        mu + logvar.mul_scalar(0.5).exp() * eps
    }

    /// Pixel probabilities `[N, 1, 28, 28]` for codes `z` `[N, latent]`.
    pub fn decode(&self, z: &Tensor) -> Tensor {
        let h = self.fc3.forward(z).relu();
        let p = self.fc4.forward(&h).sigmoid();
        p.reshape(&[z.shape()[0], 1, 28, 28])
    }

    /// Images decoded from `n` codes drawn from the prior N(0, I).
    pub fn sample(&self, n: usize, gen: &mut Generator) -> Tensor {
        let dev = self.fc1.weight.device();
        self.decode(&gen.normal(&[n, self.latent], 0.0, 1.0, &dev))
    }

    /// The negative ELBO of `x` (`[N, 1, 28, 28]` in `[0, 1]`) as
    /// `(total, reconstruction, kl)` with `total = reconstruction + kl`, one
    /// reparameterised sample per image drawn from `gen`; both terms are
    /// summed per image and averaged over the batch ([`reconstruction_loss`],
    /// [`kl_divergence`]).
    pub fn loss(&self, x: &Tensor, gen: &mut Generator) -> (Tensor, Tensor, Tensor) {
        let (mu, logvar) = self.encode(x);
        let z = Vae::reparameterize(&mu, &logvar, gen);
        let recon = reconstruction_loss(&self.decode(&z), x);
        let kl = kl_divergence(&mu, &logvar);
        (&recon + &kl, recon, kl)
    }
}

impl Module for Vae {
    /// The deterministic reconstruction `decode(mu(x))` (PyTorch's example
    /// returns `(recon, mu, logvar)` with a sampled code; use
    /// [`Vae::loss`] for training).
    fn forward(&self, x: &Tensor) -> Tensor {
        self.decode(&self.encode(x).0)
    }
    fn describe(&self) -> String {
        format!("VAE(hidden={}, latent={})", self.fc1.weight.shape()[0], self.latent)
    }
}

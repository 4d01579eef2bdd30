//! # wgrad-web
//!
//! The MNIST CNN trained in a browser tab: the same model, data loader,
//! kernels and Adam as the native `mnist` example, on the page's WebGPU
//! adapter (or wgrad's CPU backend compiled to WebAssembly).
//!
//! [`Session`] is the training loop, the same code natively and in the
//! browser (the browser test compares the two step for step); the
//! `wasm-bindgen` wrappers below it are what `www/main.js` calls. In the
//! browser nothing may block: each step's loss is read back with
//! `to_vec_async().await`, and the page's event loop runs in between.
//!
//! This crate must not grow its own training logic: what the page shows
//! is what `wgrad` computes natively.

use std::sync::Arc;

use wgrad_autograd::{no_grad, Device, PendingVec, Tensor};
use wgrad_data::{mnist, Batches, DataLoader, ImageCollate, ImageDataset};
use wgrad_models::mnist_cnn;
use wgrad_nn::loss::CrossEntropyLoss;
use wgrad_nn::optim::{Adam, Optimizer};
use wgrad_nn::{Init, Module, ModuleExt, Sequential};

/// MNIST's per-channel mean and standard deviation (as the native example).
pub const MEAN: [f32; 1] = [0.1307];
/// See [`MEAN`].
pub const STD: [f32; 1] = [0.3081];

/// A training run: model, optimizer and the shuffled batches of one dataset.
pub struct Session {
    dev: Device,
    model: Sequential,
    opt: Adam,
    loss_fn: CrossEntropyLoss,
    loader: DataLoader<ImageDataset, ImageCollate>,
    batches: Batches<ImageDataset, ImageCollate>,
    epoch: usize,
    steps: usize,
}

impl Session {
    /// The CNN initialised from `seed`, Adam at `lr`, and batches of
    /// `batch` images from the IDX `images` and `labels` bytes (gzipped or
    /// not), shuffled with `seed`.
    pub fn new(dev: &Device, seed: u64, batch: usize, lr: f32, images: &[u8], labels: &[u8]) -> Result<Self, String> {
        let data = mnist::from_bytes(images, labels).map_err(|e| e.to_string())?;
        if batch == 0 {
            return Err("the batch size must be at least 1".into());
        }
        let model = mnist_cnn(&mut Init::new(dev, seed));
        let opt = Adam::new(model.parameters(), lr);
        let loader = DataLoader::new(Arc::new(data), batch, dev).workers(0).seed(seed).normalize(&MEAN, &STD);
        let batches = loader.epoch(0);
        Ok(Session {
            dev: dev.clone(),
            model,
            opt,
            loss_fn: CrossEntropyLoss::default(),
            loader,
            batches,
            epoch: 0,
            steps: 0,
        })
    }

    /// The device the session trains on.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// Steps taken.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Batches in one pass over the data.
    pub fn batches_per_epoch(&self) -> usize {
        self.loader.num_batches()
    }

    /// Records one training step on the next batch (forward, backward,
    /// Adam) and returns its loss as a readback in flight: await it in the
    /// browser, `wait()` natively.
    pub fn begin_step(&mut self) -> Result<PendingVec, String> {
        let batch = match self.batches.next() {
            Some(b) => b,
            None => {
                self.epoch += 1;
                self.batches = self.loader.epoch(self.epoch);
                self.batches.next().ok_or("the dataset is empty")?
            }
        }
        .map_err(|e| e.to_string())?;
        self.opt.zero_grad();
        let loss = self.loss_fn.forward(&self.model.forward(&batch.images), &batch.labels);
        loss.backward();
        self.opt.step();
        self.steps += 1;
        Ok(loss.to_vec_async())
    }

    /// Class probabilities for images `[n, 1, 28, 28]` given as pixels in
    /// [0, 1] (a drawn digit), as a readback in flight.
    pub fn classify(&mut self, pixels: &[f32]) -> Result<PendingVec, String> {
        if pixels.is_empty() || !pixels.len().is_multiple_of(28 * 28) {
            return Err(format!("expected 28x28 images, got {} pixels", pixels.len()));
        }
        let n = pixels.len() / (28 * 28);
        // Eval mode for this forward only: the session stays in training mode.
        self.model.eval();
        let probs = no_grad(|| {
            let x = Tensor::from_vec(pixels, &[n, 1, 28, 28], &self.dev).affine(1.0 / STD[0], -MEAN[0] / STD[0]);
            self.model.forward(&x).softmax(-1)
        });
        self.model.train();
        Ok(probs.to_vec_async())
    }

    /// The model's parameters and buffers, by their PyTorch names, as
    /// readbacks in flight (what [`safetensors`] turns into the file the
    /// native examples write).
    pub fn state(&self) -> Vec<(String, Vec<usize>, PendingVec)> {
        let mut out = Vec::new();
        for (name, t) in self.model.named_parameters().into_iter().chain(self.model.named_buffers()) {
            out.push((name, t.shape().to_vec(), t.to_vec_async()));
        }
        out
    }
}

/// The safetensors bytes of `(name, shape, f32 values)` tensors.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Vec<u8>, String> {
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

#[cfg(target_arch = "wasm32")]
mod browser;

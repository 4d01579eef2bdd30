//! Image batches without gradient history: u8 pixels uploaded and converted
//! on the device, and the random augmentations of a training batch (crop +
//! flip, cutout) and per-channel normalisation. Data pipelines call these
//! instead of gpu-core's kernels, so the `data` crate needs only this
//! crate's public API; every result is a constant (no graph node).

use wgrad_gpu_core::ops::{augment, convert};
use wgrad_gpu_core::{Buffer, Layout};

use crate::trace::TraceOp;
use crate::{DType, Device, Generator, Result, Tensor};

/// The `[N, C, H, W]` of an F32 batch, or an error naming `op`.
fn batch_shape(op: &'static str, x: &Tensor) -> Result<[usize; 4]> {
    match (x.dtype(), x.shape().as_slice()) {
        (DType::F32, &[n, c, h, w]) => Ok([n, c, h, w]),
        (dtype, shape) => {
            Err(crate::Error::invalid(op, format!("expects an F32 [N, C, H, W] batch, got {dtype:?} {shape:?}")))
        }
    }
}

impl Tensor {
    /// An F32 `[N, C, H, W]` batch from `N·C·H·W` u8 pixels (item after
    /// item, planes in order), scaled to [0, 1] and then normalised per
    /// channel, `(x − mean[c]) / std[c]`, on the device: a quarter of the
    /// upload that f32 pixels would take. Up to 4 channels.
    pub fn try_from_u8_images(
        pixels: &[u8],
        shape: [usize; 4],
        mean: &[f32],
        std: &[f32],
        device: &Device,
    ) -> Result<Tensor> {
        const OP: &str = "from_u8_images";
        let scope = crate::trace::scope();
        let n: usize = shape.iter().product();
        if pixels.len() != n || mean.len() != shape[1] {
            return Err(crate::Error::invalid(
                OP,
                format!("{} pixels and {} channel means for shape {shape:?}", pixels.len(), mean.len()),
            ));
        }
        let raw = Buffer::from_bytes(device, pixels)?;
        let x = convert::u8_to_f32(&raw, n, shape[2] * shape[3], mean, std)?;
        Ok(scope.output(|| TraceOp::Opaque(OP), &[], Tensor::constant(x, Layout::contiguous(&shape), DType::F32)))
    }

    /// Random crop with `pad` zero padding (a shift of up to `pad` pixels
    /// each way) and a horizontal flip with probability `flip_p`, one
    /// decision per image, drawn from `gen` (which advances by
    /// [`Tensor::augment_counters`] of `N`), of an F32 `[N, C, H, W]` batch.
    pub fn try_random_crop_flip(&self, pad: usize, flip_p: f32, gen: &mut Generator) -> Result<Tensor> {
        let scope = crate::trace::scope();
        let s = batch_shape("crop_flip", self)?;
        let at = gen.take(augment::counters_used(s[0]));
        let x = augment::crop_flip(&self.dense_buffer(), s, pad, flip_p, gen.seed, at)?;
        let y = Tensor::constant(x, Layout::contiguous(&s), DType::F32);
        Ok(scope.output(|| TraceOp::Opaque("random_crop_flip"), &[self], y))
    }

    /// Cutout: one `size × size` square per image (clipped at the edges)
    /// set to 0, its centre drawn from `gen` (which advances by
    /// [`Tensor::augment_counters`] of `N`), of an F32 `[N, C, H, W]` batch.
    pub fn try_cutout(&self, size: usize, gen: &mut Generator) -> Result<Tensor> {
        let scope = crate::trace::scope();
        let s = batch_shape("cutout", self)?;
        let at = gen.take(augment::counters_used(s[0]));
        let x = augment::cutout(&self.dense_buffer(), s, size, gen.seed, at)?;
        Ok(scope.output(|| TraceOp::Opaque("cutout"), &[self], Tensor::constant(x, Layout::contiguous(&s), DType::F32)))
    }

    /// `(x − mean[c]) / std[c]` per channel of an F32 `[N, C, H, W]` batch,
    /// without gradient history.
    pub fn try_normalize_channels(&self, mean: &[f32], std: &[f32]) -> Result<Tensor> {
        let scope = crate::trace::scope();
        let s = batch_shape("normalize", self)?;
        let x = augment::normalize(&self.dense_buffer(), s, mean, std)?;
        let y = Tensor::constant(x, Layout::contiguous(&s), DType::F32);
        Ok(scope.output(|| TraceOp::Opaque("normalize_channels"), &[self], y))
    }

    /// Counters of a [`Generator`] one random augmentation of `images`
    /// images consumes.
    pub fn augment_counters(images: usize) -> u64 {
        augment::counters_used(images)
    }
}

//! Image augmentation of dense `[N, C, H, W]` f32 batches
//! (`shaders/augment.wgsl`): random crop with zero padding fused with a
//! random horizontal flip, cutout, and per-channel normalisation.
//!
//! # Random decisions
//!
//! Each random op draws one Philox4x32-10 block per *image*: image `i` uses
//! the four words of counter `offset + i` under `seed` (the block of
//! [`random`](super::random); [`draws`] returns it), so a call on `n` images
//! consumes [`counters_used(n)`](counters_used) = `n` counters. Words become
//! decisions with integer arithmetic plus one exact f32 comparison, so GPU and
//! CPU twin agree bit for bit:
//!
//! * [`crop_flip`]: shift `dy = w0 % (2·pad + 1) − pad`,
//!   `dx = w1 % (2·pad + 1) − pad`, flip when `unit(w2) < flip_p` (with
//!   `unit(w) = (w >> 8)·2⁻²⁴` as in `random::uniform`);
//! * [`cutout`]: centre `cy = w0 % H`, `cx = w1 % W`.
//!
//! The modulo bias is below `(2·pad + 1) / 2³²`, far under anything a
//! training run can notice.

use super::{dispatch, f32s, f32s_mut, groups, run, Kind, Params, ParamsDecl};
use crate::gpu::GpuContext;
use crate::kernels::augment as twin;
pub use crate::kernels::augment::{crop_flip_decision, cutout_box, draws};
use crate::{Buffer, Error, Result};

/// Most channels [`normalize`] takes (its means and stds live in the uniform block).
pub const MAX_NORMALIZE_CHANNELS: usize = 16;

/// Counters one random augmentation of `images` images consumes: advance
/// `offset` by this for fresh decisions with the same seed.
pub fn counters_used(images: usize) -> u64 {
    images as u64
}

/// Checks a batch shape against its buffer; returns the element count.
fn check_batch(op: &'static str, x: &Buffer, shape: [usize; 4]) -> Result<usize> {
    let n: usize = shape.iter().product();
    super::check_u32(op, n)?;
    x.check_len(op, "input", n, 4)?;
    Ok(n)
}

/// The part of the uniform block every entry point reads.
fn head(n: usize, shape: [usize; 4], seed: u64, offset: u64, size: usize, flip_p: f32) -> Params {
    Params::of(&PARAMS)
        .set_u32("n", n)
        .set_u32("channels", shape[1])
        .set_u32("h", shape[2])
        .set_u32("w", shape[3])
        .set_u32("key0", seed as u32 as usize)
        .set_u32("key1", (seed >> 32) as usize)
        .set_u32("ctr0", offset as u32 as usize)
        .set_u32("ctr1", (offset >> 32) as usize)
        .set_u32("size", size)
        .set_f32("flip_p", flip_p)
}

/// `augment.wgsl`'s `Params`: [`head`]'s members, then `normalize`'s
/// per-channel constants (zero for the other entries).
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "augment",
    fields: &[
        ("n", Kind::U32),
        ("channels", Kind::U32),
        ("h", Kind::U32),
        ("w", Kind::U32),
        ("key0", Kind::U32),
        ("key1", Kind::U32),
        ("ctr0", Kind::U32),
        ("ctr1", Kind::U32),
        ("size", Kind::U32),
        ("flip_p", Kind::F32),
        ("mean", Kind::F32x16),
        ("inv_std", Kind::F32x16),
    ],
};

/// [`head`] with `normalize`'s constants unused (zero).
fn head_only(n: usize, shape: [usize; 4], seed: u64, offset: u64, size: usize, flip_p: f32) -> Params {
    head(n, shape, seed, offset, size, flip_p).set_f32x16("mean", &[0.0; 16]).set_f32x16("inv_std", &[0.0; 16])
}

/// Random crop with zero padding, then a random horizontal flip, in one
/// pass: torchvision's `RandomCrop(H×W, padding=pad)` followed by
/// `RandomHorizontalFlip(flip_p)`, the output the size of the input.
///
/// `x` is a dense `[N, C, H, W]` batch (`shape`); image `i`'s decisions come
/// from counter `offset + i` under `seed` (module docs). `pad = 0` never
/// shifts and `flip_p = 0` never flips, `flip_p = 1` always flips.
pub fn crop_flip(x: &Buffer, shape: [usize; 4], pad: usize, flip_p: f32, seed: u64, offset: u64) -> Result<Buffer> {
    const OP: &str = "crop_flip";
    let n = check_batch(OP, x, shape)?;
    if !(0.0..=1.0).contains(&flip_p) {
        return Err(Error::invalid(OP, format!("flip probability {flip_p} must be in [0, 1]")));
    }
    if pad >= (1 << 30) {
        return Err(Error::invalid(OP, format!("padding {pad} is too large")));
    }
    let [_, c, h, w] = shape;
    let dev = x.device();
    let out = Buffer::alloc(dev, n as u64 * 4)?;
    run(
        dev,
        |g| launch(g, "crop_flip", head_only(n, shape, seed, offset, pad, flip_p), x, &out, n),
        || {
            if n == 0 {
                return;
            }
            let (xs, mut ys) = (x.host(), out.host_mut());
            let (xs, ys) = (f32s(&xs), f32s_mut(&mut ys));
            twin::crop_flip(&xs[..n], &mut ys[..n], [c, h, w], (pad, flip_p), (seed, offset));
        },
    )?;
    Ok(out)
}

/// The elementwise launch of one entry point of `augment.wgsl`.
fn launch(g: &GpuContext, entry: &'static str, params: Params, x: &Buffer, out: &Buffer, n: usize) -> Result<()> {
    dispatch(g, "augment", entry, &[], &params, &[x], &[out], groups(n, 256))
}

/// Cutout (DeVries & Taylor 2017): every channel of image `i` is zeroed on
/// the square of side `size` centred at a random pixel (clipped at the
/// borders, see [`cutout_box`]), the centre drawn from counter `offset + i`
/// under `seed`. `size = 0` copies the batch.
pub fn cutout(x: &Buffer, shape: [usize; 4], size: usize, seed: u64, offset: u64) -> Result<Buffer> {
    const OP: &str = "cutout";
    let n = check_batch(OP, x, shape)?;
    if size >= (1 << 30) {
        return Err(Error::invalid(OP, format!("square size {size} is too large")));
    }
    let [_, c, h, w] = shape;
    let dev = x.device();
    let out = Buffer::alloc(dev, n as u64 * 4)?;
    run(
        dev,
        |g| launch(g, "cutout", head_only(n, shape, seed, offset, size, 0.0), x, &out, n),
        || {
            if n == 0 {
                return;
            }
            let (xs, mut ys) = (x.host(), out.host_mut());
            let (xs, ys) = (f32s(&xs), f32s_mut(&mut ys));
            twin::cutout(&xs[..n], &mut ys[..n], [c, h, w], size, (seed, offset));
        },
    )?;
    Ok(out)
}

/// Per-channel normalisation `(x − mean[c]) / std[c]` of a dense
/// `[N, C, H, W]` batch (torchvision's `Normalize`), computed as
/// `(x − mean[c]) · (1 / std[c])` on both backends so they agree bit for bit.
/// At most [`MAX_NORMALIZE_CHANNELS`] channels.
pub fn normalize(x: &Buffer, shape: [usize; 4], mean: &[f32], std: &[f32]) -> Result<Buffer> {
    const OP: &str = "normalize";
    let n = check_batch(OP, x, shape)?;
    let c = shape[1];
    if c == 0 || c > MAX_NORMALIZE_CHANNELS || mean.len() != c || std.len() != c {
        return Err(Error::invalid(
            OP,
            format!(
                "needs one mean and one std per channel (1 to {MAX_NORMALIZE_CHANNELS}) for shape {shape:?}, got means {mean:?}, stds {std:?}"
            ),
        ));
    }
    if std.contains(&0.0) {
        return Err(Error::invalid(OP, format!("std {std:?} contains a zero")));
    }
    let mut m = [0.0f32; MAX_NORMALIZE_CHANNELS];
    let mut inv = [0.0f32; MAX_NORMALIZE_CHANNELS];
    m[..c].copy_from_slice(mean);
    for (d, s) in inv.iter_mut().zip(std) {
        *d = 1.0 / s;
    }
    let plane = shape[2] * shape[3];
    let dev = x.device();
    let out = Buffer::alloc(dev, n as u64 * 4)?;
    run(
        dev,
        |g| {
            let params = head(n, shape, 0, 0, 0, 0.0).set_f32x16("mean", &m).set_f32x16("inv_std", &inv);
            launch(g, "normalize", params, x, &out, n)
        },
        || {
            let (xs, mut ys) = (x.host(), out.host_mut());
            let (xs, ys) = (f32s(&xs), f32s_mut(&mut ys));
            twin::normalize(&xs[..n], &mut ys[..n], (plane, c), (&m, &inv));
        },
    )?;
    Ok(out)
}

//! Batch-norm kernels past the storage-binding limit. Layer and group norm
//! apply their affine part with these kernels too, so a transformer whose
//! activations are past the limit comes here. Every activation is dense
//! `[A, C, B]`, so a range of rows of A is one contiguous byte range: it is
//! copied out (buffer-to-buffer copies bind nothing), the kernels run on the
//! copies with the same per-channel statistics, weight and bias, and the
//! results are copied into place; the gradient sums of the chunks are added.
//!
//! The elementwise forward, the per-channel gradient sums and the input
//! gradient split this way: the training input gradient divides the sums by
//! the values per channel, which a chunk's kernel takes to be its own
//! count, so each chunk gets the sums scaled by its share of the batch. The
//! batch statistics come from the chunked gradient sums: `Σx` with `dy = x`
//! over a normalised input, then `Σx·(x − mean)` against `[mean; 1]`, which
//! is the sum of squared deviations (up to `mean·Σ(x − mean)`, a rounding
//! error), so no `E[x²] − E[x]²` cancellation.

use super::batch_norm::{
    batch_norm_backward, batch_norm_eval_stats, batch_norm_forward, batch_norm_grad_sums, Centre, ChannelDims, Running,
};
use super::binary::{binary, BinaryOp};
use super::chunks::{chunks, Chunk, Rows};
use super::operands::Operands;
use super::unary::{unary, UnaryOp};
use crate::gpu::GpuContext;
use crate::layout::Layout;
use crate::{Buffer, Error, Result};

/// The chunks of rows of A, and the layout of one row of the activations.
fn plan(what: &str, g: &GpuContext, d: &ChannelDims, io: Operands) -> Result<(Vec<Chunk>, Rows)> {
    let rows = Rows { row: (d.channels * d.inner) as u64 * io.size() };
    Ok((chunks(g, &format!("{what}: rows of A of {d:?}"), d.outer, &[rows.row], 1)?, rows))
}

/// The statistics stay whole; a normalised input has none.
fn sub_dims(d: &ChannelDims, rows: usize) -> ChannelDims {
    ChannelDims { outer: rows, ..*d }
}

/// [`batch_norm_forward`] chunk by chunk, into `y`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    g: &GpuContext,
    x: &Buffer,
    d: ChannelDims,
    centre: Centre,
    (weight, bias, residual): (Option<&Buffer>, Option<&Buffer>, Option<&Buffer>),
    relu: bool,
    io: Operands,
    y: &Buffer,
) -> Result<()> {
    let (cs, rows) = plan("batch_norm_forward", g, &d, io)?;
    for c in cs {
        let xc = rows.slice(g, x, c)?;
        let rc = residual.map(|r| rows.slice(g, r, c)).transpose()?;
        let yc = batch_norm_forward(&xc, sub_dims(&d, c.count), centre, weight, bias, rc.as_ref(), relu, io)?;
        rows.place(g, &yc, y, c)?;
    }
    Ok(())
}

/// [`batch_norm_grad_sums`] chunk by chunk: the chunks' sums added in order.
pub(crate) fn grad_sums(
    g: &GpuContext,
    (dy, x, relu_out): (&Buffer, &Buffer, Option<&Buffer>),
    d: ChannelDims,
    centre: Centre,
    io: Operands,
) -> Result<(Buffer, Buffer)> {
    let channels = Layout::contiguous(&[d.channels]);
    let mut total: Option<(Buffer, Buffer)> = None;
    let (cs, rows) = plan("batch_norm_grad_sums", g, &d, io)?;
    for c in cs {
        let (gc, xc) = (rows.slice(g, dy, c)?, rows.slice(g, x, c)?);
        let yc = relu_out.map(|y| rows.slice(g, y, c)).transpose()?;
        let (db, dw) = batch_norm_grad_sums(&gc, &xc, yc.as_ref(), sub_dims(&d, c.count), centre, io)?;
        total = Some(match total {
            None => (db, dw),
            Some((b, w)) => {
                let add = |s: &Buffer, p: &Buffer| Ok::<_, Error>(binary(BinaryOp::Add, s, &channels, p, &channels)?.0);
                (add(&b, &db)?, add(&w, &dw)?)
            }
        });
    }
    Ok(total.expect("at least one chunk: the caller has rows"))
}

/// `scale · v` for a `[n]` buffer.
fn scaled(v: &Buffer, n: usize, scale: f32) -> Result<Buffer> {
    unary(UnaryOp::Affine { scale, shift: 0.0 }, v, n)
}

/// [`batch_norm_stats`](super::batch_norm::batch_norm_stats) from chunked
/// gradient sums (see the module docs), written into `stats` (`[mean;
/// rstd]`) and, with `running`, the running statistics updated in place.
pub(crate) fn stats(
    g: &GpuContext,
    x: &Buffer,
    d: ChannelDims,
    (eps, running): (f32, Option<Running>),
    io: Operands,
    stats: &Buffer,
) -> Result<()> {
    let (c, m) = (d.channels, d.count() as f32);
    let (sum, _) = grad_sums(g, (x, x, None), d, Centre::Normalized, io)?;
    let mean = scaled(&sum, c, 1.0 / m)?;
    // [mean; 1]: x̂ = x − mean, so Σdy'·x̂ with dy = x is Σx·(x − mean).
    let centred = Buffer::alloc(x.device(), 2 * c as u64 * 4)?;
    g.copy_range(mean.wgpu(), 0, centred.wgpu(), 0, c as u64 * 4)?;
    let ones = super::fill::fill(x.device(), c, 1.0)?;
    g.copy_range(ones.wgpu(), 0, centred.wgpu(), c as u64 * 4, c as u64 * 4)?;
    let (_, m2) = grad_sums(g, (x, x, None), d, Centre::Stats(&centred), io)?;
    let batch = batch_norm_eval_stats(&mean, &scaled(&m2, c, 1.0 / m)?, c, eps)?;
    g.copy_range(batch.wgpu(), 0, stats.wgpu(), 0, 2 * c as u64 * 4)?;
    if let Some(r) = running {
        let whole = Layout::contiguous(&[c]);
        let mix = |old: &Buffer, batch: &Buffer, dst: &Buffer| {
            let (kept, added) = (scaled(old, c, 1.0 - r.momentum)?, scaled(batch, c, r.momentum)?);
            let (sum, _) = binary(BinaryOp::Add, &kept, &whole, &added, &whole)?;
            g.copy_range(sum.wgpu(), 0, dst.wgpu(), 0, c as u64 * 4)
        };
        // The mix is computed before the copy over the old values is recorded.
        mix(r.mean, &mean, r.mean)?;
        // The running variance is the unbiased one, as PyTorch's.
        mix(r.var, &scaled(&m2, c, 1.0 / (m - 1.0))?, r.var)?;
    }
    Ok(())
}

/// [`batch_norm_backward`] chunk by chunk, into `dx` (and `dres`). With
/// the training `sums`, each chunk gets them scaled by its share of the
/// batch, as its kernel divides by its own count.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    g: &GpuContext,
    (dy, x, relu_out): (&Buffer, &Buffer, Option<&Buffer>),
    d: ChannelDims,
    centre: Centre,
    (weight, sums): (Option<&Buffer>, Option<(&Buffer, &Buffer)>),
    io: Operands,
    (dx, dres): (&Buffer, Option<&Buffer>),
) -> Result<()> {
    let (cs, rows) = plan("batch_norm_backward", g, &d, io)?;
    for c in cs {
        let (gc, xc) = (rows.slice(g, dy, c)?, rows.slice(g, x, c)?);
        let yc = relu_out.map(|y| rows.slice(g, y, c)).transpose()?;
        let dims = sub_dims(&d, c.count);
        let share = c.count as f32 / d.outer as f32;
        let part_sums = match sums {
            Some((db, dw)) => Some((scaled(db, d.channels, share)?, scaled(dw, d.channels, share)?)),
            None => None,
        };
        let part_sums = part_sums.as_ref().map(|(a, b)| (a, b));
        let residual = dres.is_some();
        let (dxc, dresc) = batch_norm_backward(&gc, &xc, yc.as_ref(), dims, centre, weight, part_sums, residual, io)?;
        rows.place(g, &dxc, dx, c)?;
        if let (Some(part), Some(dst)) = (dresc, dres) {
            rows.place(g, &part, dst, c)?;
        }
    }
    Ok(())
}

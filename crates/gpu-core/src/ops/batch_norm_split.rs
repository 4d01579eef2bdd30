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
//! error), so no `E[x²] − E[x]²` cancellation (`batch_norm.rs` composes
//! them). This file runs a pass it is given on the chunks; it names no op
//! of its own family.

use super::binary::{binary, BinaryOp};
use super::chunks::{chunks, Chunk, Rows};
use super::operands::Operands;
use super::unary::{unary, UnaryOp};
use crate::gpu::GpuContext;
use crate::kernels::batch_norm::ChannelDims;
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

/// `pass` (batch norm's elementwise forward of a chunk: its x, its
/// residual rows and sizes) chunk by chunk, into `y`.
pub(crate) fn forward(
    g: &GpuContext,
    (x, residual): (&Buffer, Option<&Buffer>),
    d: ChannelDims,
    io: Operands,
    y: &Buffer,
    pass: impl Fn(&Buffer, Option<&Buffer>, ChannelDims) -> Result<Buffer>,
) -> Result<()> {
    let (cs, rows) = plan("batch_norm_forward", g, &d, io)?;
    for c in cs {
        let xc = rows.slice(g, x, c)?;
        let rc = residual.map(|r| rows.slice(g, r, c)).transpose()?;
        let yc = pass(&xc, rc.as_ref(), sub_dims(&d, c.count))?;
        rows.place(g, &yc, y, c)?;
    }
    Ok(())
}

/// `pass` (the per-channel gradient sums of a chunk: its dy, x, ReLU
/// output and sizes) chunk by chunk, the chunks' sums added in order.
pub(crate) fn grad_sums(
    g: &GpuContext,
    (dy, x, relu_out): (&Buffer, &Buffer, Option<&Buffer>),
    d: ChannelDims,
    io: Operands,
    pass: impl Fn(&Buffer, &Buffer, Option<&Buffer>, ChannelDims) -> Result<(Buffer, Buffer)>,
) -> Result<(Buffer, Buffer)> {
    let channels = Layout::contiguous(&[d.channels]);
    let mut total: Option<(Buffer, Buffer)> = None;
    let (cs, rows) = plan("batch_norm_grad_sums", g, &d, io)?;
    for c in cs {
        let (gc, xc) = (rows.slice(g, dy, c)?, rows.slice(g, x, c)?);
        let yc = relu_out.map(|y| rows.slice(g, y, c)).transpose()?;
        let (db, dw) = pass(&gc, &xc, yc.as_ref(), sub_dims(&d, c.count))?;
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
pub(crate) fn scaled(v: &Buffer, n: usize, scale: f32) -> Result<Buffer> {
    unary(UnaryOp::Affine { scale, shift: 0.0 }, v, n)
}

/// A chunk's input gradient and, with a residual, the residual's.
type Grads = (Buffer, Option<Buffer>);

/// `pass` (batch norm's input gradient of a chunk: its dy, x, ReLU output,
/// sizes and training sums) chunk by chunk, into `dx` (and `dres`). With
/// the training `sums`, each chunk gets them scaled by its share of the
/// batch, as its kernel divides by its own count.
pub(crate) fn backward(
    g: &GpuContext,
    (dy, x, relu_out): (&Buffer, &Buffer, Option<&Buffer>),
    (d, sums): (ChannelDims, Option<(&Buffer, &Buffer)>),
    io: Operands,
    (dx, dres): (&Buffer, Option<&Buffer>),
    pass: impl Fn(&Buffer, &Buffer, Option<&Buffer>, ChannelDims, Option<(&Buffer, &Buffer)>) -> Result<Grads>,
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
        let (dxc, dresc) = pass(&gc, &xc, yc.as_ref(), dims, part_sums)?;
        rows.place(g, &dxc, dx, c)?;
        if let (Some(part), Some(dst)) = (dresc, dres) {
            rows.place(g, &part, dst, c)?;
        }
    }
    Ok(())
}

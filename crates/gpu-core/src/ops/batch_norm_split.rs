//! Batch-norm kernels past the storage-binding limit. Layer and group norm
//! apply their affine part with these kernels too, so a transformer whose
//! activations are past the limit comes here. Every activation is dense
//! `[A, C, B]`, so a range of rows of A is one contiguous byte range: it is
//! copied out (buffer-to-buffer copies bind nothing), the kernels run on the
//! copies with the same per-channel statistics, weight and bias, and the
//! results are copied into place; the gradient sums of the chunks are added.
//!
//! The elementwise forward, the per-channel gradient sums and the affine
//! input gradient split this way. The training input gradient (its formula
//! divides by the values per channel of the whole batch) and the batch
//! statistics do not: those still return `LimitExceeded`.

use super::batch_norm::{batch_norm_backward, batch_norm_forward, batch_norm_grad_sums, Centre, ChannelDims};
use super::binary::{binary, BinaryOp};
use super::operands::Operands;
use crate::gpu::GpuContext;
use crate::layout::Layout;
use crate::{Buffer, Error, Result};

/// Rows of A per chunk, and the chunks `(first row, rows)`.
fn chunks(op: &'static str, g: &GpuContext, d: &ChannelDims, io: Operands) -> Result<Vec<(usize, usize)>> {
    let row = (d.channels * d.inner) as u64 * io.size();
    let limit = g.binding_limit();
    // Copies move whole 4-byte words: with f16 rows of odd length, chunks
    // start on even rows.
    let step = if row.is_multiple_of(4) { 1 } else { 2 };
    let per = (limit.saturating_sub(16) / row.max(1)) as usize / step * step;
    if per == 0 {
        return Err(Error::LimitExceeded {
            what: format!("{op}: rows of {} values ({d:?})", d.channels * d.inner),
            needed: row * step as u64,
            limit: "max_storage_buffer_binding_size",
            allowed: limit,
        });
    }
    Ok((0..d.outer).step_by(per).map(|a| (a, per.min(d.outer - a))).collect())
}

/// Bytes of `rows` rows, rounded up to whole words (buffers are backed in
/// multiples of 16 bytes, so the rounding stays inside them).
fn bytes(d: &ChannelDims, rows: usize, io: Operands) -> u64 {
    ((rows * d.channels * d.inner) as u64 * io.size()).next_multiple_of(4)
}

/// Rows `[a, a + rows)` of a dense `[A, C, B]` buffer, copied into one of their own.
fn slice(g: &GpuContext, buf: &Buffer, d: &ChannelDims, (a, rows): (usize, usize), io: Operands) -> Result<Buffer> {
    let part = Buffer::alloc(buf.device(), bytes(d, rows, io))?;
    g.copy_range(buf.wgpu(), bytes(d, a, io), part.wgpu(), 0, bytes(d, rows, io))?;
    Ok(part)
}

/// Copies a chunk's result into its rows of `dst`.
fn place(
    g: &GpuContext,
    part: &Buffer,
    dst: &Buffer,
    d: &ChannelDims,
    (a, rows): (usize, usize),
    io: Operands,
) -> Result<()> {
    g.copy_range(part.wgpu(), 0, dst.wgpu(), bytes(d, a, io), bytes(d, rows, io))
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
    for c in chunks("batch_norm_forward", g, &d, io)? {
        let xc = slice(g, x, &d, c, io)?;
        let rc = residual.map(|r| slice(g, r, &d, c, io)).transpose()?;
        let yc = batch_norm_forward(&xc, sub_dims(&d, c.1), centre, weight, bias, rc.as_ref(), relu, io)?;
        place(g, &yc, y, &d, c, io)?;
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
    for c in chunks("batch_norm_grad_sums", g, &d, io)? {
        let (gc, xc) = (slice(g, dy, &d, c, io)?, slice(g, x, &d, c, io)?);
        let yc = relu_out.map(|y| slice(g, y, &d, c, io)).transpose()?;
        let (db, dw) = batch_norm_grad_sums(&gc, &xc, yc.as_ref(), sub_dims(&d, c.1), centre, io)?;
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

/// [`batch_norm_backward`] without the training sums (the affine input
/// gradient) chunk by chunk, into `dx` (and `dres`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    g: &GpuContext,
    (dy, x, relu_out): (&Buffer, &Buffer, Option<&Buffer>),
    d: ChannelDims,
    centre: Centre,
    weight: Option<&Buffer>,
    io: Operands,
    (dx, dres): (&Buffer, Option<&Buffer>),
) -> Result<()> {
    for c in chunks("batch_norm_backward", g, &d, io)? {
        let (gc, xc) = (slice(g, dy, &d, c, io)?, slice(g, x, &d, c, io)?);
        let yc = relu_out.map(|y| slice(g, y, &d, c, io)).transpose()?;
        let dims = sub_dims(&d, c.1);
        let (dxc, dresc) = batch_norm_backward(&gc, &xc, yc.as_ref(), dims, centre, weight, None, dres.is_some(), io)?;
        place(g, &dxc, dx, &d, c, io)?;
        if let (Some(part), Some(dst)) = (dresc, dres) {
            place(g, &part, dst, &d, c, io)?;
        }
    }
    Ok(())
}

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
use super::chunks::{chunks, Chunk, Rows};
use super::operands::Operands;
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
    let (cs, rows) = plan("batch_norm_backward", g, &d, io)?;
    for c in cs {
        let (gc, xc) = (rows.slice(g, dy, c)?, rows.slice(g, x, c)?);
        let yc = relu_out.map(|y| rows.slice(g, y, c)).transpose()?;
        let dims = sub_dims(&d, c.count);
        let (dxc, dresc) = batch_norm_backward(&gc, &xc, yc.as_ref(), dims, centre, weight, None, dres.is_some(), io)?;
        rows.place(g, &dxc, dx, c)?;
        if let (Some(part), Some(dst)) = (dresc, dres) {
            rows.place(g, &part, dst, c)?;
        }
    }
    Ok(())
}

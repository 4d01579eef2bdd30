//! Convolutions past the storage-binding limit. The implicit GEMM gathers
//! its B operand from the whole NCHW tensor, which the matmul planner does
//! not cut, so a convolution whose input, output or gradient is past the
//! limit runs on chunks of images instead (`chunks.rs`): each chunk's
//! images are copied out, convolved, and the result copied into place; the
//! weight gradient adds the chunks' sums. The weight stays whole and must
//! fit. The caller (`conv.rs`) passes the convolution to run on a chunk,
//! so this file names no op of its own family.

use super::binary::{binary, BinaryOp};
use super::chunks::{chunks, Rows};
use super::operands::Operands;
use crate::gpu::GpuContext;
use crate::kernels::conv::ConvGeometry;
use crate::layout::Layout;
use crate::{Buffer, Result};

/// Bytes of one image of `channels` planes of `plane` values stored as `io`.
fn image(channels: usize, plane: usize, io: Operands) -> Rows {
    Rows { row: (channels * plane) as u64 * io.size() }
}

/// `op` (an image-wise convolution of `batch` images) on chunks of images:
/// `input` has `rows.0` bytes an image, the result `rows.1`.
fn per_image(
    g: &GpuContext,
    what: &str,
    input: &Buffer,
    (batch, rows): (usize, (Rows, Rows)),
    op: impl Fn(&Buffer, usize) -> Result<Buffer>,
) -> Result<Buffer> {
    let (ir, or) = rows;
    let out = Buffer::alloc(input.device(), batch as u64 * or.row)?;
    for c in chunks(g, what, batch, &[ir.row, or.row], 1)? {
        or.place(g, &op(&ir.slice(g, input, c)?, c.count)?, &out, c)?;
    }
    Ok(out)
}

/// `conv` (the forward convolution of a chunk's images, given their
/// geometry) on chunks of images; operands stored as `io`, the result as
/// `out_io`.
pub(crate) fn forward(
    g: &GpuContext,
    (io, out_io): (Operands, Operands),
    x: &Buffer,
    out_channels: usize,
    geo: &ConvGeometry,
    conv: impl Fn(&Buffer, &ConvGeometry) -> Result<Buffer>,
) -> Result<Buffer> {
    let xr = image(geo.channels, geo.in_h * geo.in_w, io);
    let yr = image(out_channels, geo.out_h() * geo.out_w(), out_io);
    per_image(g, "conv2d: one image of the input or output", x, (geo.batch, (xr, yr)), |xc, n| {
        conv(xc, &ConvGeometry { batch: n, ..*geo })
    })
}

/// `grad` (the input gradient of a chunk's images) on chunks of images.
pub(crate) fn input_grad(
    g: &GpuContext,
    (io, out_io): (Operands, Operands),
    gy: &Buffer,
    out_channels: usize,
    geo: &ConvGeometry,
    grad: impl Fn(&Buffer, &ConvGeometry) -> Result<Buffer>,
) -> Result<Buffer> {
    let gr = image(out_channels, geo.out_h() * geo.out_w(), io);
    let dr = image(geo.channels, geo.in_h * geo.in_w, out_io);
    per_image(g, "conv2d_input_grad: one image of the gradients", gy, (geo.batch, (gr, dr)), |gc, n| {
        grad(gc, &ConvGeometry { batch: n, ..*geo })
    })
}

/// `grad` (a chunk's f32 weight gradient, given its output gradient and
/// input) on chunks of images, their sums added in order.
pub(crate) fn weight_grad(
    g: &GpuContext,
    io: Operands,
    (gy, x): (&Buffer, &Buffer),
    out_channels: usize,
    (geo, n_w): (&ConvGeometry, usize),
    grad: impl Fn(&Buffer, &Buffer, &ConvGeometry) -> Result<Buffer>,
) -> Result<Buffer> {
    let gr = image(out_channels, geo.out_h() * geo.out_w(), io);
    let xr = image(geo.channels, geo.in_h * geo.in_w, io);
    // Each image's product is summed afterwards: n_w values an image.
    let rows = [gr.row, xr.row, n_w as u64 * 4];
    let whole = Layout::contiguous(&[n_w]);
    let mut total: Option<Buffer> = None;
    for c in chunks(g, "conv2d_weight_grad: one image of the gradients", geo.batch, &rows, 1)? {
        let sub = ConvGeometry { batch: c.count, ..*geo };
        let part = grad(&gr.slice(g, gy, c)?, &xr.slice(g, x, c)?, &sub)?;
        total = Some(match total {
            None => part,
            Some(t) => binary(BinaryOp::Add, &t, &whole, &part, &whole)?.0,
        });
    }
    Ok(total.expect("at least one image: the caller has a batch"))
}

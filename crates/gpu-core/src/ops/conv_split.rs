//! Convolutions past the storage-binding limit. The implicit GEMM gathers
//! its B operand from the whole NCHW tensor, which the matmul planner does
//! not cut, so a convolution whose input, output or gradient is past the
//! limit runs on chunks of images instead (`chunks.rs`): each chunk's
//! images are copied out, convolved, and the result copied into place; the
//! weight gradient adds the chunks' sums. The weight stays whole and must
//! fit.

use super::binary::{binary, BinaryOp};
use super::chunks::{chunks, Rows};
use super::conv::{conv2d_epilogue, conv2d_input_grad_epilogue, conv2d_weight_grad_output, ConvGeometry};
use super::matmul::{Epilogue, MatmulConfig};
use super::operands::Operands;
use crate::gpu::GpuContext;
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

/// [`conv2d_epilogue`] on chunks of images.
pub(crate) fn forward(
    g: &GpuContext,
    (cfg, epi): (MatmulConfig, &Epilogue),
    x: &Buffer,
    w: &Buffer,
    out_channels: usize,
    geo: &ConvGeometry,
) -> Result<Buffer> {
    let xr = image(geo.channels, geo.in_h * geo.in_w, cfg.operands);
    let yr = image(out_channels, geo.out_h() * geo.out_w(), epi.output);
    per_image(g, "conv2d: one image of the input or output", x, (geo.batch, (xr, yr)), |xc, n| {
        conv2d_epilogue(cfg, epi, xc, w, out_channels, &ConvGeometry { batch: n, ..*geo })
    })
}

/// [`conv2d_input_grad_epilogue`] on chunks of images.
pub(crate) fn input_grad(
    g: &GpuContext,
    (cfg, epi): (MatmulConfig, &Epilogue),
    gy: &Buffer,
    w: &Buffer,
    out_channels: usize,
    geo: &ConvGeometry,
) -> Result<Buffer> {
    let gr = image(out_channels, geo.out_h() * geo.out_w(), cfg.operands);
    let dr = image(geo.channels, geo.in_h * geo.in_w, epi.output);
    per_image(g, "conv2d_input_grad: one image of the gradients", gy, (geo.batch, (gr, dr)), |gc, n| {
        conv2d_input_grad_epilogue(cfg, epi, gc, w, out_channels, &ConvGeometry { batch: n, ..*geo })
    })
}

/// The f32 [`conv2d_weight_grad_output`] on chunks of images, their sums added in order.
pub(crate) fn weight_grad(
    g: &GpuContext,
    cfg: MatmulConfig,
    (gy, x): (&Buffer, &Buffer),
    out_channels: usize,
    geo: &ConvGeometry,
    n_w: usize,
) -> Result<Buffer> {
    let gr = image(out_channels, geo.out_h() * geo.out_w(), cfg.operands);
    let xr = image(geo.channels, geo.in_h * geo.in_w, cfg.operands);
    // Each image's product is summed afterwards: n_w values an image.
    let rows = [gr.row, xr.row, n_w as u64 * 4];
    let whole = Layout::contiguous(&[n_w]);
    let mut total: Option<Buffer> = None;
    for c in chunks(g, "conv2d_weight_grad: one image of the gradients", geo.batch, &rows, 1)? {
        let sub = ConvGeometry { batch: c.count, ..*geo };
        let part = conv2d_weight_grad_output(
            cfg,
            Operands::F32,
            &gr.slice(g, gy, c)?,
            &xr.slice(g, x, c)?,
            out_channels,
            &sub,
        )?;
        total = Some(match total {
            None => part,
            Some(t) => binary(BinaryOp::Add, &t, &whole, &part, &whole)?.0,
        });
    }
    Ok(total.expect("at least one image: the caller has a batch"))
}

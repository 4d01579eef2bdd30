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

/// Whether a convolution with these per-image tensor sizes (bytes of all
/// images) needs chunks on `g`.
pub(crate) fn needed(g: &GpuContext, bytes: &[u64]) -> bool {
    bytes.iter().any(|&b| b > g.binding_limit())
}

/// Bytes of one image of `channels` planes of `plane` values stored as `io`.
fn image(channels: usize, plane: usize, io: Operands) -> Rows {
    Rows { row: (channels * plane) as u64 * io.size() }
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
    let (xr, yr) = (
        image(geo.channels, geo.in_h * geo.in_w, cfg.operands),
        image(out_channels, geo.out_h() * geo.out_w(), epi.output),
    );
    let y = Buffer::alloc(x.device(), geo.batch as u64 * yr.row)?;
    for c in chunks(g, "conv2d: one image of the input or output", geo.batch, &[xr.row, yr.row], 1)? {
        let sub = ConvGeometry { batch: c.count, ..*geo };
        let part = conv2d_epilogue(cfg, epi, &xr.slice(g, x, c)?, w, out_channels, &sub)?;
        yr.place(g, &part, &y, c)?;
    }
    Ok(y)
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
    let dx = Buffer::alloc(gy.device(), geo.batch as u64 * dr.row)?;
    for c in chunks(g, "conv2d_input_grad: one image of the gradients", geo.batch, &[gr.row, dr.row], 1)? {
        let sub = ConvGeometry { batch: c.count, ..*geo };
        let part = conv2d_input_grad_epilogue(cfg, epi, &gr.slice(g, gy, c)?, w, out_channels, &sub)?;
        dr.place(g, &part, &dx, c)?;
    }
    Ok(dx)
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

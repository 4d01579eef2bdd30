//! Chunks of leading rows (images, batch·heads, rows of activations) of
//! dense tensors, for ops whose kernels bind their tensors whole: past the
//! storage-binding limit they run on copies of one chunk of rows at a time
//! (buffer-to-buffer copies bind nothing) and copy the results into place.
//! Used by `attention_split.rs`, `batch_norm_split.rs`, `conv_split.rs` and,
//! through [`by_rows`], pooling and interpolation.

use crate::gpu::GpuContext;
use crate::{Buffer, Device, Error, Result};

/// Rows `[first, first + count)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chunk {
    pub first: usize,
    pub count: usize,
}

/// Chunks of `total` rows, as many rows each as the binding limit allows
/// for the widest of the tensors' `row_bytes`, and a multiple of `unit`
/// rows. Copies move whole 4-byte words, so when a row is not a whole
/// number of words chunks start on even rows. `what` names the op and its
/// rows for the error when not even `unit` rows fit.
pub(crate) fn chunks(g: &GpuContext, what: &str, total: usize, row_bytes: &[u64], unit: usize) -> Result<Vec<Chunk>> {
    let limit = g.binding_limit();
    let widest = row_bytes.iter().copied().max().unwrap_or(1).max(1);
    let odd = row_bytes.iter().any(|b| !b.is_multiple_of(4));
    let step = if odd && unit % 2 == 1 { 2 * unit } else { unit };
    let per = (limit.saturating_sub(16) / widest) as usize / step * step;
    if per == 0 {
        return Err(Error::LimitExceeded {
            what: format!("{what} ({widest} bytes a row, {step} rows at least)"),
            needed: widest * step as u64,
            limit: "max_storage_buffer_binding_size",
            allowed: limit,
        });
    }
    Ok((0..total).step_by(per).map(|first| Chunk { first, count: per.min(total - first) }).collect())
}

/// A dense tensor of rows of `row` bytes.
#[derive(Clone, Copy)]
pub(crate) struct Rows {
    pub row: u64,
}

impl Rows {
    /// Bytes of `rows` rows, rounded up to whole words (buffers are backed
    /// in multiples of 16 bytes, so the rounding stays inside them).
    fn bytes(self, rows: usize) -> u64 {
        (rows as u64 * self.row).next_multiple_of(4)
    }

    /// A buffer for a chunk's rows (a result to [`place`](Self::place)).
    pub fn alloc(self, dev: &Device, c: Chunk) -> Result<Buffer> {
        Buffer::alloc(dev, self.bytes(c.count))
    }

    /// The chunk's rows of `buf`, copied into a buffer of their own.
    pub fn slice(self, g: &GpuContext, buf: &Buffer, c: Chunk) -> Result<Buffer> {
        let part = Buffer::alloc(buf.device(), self.bytes(c.count))?;
        g.copy_range(buf.wgpu(), self.bytes(c.first), part.wgpu(), 0, self.bytes(c.count))?;
        Ok(part)
    }

    /// Copies a chunk's result into its rows of `dst`.
    pub fn place(self, g: &GpuContext, part: &Buffer, dst: &Buffer, c: Chunk) -> Result<()> {
        g.copy_range(part.wgpu(), 0, dst.wgpu(), self.bytes(c.first), self.bytes(c.count))
    }
}

/// Runs `launch(rows, inputs, outputs)` on chunks of the `total` leading
/// rows (images, planes) that dense `inputs` and `outputs` each hold the
/// same number of bytes of, on copies of each chunk, and copies the
/// results into place: the path past the binding limit of a kernel that
/// binds its tensors whole and treats its rows independently. `what`
/// names the op and its rows for the error when not even one row fits.
pub(crate) fn by_rows(
    g: &GpuContext,
    what: &str,
    total: usize,
    inputs: &[&Buffer],
    outputs: &[&Buffer],
    mut launch: impl FnMut(usize, &[&Buffer], &[&Buffer]) -> Result<()>,
) -> Result<()> {
    let rows: Vec<Rows> = inputs.iter().chain(outputs).map(|b| Rows { row: b.len_bytes() / total as u64 }).collect();
    let sizes: Vec<u64> = rows.iter().map(|r| r.row).collect();
    let (in_rows, out_rows) = rows.split_at(inputs.len());
    for c in chunks(g, what, total, &sizes, 1)? {
        let ins = inputs.iter().zip(in_rows).map(|(b, r)| r.slice(g, b, c)).collect::<Result<Vec<_>>>()?;
        let outs = out_rows.iter().map(|r| r.alloc(inputs[0].device(), c)).collect::<Result<Vec<_>>>()?;
        let (ins_ref, outs_ref): (Vec<&Buffer>, Vec<&Buffer>) = (ins.iter().collect(), outs.iter().collect());
        launch(c.count, &ins_ref, &outs_ref)?;
        for ((part, dst), r) in outs.iter().zip(outputs).zip(out_rows) {
            r.place(g, part, dst, c)?;
        }
    }
    Ok(())
}

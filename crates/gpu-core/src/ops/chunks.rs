//! Chunks of leading rows (images, batch·heads, rows of activations) of
//! dense tensors, for ops whose kernels bind their tensors whole: past the
//! storage-binding limit they run on copies of one chunk of rows at a time
//! (buffer-to-buffer copies bind nothing) and copy the results into place.
//! Used by `attention_split.rs`, `batch_norm_split.rs` and `conv_split.rs`.

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

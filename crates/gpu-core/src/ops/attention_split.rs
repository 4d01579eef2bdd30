//! Attention past the storage-binding limit: the fused kernels bind q, k, v,
//! the output and their gradients whole, so a call whose tensors are past
//! the limit runs on chunks of batch·heads instead. Every tensor is dense
//! `[B·H, rows, width]`, so a chunk's slice is one contiguous byte range:
//! it is copied out (buffer-to-buffer copies bind nothing), the kernels run
//! on the small copies, and the chunk's results are copied into place. A
//! mask with batch or head strides needs the batch and head of each row, so
//! its chunks are whole batch entries, each with its slice of the mask.
//!
//! Chunking costs one extra read and write of every tensor; work that fits
//! never comes here.

use super::attention::{attention_backward_io, attention_forward_io, AttnDims, AttnMask};
use super::operands::Operands;
use crate::gpu::GpuContext;
use crate::{Buffer, Error, Result};

/// Consecutive batch·heads `[first, first + count)` and their sizes.
struct Chunk {
    first: usize,
    count: usize,
    dims: AttnDims,
}

/// Bytes per batch·head of each dense tensor of a call (q, k, v, out, lse).
fn per_bh(dims: &AttnDims, io: Operands) -> [u64; 5] {
    let AttnDims { lq, lk, d, dv, .. } = *dims;
    let es = io.size();
    [(lq * d) as u64 * es, (lk * d) as u64 * es, (lk * dv) as u64 * es, (lq * dv) as u64 * es, lq as u64 * 4]
}

/// The chunks, as large as the binding limit allows.
fn chunks(
    op: &'static str,
    g: &GpuContext,
    dims: &AttnDims,
    mask: Option<AttnMask>,
    io: Operands,
) -> Result<Vec<Chunk>> {
    let limit = g.binding_limit();
    let widest = per_bh(dims, io).into_iter().max().unwrap_or(1).max(1);
    // A mask that varies by batch or head: whole batch entries.
    let unit = match mask {
        Some((_, s)) if s[0] != 0 || s[1] != 0 => dims.heads,
        _ => 1,
    };
    let per = (limit / widest) as usize / unit * unit;
    let mask_fits = |count: usize| match mask {
        Some((_, s)) if unit > 1 => mask_span(dims, s, count / unit) * 4 <= limit,
        _ => true,
    };
    if per == 0 || !mask_fits(per) {
        let what = if unit > 1 { "one batch entry of" } else { "one batch·head of" };
        return Err(Error::LimitExceeded {
            what: format!("{op}: {what} q, k, v or the output ({widest} bytes a head; {dims:?})"),
            needed: widest * unit as u64,
            limit: "max_storage_buffer_binding_size",
            allowed: limit,
        });
    }
    Ok((0..dims.bh())
        .step_by(per)
        .map(|first| {
            let count = per.min(dims.bh() - first);
            let (batch, heads) = if unit > 1 { (count / unit, dims.heads) } else { (count, 1) };
            Chunk { first, count, dims: AttnDims { batch, heads, ..*dims } }
        })
        .collect())
}

/// Elements of a mask with strides `s` that `batches` batch entries reach.
fn mask_span(dims: &AttnDims, s: [usize; 4], batches: usize) -> u64 {
    let ext = [batches, dims.heads, dims.lq, dims.lk];
    ext.iter().zip(s).map(|(&n, s)| (n.max(1) - 1) * s).sum::<usize>() as u64 + 1
}

/// A chunk's rows of a dense tensor with `per` bytes per batch·head, copied
/// into a buffer of its own.
fn slice(g: &GpuContext, buf: &Buffer, c: &Chunk, per: u64) -> Result<Buffer> {
    let part = Buffer::alloc(buf.device(), c.count as u64 * per)?;
    g.copy_range(buf.wgpu(), c.first as u64 * per, part.wgpu(), 0, c.count as u64 * per)?;
    Ok(part)
}

/// Copies a chunk's result into its rows of `dst`.
fn place(g: &GpuContext, part: &Buffer, dst: &Buffer, c: &Chunk, per: u64) -> Result<()> {
    g.copy_range(part.wgpu(), 0, dst.wgpu(), c.first as u64 * per, c.count as u64 * per)
}

/// The chunk's mask: the same buffer for a mask shared by every batch
/// entry, else a copy of the chunk's batch entries' part.
fn chunk_mask(g: &GpuContext, mask: AttnMask, c: &Chunk, dims: &AttnDims) -> Result<(Buffer, [usize; 4])> {
    let (m, s) = mask;
    if s[0] == 0 && s[1] == 0 {
        return Ok((m.clone(), s));
    }
    let bytes = mask_span(dims, s, c.dims.batch) * 4;
    let part = Buffer::alloc(m.device(), bytes)?;
    g.copy_range(m.wgpu(), (c.first / dims.heads * s[0]) as u64 * 4, part.wgpu(), 0, bytes)?;
    Ok((part, s))
}

/// Arguments shared by both passes.
pub(crate) struct Call<'a> {
    pub q: &'a Buffer,
    pub k: &'a Buffer,
    pub v: &'a Buffer,
    pub mask: Option<AttnMask<'a>>,
    pub dims: AttnDims,
    pub causal: bool,
    pub scale: f32,
    pub io: Operands,
}

/// [`attention_forward_io`] chunk by chunk, into `out` and `lse`.
pub(crate) fn forward(g: &GpuContext, a: &Call, out: &Buffer, lse: &Buffer) -> Result<()> {
    let [pq, pk, pv, po, pl] = per_bh(&a.dims, a.io);
    for c in chunks("attention_forward", g, &a.dims, a.mask, a.io)? {
        let (q, k, v) = (slice(g, a.q, &c, pq)?, slice(g, a.k, &c, pk)?, slice(g, a.v, &c, pv)?);
        let m = a.mask.map(|m| chunk_mask(g, m, &c, &a.dims)).transpose()?;
        let m = m.as_ref().map(|(b, s)| (b, *s));
        let (o, l) = attention_forward_io(&q, &k, &v, m, c.dims, a.causal, a.scale, a.io)?;
        place(g, &o, out, &c, po)?;
        place(g, &l, lse, &c, pl)?;
    }
    Ok(())
}

/// [`attention_backward_io`] chunk by chunk, into `dq`, `dk` and `dv`.
pub(crate) fn backward(
    g: &GpuContext,
    a: &Call,
    (out, lse, dout): (&Buffer, &Buffer, &Buffer),
    (dq, dk, dv): (&Buffer, &Buffer, &Buffer),
) -> Result<()> {
    let [pq, pk, pv, po, pl] = per_bh(&a.dims, a.io);
    for c in chunks("attention_backward", g, &a.dims, a.mask, a.io)? {
        let (q, k, v) = (slice(g, a.q, &c, pq)?, slice(g, a.k, &c, pk)?, slice(g, a.v, &c, pv)?);
        let (o, l, go) = (slice(g, out, &c, po)?, slice(g, lse, &c, pl)?, slice(g, dout, &c, po)?);
        let m = a.mask.map(|m| chunk_mask(g, m, &c, &a.dims)).transpose()?;
        let m = m.as_ref().map(|(b, s)| (b, *s));
        let (gq, gk, gv) = attention_backward_io(&q, &k, &v, &o, &l, &go, m, c.dims, a.causal, a.scale, a.io)?;
        place(g, &gq, dq, &c, pq)?;
        place(g, &gk, dk, &c, pk)?;
        place(g, &gv, dv, &c, pv)?;
    }
    Ok(())
}

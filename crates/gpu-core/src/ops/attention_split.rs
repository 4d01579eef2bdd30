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

use super::chunks::{chunks, Chunk, Rows};
use super::operands::Operands;
use crate::gpu::GpuContext;
use crate::kernels::attention::AttnDims;
use crate::{Buffer, Error, Result};

/// A mask and its strides: `attention::AttnMask`, which the caller passes
/// (this file names no op of its own family: `attention.rs` calls it, and
/// hands it the pass to run on each chunk).
type AttnMask<'a> = (&'a Buffer, [usize; 4]);

/// Each dense tensor of a call by batch·head (q, k, v, out, lse).
fn per_bh(dims: &AttnDims, io: Operands) -> [Rows; 5] {
    let AttnDims { lq, lk, d, dv, .. } = *dims;
    let es = io.size();
    [(lq * d) as u64 * es, (lk * d) as u64 * es, (lk * dv) as u64 * es, (lq * dv) as u64 * es, lq as u64 * 4]
        .map(|row| Rows { row })
}

/// The chunks of batch·heads, as large as the binding limit allows, with
/// each chunk's sizes.
fn plan(
    op: &'static str,
    g: &GpuContext,
    dims: &AttnDims,
    mask: Option<AttnMask>,
    io: Operands,
) -> Result<Vec<(Chunk, AttnDims)>> {
    // A mask that varies by batch or head: whole batch entries.
    let unit = match mask {
        Some((_, s)) if s[0] != 0 || s[1] != 0 => dims.heads,
        _ => 1,
    };
    let rows = per_bh(dims, io).map(|r| r.row);
    let one = if unit > 1 { "batch entry" } else { "batch·head" };
    let cs = chunks(g, &format!("{op}: one {one} of q, k, v or the output ({dims:?})"), dims.bh(), &rows, unit)?;
    if let Some((_, s)) = mask.filter(|_| unit > 1) {
        let bytes = mask_span(dims, s, cs[0].count / unit) * 4;
        if bytes > g.binding_limit() {
            return Err(Error::LimitExceeded {
                what: format!("{op}: the mask of one chunk of batch entries"),
                needed: bytes,
                limit: "max_storage_buffer_binding_size",
                allowed: g.binding_limit(),
            });
        }
    }
    Ok(cs
        .into_iter()
        .map(|c| {
            let (batch, heads) = if unit > 1 { (c.count / unit, dims.heads) } else { (c.count, 1) };
            (c, AttnDims { batch, heads, ..*dims })
        })
        .collect())
}

/// Elements of a mask with strides `s` that `batches` batch entries reach.
fn mask_span(dims: &AttnDims, s: [usize; 4], batches: usize) -> u64 {
    let ext = [batches, dims.heads, dims.lq, dims.lk];
    ext.iter().zip(s).map(|(&n, s)| (n.max(1) - 1) * s).sum::<usize>() as u64 + 1
}

/// The chunk's mask: the same buffer for a mask shared by every batch
/// entry, else a copy of the chunk's batch entries' part.
fn chunk_mask(
    g: &GpuContext,
    mask: AttnMask,
    c: Chunk,
    sub: &AttnDims,
    dims: &AttnDims,
) -> Result<(Buffer, [usize; 4])> {
    let (m, s) = mask;
    if s[0] == 0 && s[1] == 0 {
        return Ok((m.clone(), s));
    }
    let bytes = mask_span(dims, s, sub.batch) * 4;
    let part = Buffer::alloc(m.device(), bytes)?;
    g.copy_range(m.wgpu(), (c.first / dims.heads * s[0]) as u64 * 4, part.wgpu(), 0, bytes)?;
    Ok((part, s))
}

/// What both passes chunk: the operands, the mask, their sizes and storage.
pub(crate) struct Call<'a> {
    pub q: &'a Buffer,
    pub k: &'a Buffer,
    pub v: &'a Buffer,
    pub mask: Option<AttnMask<'a>>,
    pub dims: AttnDims,
    pub io: Operands,
}

/// `pass` (attention's forward on a chunk: q, k, v, the chunk's mask and
/// sizes; its output and log-sum-exp) chunk by chunk, into `out` and `lse`.
pub(crate) fn forward(
    g: &GpuContext,
    a: &Call,
    (out, lse): (&Buffer, &Buffer),
    pass: impl Fn([&Buffer; 3], Option<AttnMask>, AttnDims) -> Result<(Buffer, Buffer)>,
) -> Result<()> {
    let [pq, pk, pv, po, pl] = per_bh(&a.dims, a.io);
    for (c, sub) in plan("attention_forward", g, &a.dims, a.mask, a.io)? {
        let (q, k, v) = (pq.slice(g, a.q, c)?, pk.slice(g, a.k, c)?, pv.slice(g, a.v, c)?);
        let m = a.mask.map(|m| chunk_mask(g, m, c, &sub, &a.dims)).transpose()?;
        let m = m.as_ref().map(|(b, s)| (b, *s));
        let (o, l) = pass([&q, &k, &v], m, sub)?;
        po.place(g, &o, out, c)?;
        pl.place(g, &l, lse, c)?;
    }
    Ok(())
}

/// The gradient bundle a chunk's backward pass returns: dq, dk, dv.
type Grads = (Buffer, Buffer, Buffer);

/// `pass` (attention's backward on a chunk: q, k, v, out, lse, dout, the
/// chunk's mask and sizes) chunk by chunk, into `dq`, `dk` and `dv`.
pub(crate) fn backward(
    g: &GpuContext,
    a: &Call,
    (out, lse, dout): (&Buffer, &Buffer, &Buffer),
    (dq, dk, dv): (&Buffer, &Buffer, &Buffer),
    pass: impl Fn([&Buffer; 6], Option<AttnMask>, AttnDims) -> Result<Grads>,
) -> Result<()> {
    let [pq, pk, pv, po, pl] = per_bh(&a.dims, a.io);
    for (c, sub) in plan("attention_backward", g, &a.dims, a.mask, a.io)? {
        let (q, k, v) = (pq.slice(g, a.q, c)?, pk.slice(g, a.k, c)?, pv.slice(g, a.v, c)?);
        let (o, l, go) = (po.slice(g, out, c)?, pl.slice(g, lse, c)?, po.slice(g, dout, c)?);
        let m = a.mask.map(|m| chunk_mask(g, m, c, &sub, &a.dims)).transpose()?;
        let m = m.as_ref().map(|(b, s)| (b, *s));
        let (gq, gk, gv) = pass([&q, &k, &v, &o, &l, &go], m, sub)?;
        pq.place(g, &gq, dq, c)?;
        pk.place(g, &gk, dk, c)?;
        pv.place(g, &gv, dv, c)?;
    }
    Ok(())
}

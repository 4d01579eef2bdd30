//! Fast gathers and scatters (index_select, gather, embedding): they walk
//! the same coalesced description as the kernel (`ops::index::Walk`), the
//! innermost dim run by run with fixed strides, instead of decoding every
//! element's coordinates into a fresh vector. Gathers split rows over all
//! cores; `scatter_add` stays on one thread and adds in the reference's
//! (index) order, so both are bit-identical to it.

use super::{par_chunks, GRAIN};
use crate::kernels::index::Walk;
use crate::layout::Layout;

/// The outer dims of `w` (all but the innermost) as a layout with strides
/// `strides` and `offset`, and the innermost run's length.
fn outer(w: &Walk, strides: &[usize], offset: usize) -> (Layout, usize) {
    let r = w.shape.len() - 1;
    (Layout { shape: w.shape[..r].into(), strides: strides[..r].into(), offset }, w.shape[r])
}

/// `out[c] = x[x_offset + c · x_strides + idx[c · i_strides] · dim_stride]`
/// over the dense output (0 where the index is ≥ `dim_size`).
pub(crate) fn gather(w: &Walk, xs: &[f32], idx: &[u32], out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    let ((ox, run), (oi, _)) = (outer(w, w.x_strides, w.x_offset), outer(w, w.i_strides, 0));
    let (sx, si) = (w.x_strides[w.shape.len() - 1], w.i_strides[w.shape.len() - 1]);
    par_chunks(out, run, GRAIN, |start, out| {
        for (q, row) in out.chunks_exact_mut(run).enumerate() {
            let (xb, ib) = (ox.index_of(start / run + q), oi.index_of(start / run + q));
            for (j, y) in row.iter_mut().enumerate() {
                let k = idx[ib + j * si] as usize;
                *y = if k < w.dim_size { xs[xb + j * sx + k * w.dim_stride] } else { 0.0 };
            }
        }
    });
}

/// `dst[c · x_strides + idx[i] · dim_stride] += src[i]` for every element `i`
/// of the dense index and source, in order (indices ≥ `dim_size` skipped).
pub(crate) fn scatter_add(w: &Walk, dst: &mut [f32], idx: &[u32], src: &[f32]) {
    if src.is_empty() {
        return;
    }
    let (od, run) = outer(w, w.x_strides, 0);
    let sd = w.x_strides[w.shape.len() - 1];
    for q in 0..src.len() / run {
        let db = od.index_of(q);
        for j in 0..run {
            let i = q * run + j;
            let k = idx[i] as usize;
            if k < w.dim_size {
                dst[db + j * sd + k * w.dim_stride] += src[i];
            }
        }
    }
}

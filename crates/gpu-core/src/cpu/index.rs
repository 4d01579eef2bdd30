//! Fast gathers and scatters (index_select, gather, embedding): the dims
//! merged, the index and source walked run by run with fixed strides
//! instead of decoding every element's coordinates into a fresh vector.
//! Gathers split rows over all cores; `scatter_add` stays on one thread and
//! adds in the reference's (index) order, so both are bit-identical to it.

use super::{par_chunks, GRAIN};
use crate::layout::{coalesce, contiguous_strides, Layout};

/// Where a gather reads: `x` at `x_offset + c · x_strides + index · dim_stride`
/// for output coordinate `c` (`x_strides` has the gathered dim zeroed), the
/// index at `c · i_strides`; indices ≥ `dim_size` read 0.
pub(crate) struct GatherWalk<'a> {
    pub x_strides: &'a [usize],
    pub x_offset: usize,
    pub i_strides: &'a [usize],
    pub dim_stride: usize,
    pub dim_size: usize,
}

/// `out[c] = x[...]` over the dense `out` of `out_shape` (see [`GatherWalk`]).
pub(crate) fn gather(w: &GatherWalk, xs: &[f32], idx: &[u32], out_shape: &[usize], out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    let (shape, st) = coalesce(out_shape, &[w.x_strides, w.i_strides]);
    let r = shape.len() - 1;
    let (run, sx, si) = (shape[r], st[0][r], st[1][r]);
    let outer = |k: usize, offset| Layout { shape: shape[..r].to_vec(), strides: st[k][..r].to_vec(), offset };
    let (ox, oi) = (outer(0, w.x_offset), outer(1, 0));
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

/// `dst[c with c[dim] = index[c]] += src[c]` for every `c` of the dense
/// `index_shape`, in row-major order of `c` (indices ≥ `dst_shape[dim]` skipped).
pub(crate) fn scatter_add(
    dst: &mut [f32],
    dst_shape: &[usize],
    dim: usize,
    idx: &[u32],
    src: &[f32],
    index_shape: &[usize],
) {
    let n: usize = index_shape.iter().product();
    if n == 0 {
        return;
    }
    let strides = contiguous_strides(dst_shape);
    let (dim_stride, dim_size) = (strides[dim], dst_shape[dim]);
    let mut ds = strides.clone();
    ds[dim] = 0;
    let (shape, st) = coalesce(index_shape, &[&ds]);
    let r = shape.len() - 1;
    let (run, sd) = (shape[r], st[0][r]);
    let outer = Layout { shape: shape[..r].to_vec(), strides: st[0][..r].to_vec(), offset: 0 };
    for q in 0..n / run {
        let db = outer.index_of(q);
        for j in 0..run {
            let i = q * run + j;
            let k = idx[i] as usize;
            if k < dim_size {
                dst[db + j * sd + k * dim_stride] += src[i];
            }
        }
    }
}

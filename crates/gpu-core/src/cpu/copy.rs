//! Fast strided copies: the two views' dims merged, each run of the
//! innermost merged dim copied as a slice (or walked with one stride each),
//! the outer index decoded once per run; runs split over all cores when the
//! destination is dense. Words move unchanged, so the result is the
//! reference's exactly.

use super::{par_chunks, GRAIN};
use crate::layout::{coalesce, Layout};

/// `dst[dl[i]] = src[sl[i]]` for every element `i` of the common shape;
/// elements are words (f32, u32) or halves of words (f16, as `u16`).
pub(crate) fn copy<T: Copy + Send + Sync>(src: &[T], sl: &Layout, dst: &mut [T], dl: &Layout) {
    let n = sl.numel();
    if n == 0 {
        return;
    }
    let (shape, st) = coalesce(&sl.shape, &[&sl.strides, &dl.strides]);
    let r = shape.len() - 1;
    let (run, ss, ds) = (shape[r], st[0][r], st[1][r]);
    let outer = |k: usize, offset| Layout { shape: shape[..r].into(), strides: st[k][..r].into(), offset };
    let (os, od) = (outer(0, sl.offset), outer(1, dl.offset));
    let copy_run = |from: usize, to: &mut [T], step: usize| match ss {
        1 if step == 1 => to[..run].copy_from_slice(&src[from..from + run]),
        _ => to.iter_mut().step_by(step).take(run).enumerate().for_each(|(j, d)| *d = src[from + j * ss]),
    };
    if dl.is_dense_row_major() {
        // Row `q` of the destination is `run` words at `dl.offset + q·run`.
        par_chunks(&mut dst[dl.offset..dl.offset + n], run, GRAIN, |start, out| {
            for (i, row) in out.chunks_exact_mut(run).enumerate() {
                copy_run(os.index_of(start / run + i), row, 1);
            }
        });
        return;
    }
    if let ([rows, _], [_, 1]) = (&shape[..], &st[1][..]) {
        // Rows `pitch` apart in the destination (a part of a concatenation,
        // a column block): each task takes whole rows of that region.
        let pitch = st[1][0];
        if pitch >= run && n > GRAIN {
            let per = rows.div_ceil(4 * rayon::current_num_threads()).max(GRAIN.div_ceil(run));
            use rayon::prelude::*;
            let region = &mut dst[dl.offset..dl.offset + (rows - 1) * pitch + run];
            region.par_chunks_mut(per * pitch).enumerate().for_each(|(t, block)| {
                for (q, row) in block.chunks_mut(pitch).enumerate() {
                    copy_run(os.index_of(t * per + q), row, 1);
                }
            });
            return;
        }
    }
    for q in 0..n / run {
        let at = od.index_of(q);
        let len = (run - 1) * ds + 1;
        copy_run(os.index_of(q), &mut dst[at..at + len], ds.max(1));
    }
}

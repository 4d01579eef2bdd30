//! Fast strided copies: the two views' dims merged, each run of the
//! innermost merged dim copied as a slice (or walked with one stride each),
//! the outer index decoded once per run; runs split over all cores when the
//! destination's rows lie evenly apart (dense, or a part of a
//! concatenation). Words move unchanged, so the result is the reference's
//! exactly.

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
    // The destination's rows, when they lie evenly `pitch` words apart with
    // their words adjacent (dense: `pitch = run`; a part of a
    // concatenation: wider), go to all cores, whole rows per task.
    let (rows_shape, rows_st) = coalesce(&shape[..r], &[&st[1][..r]]);
    let pitch = match rows_shape.len() {
        0 => Some(run),
        1 => Some(rows_st[0][0]),
        _ => None,
    };
    if let Some(pitch) = pitch.filter(|&p| ds == 1 && p >= run) {
        let rows = n / run;
        par_chunks(&mut dst[dl.offset..dl.offset + (rows - 1) * pitch + run], pitch, GRAIN, |start, block| {
            for (q, row) in block.chunks_mut(pitch).enumerate() {
                copy_run(os.index_of(start / pitch + q), row, 1);
            }
        });
        return;
    }
    for q in 0..n / run {
        let at = od.index_of(q);
        let len = (run - 1) * ds + 1;
        copy_run(os.index_of(q), &mut dst[at..at + len], ds.max(1));
    }
}

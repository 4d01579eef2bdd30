//! Fast reductions: outputs split over all cores, and each reduced block
//! gathered run by run (the reduced dims merged, the innermost run copied as
//! a slice or walked with one stride) instead of decoding every element's
//! index. The gathered values then go through the reference's
//! `ReduceOp::word` (f64 sums in order), so the results are bit-identical.

use super::{par_chunks, GRAIN};
use crate::layout::{coalesce, Layout};
use crate::ops::reduce::ReduceOp;

/// `out[o] = op(block o)` where block `o` holds the `m` elements of `xs` at
/// `kept.index_of(o) + block.index_of(j)`, `j < m`.
pub(crate) fn reduce(op: ReduceOp, xs: &[f32], kept: &Layout, block: &Layout, m: usize, out: &mut [u32]) {
    let (rs, rst) = coalesce(&block.shape, &[&block.strides]);
    let r = rs.len() - 1;
    let (run, stride) = (rs[r], rst[0][r]);
    let rows = Layout { shape: rs[..r].to_vec(), strides: rst[0][..r].to_vec(), offset: block.offset };
    let n_rows = m / run.max(1);
    par_chunks(out, 1, (GRAIN / m.max(1)).max(1), |start, out| {
        let mut values = Vec::with_capacity(m);
        for (i, y) in out.iter_mut().enumerate() {
            let base = kept.index_of(start + i);
            values.clear();
            for row in 0..n_rows {
                let at = base + rows.index_of(row);
                match stride {
                    1 => values.extend_from_slice(&xs[at..at + run]),
                    _ => values.extend((0..run).map(|j| xs[at + j * stride])),
                }
            }
            *y = op.word(&values);
        }
    });
}

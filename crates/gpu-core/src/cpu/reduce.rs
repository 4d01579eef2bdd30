//! Fast reductions, bit-identical to the reference (`ReduceOp::word`: f64
//! sums in element order, first-wins picks):
//!
//! * when neighbouring outputs sit at neighbouring addresses (a bias
//!   gradient: `[rows, C]` summed over rows), each output keeps a running
//!   accumulator and the reduced elements are visited in order, a whole
//!   contiguous run of outputs at a time (one pass over memory, vectorized,
//!   instead of one strided walk per output);
//! * otherwise each reduced block is walked run by run (the reduced dims
//!   merged, the innermost run read as a slice) and folded by `word_of`,
//!   in place: nothing is copied out, so a sum over a whole tensor needs
//!   no memory beyond the tensor.
//!
//! Outputs are split over all cores either way; the scratch a task keeps
//! (running accumulators of a column run) is bounded by [`COLUMNS`], not by
//! the tensor.

use super::simd::multiversion;
use super::{par_chunks, GRAIN};
use crate::kernels::reduce::ReduceOp;
use crate::layout::{coalesce, Layout};

/// Outputs one pass of the column path accumulates at a time: its scratch
/// (a few values per output) stays this size however long the run, and each
/// reduced row is still read in runs of this many contiguous elements.
const COLUMNS: usize = 2048;

/// `out[o] = op(block o)` where block `o` holds the `m` elements of `xs` at
/// `kept.index_of(o) + block.index_of(j)`, `j < m`.
pub(crate) fn reduce(op: ReduceOp, xs: &[f32], kept: &Layout, block: &Layout, m: usize, out: &mut [u32]) {
    let (ks, kst) = coalesce(&kept.shape, &[&kept.strides]);
    let (run, stride) = (*ks.last().unwrap(), *kst[0].last().unwrap());
    let grain = (GRAIN / m.max(1)).max(1);
    if stride == 1 && run >= 8 {
        // Outputs o..o+len of one kept run read xs[kept(o) + block(j) ..][..len].
        // One run of columns per thread: each reduced row is read in runs
        // as long as they can be, and every row lies on a page of its own
        // (a bias gradient's 2048 x 1024: 0.45 ms against 0.7 in runs of
        // 128 columns, on a 2-core Zen 3).
        let per_thread = out.len().div_ceil(rayon::current_num_threads());
        return par_chunks(out, 1, grain.max(8).max(per_thread), |start, out| {
            let mut o = 0;
            while o < out.len() {
                let len = (run - (start + o) % run).min(out.len() - o);
                columns(op, xs, kept.index_of(start + o), block, m, &mut out[o..o + len]);
                o += len;
            }
        });
    }
    let (rs, rst) = coalesce(&block.shape, &[&block.strides]);
    let r = rs.len() - 1;
    let (run, stride) = (rs[r], rst[0][r]);
    let rows = Layout { shape: rs[..r].into(), strides: rst[0][..r].into(), offset: block.offset };
    let (n_rows, rows) = (m / run.max(1), &rows);
    par_chunks(out, 1, grain, |start, out| {
        for (i, y) in out.iter_mut().enumerate() {
            let base = kept.index_of(start + i);
            let values = || {
                (0..n_rows).flat_map(move |row| {
                    let at = base + rows.index_of(row);
                    (0..run).map(move |j| xs[at + j * stride])
                })
            };
            *y = op.word_of(m, values);
        }
    });
}

/// `out.len()` outputs whose blocks start at consecutive addresses from
/// `base`: element `j` of output `i` is `xs[base + i + block.index_of(j)]`.
fn columns(op: ReduceOp, xs: &[f32], base: usize, block: &Layout, m: usize, out: &mut [u32]) {
    for (c, out) in out.chunks_mut(COLUMNS).enumerate() {
        columns_run(op, xs, base + c * COLUMNS, block, m, out);
    }
}

multiversion! {
    /// `sum[i] += xs[first + j·stride + i]` in f64 for rows `j < rows`, at
    /// the host's vector width (a bias gradient's 2048 x 1024 read at 8
    /// GB/s in the baseline build), all rows in one call: a call and a
    /// layout lookup per row took most of a 2048 x 1024 sum's time.
    fn add_rows(sum: &mut [f64], xs: &[f32], first: usize, stride: usize, rows: usize) {
        let len = sum.len();
        for j in 0..rows {
            for (a, &v) in sum.iter_mut().zip(&xs[first + j * stride..][..len]) {
                *a += v as f64;
            }
        }
    }
}

/// [`columns`] for at most [`COLUMNS`] outputs.
fn columns_run(op: ReduceOp, xs: &[f32], base: usize, block: &Layout, m: usize, out: &mut [u32]) {
    let len = out.len();
    let row = |j: usize| &xs[base + block.index_of(j)..][..len];
    // The reference sums with `Iterator::sum`, whose start value (±0.0)
    // decides the sign of an all-(−0.0) sum: take it from the same place.
    let zero: f64 = std::iter::empty::<f64>().sum();
    match op {
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Var { .. } => {
            let n = m as f64;
            let mut sum = [zero; COLUMNS];
            let sum = &mut sum[..len];
            // Rows evenly apart (the reduced dims merge into one) are
            // summed in one call; any other block a row at a time.
            let (dims, strides) = coalesce(&block.shape, &[&block.strides]);
            match dims.len() {
                0 | 1 => add_rows(sum, xs, base + block.index_of(0), strides[0].first().copied().unwrap_or(0), m),
                _ => (0..m).for_each(|j| add_rows(sum, xs, base + block.index_of(j), 0, 1)),
            }
            let word = |v: f64| (v as f32).to_bits();
            match op {
                ReduceOp::Sum => out.iter_mut().zip(&*sum).for_each(|(o, &s)| *o = word(s)),
                ReduceOp::Mean => out.iter_mut().zip(&*sum).for_each(|(o, &s)| *o = word(s / n)),
                ReduceOp::Var { correction } => {
                    sum.iter_mut().for_each(|s| *s /= n);
                    let mean = &*sum;
                    let mut m2 = [zero; COLUMNS];
                    let m2 = &mut m2[..len];
                    for j in 0..m {
                        for ((a, &v), &mu) in m2.iter_mut().zip(row(j)).zip(mean) {
                            *a += (v as f64 - mu).powi(2);
                        }
                    }
                    let dof = m.saturating_sub(correction) as f64;
                    out.iter_mut().zip(&*m2).for_each(|(o, &s)| *o = word(s / dof));
                }
                _ => unreachable!(),
            }
        }
        _ => {
            let mut best = [(0.0f32, 0usize); COLUMNS];
            let best = &mut best[..len];
            best.iter_mut().zip(row(0)).for_each(|(b, &v)| *b = (v, 0));
            for j in 1..m {
                for (b, &v) in best.iter_mut().zip(row(j)) {
                    if op.beats(v, j, b.0, b.1) {
                        *b = (v, j);
                    }
                }
            }
            for (o, &(v, j)) in out.iter_mut().zip(&*best) {
                *o = match op {
                    ReduceOp::ArgMax | ReduceOp::ArgMin => j as u32,
                    _ => v.to_bits(),
                };
            }
        }
    }
}

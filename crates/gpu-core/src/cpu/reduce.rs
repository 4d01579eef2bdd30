//! Fast reductions, bit-identical to the reference (`ReduceOp::word`: f64
//! sums in element order, first-wins picks):
//!
//! * when neighbouring outputs sit at neighbouring addresses (a bias
//!   gradient: `[rows, C]` summed over rows), each output keeps a running
//!   accumulator and the reduced elements are visited in order, a whole
//!   contiguous run of outputs at a time (one pass over memory, vectorized,
//!   instead of one strided walk per output);
//! * otherwise each reduced block is gathered run by run (the reduced dims
//!   merged, the innermost run copied as a slice) and handed to `word`.
//!
//! Outputs are split over all cores either way.

use super::{par_chunks, GRAIN};
use crate::layout::{coalesce, Layout};
use crate::ops::reduce::ReduceOp;

/// `out[o] = op(block o)` where block `o` holds the `m` elements of `xs` at
/// `kept.index_of(o) + block.index_of(j)`, `j < m`.
pub(crate) fn reduce(op: ReduceOp, xs: &[f32], kept: &Layout, block: &Layout, m: usize, out: &mut [u32]) {
    let (ks, kst) = coalesce(&kept.shape, &[&kept.strides]);
    let (run, stride) = (*ks.last().unwrap(), *kst[0].last().unwrap());
    let grain = (GRAIN / m.max(1)).max(1);
    if stride == 1 && run >= 8 {
        // Outputs o..o+len of one kept run read xs[kept(o) + block(j) ..][..len].
        return par_chunks(out, 1, grain.max(8), |start, out| {
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
    let rows = Layout { shape: rs[..r].to_vec(), strides: rst[0][..r].to_vec(), offset: block.offset };
    let n_rows = m / run.max(1);
    par_chunks(out, 1, grain, |start, out| {
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

/// `out.len()` outputs whose blocks start at consecutive addresses from
/// `base`: element `j` of output `i` is `xs[base + i + block.index_of(j)]`.
fn columns(op: ReduceOp, xs: &[f32], base: usize, block: &Layout, m: usize, out: &mut [u32]) {
    let len = out.len();
    let row = |j: usize| &xs[base + block.index_of(j)..][..len];
    // The reference sums with `Iterator::sum`, whose start value (±0.0)
    // decides the sign of an all-(−0.0) sum: take it from the same place.
    let zero: f64 = std::iter::empty::<f64>().sum();
    match op {
        ReduceOp::Sum | ReduceOp::Mean | ReduceOp::Var { .. } => {
            let n = m as f64;
            let mut sum = vec![zero; len];
            for j in 0..m {
                sum.iter_mut().zip(row(j)).for_each(|(a, &v)| *a += v as f64);
            }
            let words: Vec<f32> = match op {
                ReduceOp::Sum => sum.iter().map(|&s| s as f32).collect(),
                ReduceOp::Mean => sum.iter().map(|&s| (s / n) as f32).collect(),
                ReduceOp::Var { correction } => {
                    let mean: Vec<f64> = sum.iter().map(|&s| s / n).collect();
                    let mut m2 = vec![zero; len];
                    for j in 0..m {
                        for ((a, &v), &mu) in m2.iter_mut().zip(row(j)).zip(&mean) {
                            *a += (v as f64 - mu).powi(2);
                        }
                    }
                    let dof = m.saturating_sub(correction) as f64;
                    m2.iter().map(|&s| (s / dof) as f32).collect()
                }
                _ => unreachable!(),
            };
            out.iter_mut().zip(words).for_each(|(o, w)| *o = w.to_bits());
        }
        _ => {
            let mut best: Vec<(f32, usize)> = row(0).iter().map(|&v| (v, 0)).collect();
            for j in 1..m {
                for (b, &v) in best.iter_mut().zip(row(j)) {
                    if op.beats(v, j, b.0, b.1) {
                        *b = (v, j);
                    }
                }
            }
            for (o, (v, j)) in out.iter_mut().zip(best) {
                *o = match op {
                    ReduceOp::ArgMax | ReduceOp::ArgMin => j as u32,
                    _ => v.to_bits(),
                };
            }
        }
    }
}

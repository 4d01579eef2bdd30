//! How a matmul too large for one launch's bindings is cut into launches
//! that each bind at most the device's binding limit (WebGPU's
//! `max_storage_buffer_binding_size`, often 128 MiB to 2 GiB, while
//! `max_buffer_size` may be far larger).
//!
//! A product is split only when one of its buffers is above the limit, so
//! products that fit keep their single launch. The cuts, tried in order:
//!
//! 1. Boxes of batch entries (a range of the outermost batch dim that does
//!    not fit whole, every entry of the dims inside it), then single
//!    entries.
//! 2. Ranges of output rows of one entry.
//! 3. Ranges of K (split-K): each range's product is a partial sum; the
//!    partials are added in a fixed order, so the result is deterministic.
//! 4. Ranges of output columns, when B's columns (a transposed weight
//!    `x @ Wᵀ` whose `W` is past the limit: a large vocabulary's output
//!    layer) or one output row are too large; their results are copied
//!    into the output row by row.
//!
//! Each launch binds windows of A and B (sub-ranges starting at a multiple
//! of `min_storage_buffer_offset_alignment`, the kernels' operand offsets
//! shifted by the rest) and of the output. The kernels have no output
//! offset, so an output window that cannot start exactly where its rows
//! begin is computed into a scratch buffer and copied there (a copy binds
//! nothing). Nothing here changes the WGSL kernels.

use std::ops::Range;

use crate::{Error, Result};

/// One launch's output: a box of batch entries (`dims`, the trailing dims of
/// the coalesced batch shape from some level on, the first possibly cut
/// short), rows `rows` and columns `cols` of each entry, summed over `ks`
/// ranges of K.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Batch dims of the box (the matching trailing strides apply).
    pub dims: Vec<usize>,
    /// Index of the box's first batch dim in the coalesced batch shape.
    pub level: usize,
    /// Element offset of A's first entry of the box (rows and K not applied).
    pub a: usize,
    /// Element offset of B's first entry of the box (K not applied).
    pub b: usize,
    /// Flat index of the box's first batch entry.
    pub entry: usize,
    /// The output rows of each entry.
    pub rows: Range<usize>,
    /// The output columns of each entry (all of them unless one row of B
    /// or of the output is too large to bind).
    pub cols: Range<usize>,
    /// The K ranges whose partial products are summed (one: no split-K).
    pub ks: Vec<Range<usize>>,
}

/// A product's geometry as the planner sees it: the coalesced batch shape
/// and both operands' batch strides, their offsets and row and column
/// strides (elements), M, K, N and the element sizes.
pub(crate) struct Planner {
    pub dims: Vec<usize>,
    pub a_strides: Vec<usize>,
    pub b_strides: Vec<usize>,
    pub a_offset: usize,
    pub b_offset: usize,
    pub a_rs: usize,
    pub a_cs: usize,
    pub b_rs: usize,
    pub b_cs: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// Bytes per operand element (4, or 2 for f16 operands).
    pub operand_bytes: u64,
    /// Bytes per output element.
    pub out_bytes: u64,
    /// Bytes of bias per output column (Columns: 4) or per row (Rows: 4);
    /// 0 without a bias.
    pub bias_columns: u64,
    pub bias_rows: u64,
    /// The binding limit.
    pub limit: u64,
    /// The binding offset alignment.
    pub align: u64,
}

/// Elements touched by a strided block: one past the largest index
/// relative to the first (0 when any extent is 0).
fn extent(parts: &[(usize, usize)]) -> usize {
    if parts.iter().any(|&(n, _)| n == 0) {
        return 0;
    }
    parts.iter().map(|&(n, s)| (n - 1) * s).sum::<usize>() + 1
}

impl Planner {
    /// Bytes of A, B and the output one launch binds for `dims` (the
    /// trailing batch dims from `level`), `rows` rows and `ks` values of K,
    /// A and B with room for the alignment of their window's start.
    fn bytes(&self, level: usize, dims: &[usize], (rows, ks, cols): (usize, usize, usize)) -> [u64; 4] {
        let batch = |strides: &[usize]| -> Vec<(usize, usize)> {
            dims.iter().zip(&strides[level..]).map(|(&d, &s)| (d, s)).collect()
        };
        let mut a = batch(&self.a_strides);
        a.extend([(rows, self.a_rs), (ks, self.a_cs)]);
        let mut b = batch(&self.b_strides);
        b.extend([(ks, self.b_rs), (cols, self.b_cs)]);
        let entries: usize = dims.iter().product();
        let slack = self.align + 16;
        [
            extent(&a) as u64 * self.operand_bytes + slack,
            extent(&b) as u64 * self.operand_bytes + slack,
            (entries * rows * cols) as u64 * self.out_bytes.max(4),
            cols as u64 * self.bias_columns + rows as u64 * self.bias_rows,
        ]
    }

    fn fits(&self, level: usize, dims: &[usize], rks: (usize, usize, usize)) -> bool {
        self.bytes(level, dims, rks).iter().all(|&b| b <= self.limit)
    }

    /// The largest `x` in `1..=max` for which `ok(x)` holds (`ok` is
    /// monotone: true up to some point), or 0.
    fn largest(max: usize, mut ok: impl FnMut(usize) -> bool) -> usize {
        let (mut lo, mut hi) = (0, max);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if ok(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }

    /// The launches of the product, or `LimitExceeded` naming `op` when
    /// even one output row over one value of K binds more than the limit
    /// (a row of N values, or B's columns, too large).
    pub fn plan(&self, op: &str) -> Result<Vec<Piece>> {
        let mut pieces = Vec::new();
        self.plan_level(op, 0, self.a_offset, self.b_offset, 0, &mut pieces)?;
        Ok(pieces)
    }

    fn plan_level(&self, op: &str, level: usize, a: usize, b: usize, entry: usize, out: &mut Vec<Piece>) -> Result<()> {
        let (m, k, n) = (self.m, self.k, self.n);
        let whole = || std::iter::once(0..k).collect::<Vec<_>>();
        if level < self.dims.len() {
            let d = self.dims[level];
            let inner: usize = self.dims[level + 1..].iter().product();
            let mut dims = self.dims[level..].to_vec();
            let c = Self::largest(d, |c| {
                dims[0] = c;
                self.fits(level, &dims, (m, k, n))
            });
            if c > 0 {
                for c0 in (0..d).step_by(c) {
                    dims[0] = c.min(d - c0);
                    out.push(Piece {
                        dims: dims.clone(),
                        level,
                        a: a + c0 * self.a_strides[level],
                        b: b + c0 * self.b_strides[level],
                        entry: entry + c0 * inner,
                        rows: 0..m,
                        cols: 0..n,
                        ks: whole(),
                    });
                }
                return Ok(());
            }
            for i in 0..d {
                let (ai, bi) = (a + i * self.a_strides[level], b + i * self.b_strides[level]);
                self.plan_level(op, level + 1, ai, bi, entry + i * inner, out)?;
            }
            return Ok(());
        }
        // One batch entry, too large whole: ranges of rows, then of K, then of columns.
        let piece = |rows: Range<usize>, cols: Range<usize>, ks: Vec<Range<usize>>| Piece {
            dims: vec![],
            level,
            a,
            b,
            entry,
            rows,
            cols,
            ks,
        };
        let ranges = |len: usize, step: usize| (0..len).step_by(step).map(move |s| s..(s + step).min(len));
        let r = Self::largest(m, |r| self.fits(level, &[], (r, k, n)));
        if r > 0 {
            out.extend(ranges(m, r).map(|rows| piece(rows, 0..n, whole())));
            return Ok(());
        }
        // Columns come in pairs (f16 results are stored a word at a time).
        let nc = match Self::largest(n, |c| self.fits(level, &[], (1, 1, c))) {
            c if c >= n => n,
            c => c / 2 * 2,
        };
        if nc == 0 {
            let [ab, bb, ob, biasb] = self.bytes(level, &[], (1, 1, 2.min(n)));
            return Err(Error::LimitExceeded {
                what: format!("{op}: one output row over one value of K and two columns binding"),
                needed: ab.max(bb).max(ob).max(biasb),
                limit: "max_storage_buffer_binding_size",
                allowed: self.limit,
            });
        }
        let r = Self::largest(m, |r| self.fits(level, &[], (r, 1, nc)));
        let kc = Self::largest(k, |kc| self.fits(level, &[], (r, kc, nc)));
        let ks: Vec<Range<usize>> = ranges(k, kc).collect();
        for cols in ranges(n, nc) {
            out.extend(ranges(m, r).map(|rows| piece(rows, cols.clone(), ks.clone())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::window::window;

    fn planner(dims: &[usize], (m, k, n): (usize, usize, usize), limit: u64) -> Planner {
        // Contiguous A [dims, M, K], B [K, N] shared by every entry.
        let entries: usize = dims.iter().product();
        let mut a_strides = vec![0; dims.len()];
        let mut s = m * k;
        for i in (0..dims.len()).rev() {
            a_strides[i] = s;
            s *= dims[i];
        }
        let _ = entries;
        Planner {
            dims: dims.to_vec(),
            a_strides,
            b_strides: vec![0; dims.len()],
            a_offset: 0,
            b_offset: 0,
            a_rs: k,
            a_cs: 1,
            b_rs: n,
            b_cs: 1,
            m,
            k,
            n,
            operand_bytes: 4,
            out_bytes: 4,
            bias_columns: 0,
            bias_rows: 0,
            limit,
            align: 32,
        }
    }

    /// Every output element is covered exactly once, with every K range.
    fn covered(p: &Planner, pieces: &[Piece]) -> bool {
        let entries: usize = p.dims.iter().product();
        let mut seen = vec![0usize; entries * p.m * p.n];
        for q in pieces {
            let n: usize = q.dims.iter().product();
            let ks: usize = q.ks.iter().map(|r| r.len()).sum();
            assert_eq!(ks, p.k);
            for e in 0..n.max(1) {
                for r in q.rows.clone() {
                    for c in q.cols.clone() {
                        seen[((q.entry + e) * p.m + r) * p.n + c] += 1;
                    }
                }
            }
            let [a, b, o, _] = p.bytes(q.level, &q.dims, (q.rows.len(), q.ks[0].len(), q.cols.len()));
            assert!(a <= p.limit && b <= p.limit && o <= p.limit, "{q:?}");
        }
        seen.iter().all(|&c| c == 1)
    }

    #[test]
    fn fitting_products_are_one_piece() {
        let p = planner(&[3, 5], (7, 9, 11), 1 << 20);
        assert_eq!(p.plan("matmul").unwrap().len(), 1);
    }

    #[test]
    fn large_products_split_by_entries_rows_then_k() {
        // Boxes of entries.
        let p = planner(&[3, 5], (7, 9, 11), 2048);
        let pieces = p.plan("matmul").unwrap();
        assert!(pieces.len() > 1 && pieces.iter().all(|q| q.ks.len() == 1 && q.rows == (0..7)));
        assert!(covered(&p, &pieces));
        // Rows of single entries.
        let p = planner(&[2], (70, 9, 11), 1024);
        let pieces = p.plan("matmul").unwrap();
        assert!(pieces.iter().all(|q| q.dims.is_empty() && q.rows.len() < 70));
        assert!(covered(&p, &pieces));
        // K: A's rows of 400 values are wider than the limit allows.
        let p = planner(&[], (5, 400, 3), 1024);
        let pieces = p.plan("matmul").unwrap();
        assert!(pieces.iter().all(|q| q.ks.len() > 1));
        assert!(covered(&p, &pieces));
    }

    #[test]
    fn rows_wider_than_the_limit_split_their_columns() {
        let p = planner(&[], (5, 4, 1000), 1024);
        let pieces = p.plan("matmul").unwrap();
        assert!(pieces.iter().all(|q| q.cols.len() < 1000 && q.cols.len() % 2 == 0));
        assert!(covered(&p, &pieces));
    }

    #[test]
    fn a_limit_below_one_value_is_an_error_naming_the_op() {
        let p = planner(&[], (5, 4, 10), 32);
        let e = p.plan("matmul").unwrap_err().to_string();
        assert!(e.contains("matmul") && e.contains("max_storage_buffer_binding_size"), "{e}");
    }

    #[test]
    fn windows_start_aligned_and_cover_their_elements() {
        let (w, shift) = window(37, 10, 4, 32);
        assert_eq!((w.offset, shift), (128, 32));
        assert!(w.offset + w.size >= 47 * 4 && w.size % 16 == 0);
        let (w, shift) = window(3, 3, 2, 32);
        assert_eq!((w.offset, w.size, shift), (0, 16, 0));
    }
}

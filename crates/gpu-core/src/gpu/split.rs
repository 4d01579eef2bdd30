//! Elementwise launches too large for one storage binding.
//!
//! Every elementwise launch (unary, binary, `where`, the float casts, and
//! the fused trees made of them) can run as several launches over ranges of
//! its output, each binding only windows of its buffers: element `i` of the
//! output depends on one element of each input, so a range of outputs needs
//! only the range of each input that its index map reaches. The fuser's
//! generated kernel (`fused_wgsl.rs`) takes that range's first element and
//! each input window's start as uniforms; [`plan`] picks the ranges, so
//! that every window starts on the adapter's offset alignment and fits the
//! binding limit. A read whose range cannot fit (a transposed view whose
//! every output row reaches across a huge input, say) has no plan; that op
//! then fails with `LimitExceeded` when it is recorded.

use super::fusion::Access;
use super::window::{window, Window};

/// How a kernel reads one bound input for output element `i`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LeafRead {
    /// The index maps from the output element to the input's, outermost
    /// first (a leaf read through its consumer's map, then its own).
    pub maps: Vec<Access>,
    /// Packed f16 (two elements per u32 word) instead of f32.
    pub half: bool,
}

/// One launch of a split elementwise kernel.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Range {
    /// Output elements `[start, start + len)`.
    pub start: usize,
    pub len: usize,
    /// Per leaf, its window and the word index the window starts at.
    pub leaves: Vec<(Window, usize)>,
    /// The root output's window (packed f16 words for a narrowing root).
    pub out: Window,
    /// The window of each f32 intermediate the kernel also stores.
    pub stored: Window,
}

/// The elements `[lo, hi)` that reading element `i` for every `i` in
/// `[start, start + len)` (`len > 0`) through `maps` touches: a bounding
/// box, exact for dense reads and at most the rest of the varying dim's
/// inner block too wide for strided ones (strides are never negative).
pub(crate) fn span(maps: &[Access], start: usize, len: usize) -> (usize, usize) {
    maps.iter().fold((start, start + len), |(lo, hi), access| match access {
        Access::Dense => (lo, hi),
        Access::Strided { shape, strides, offset } => {
            let index = |mut i: usize| {
                let mut idx = vec![0; shape.len()];
                for d in (0..shape.len()).rev() {
                    idx[d] = i % shape[d];
                    i /= shape[d];
                }
                idx
            };
            let (first, last) = (index(lo), index(hi - 1));
            // Dims before the first that differs are fixed, that one ranges
            // between the two, every inner one over its whole extent.
            let k = (0..shape.len()).find(|&d| first[d] != last[d]).unwrap_or(shape.len());
            let fixed: usize = offset + (0..k).map(|d| first[d] * strides[d]).sum::<usize>();
            if k == shape.len() {
                return (fixed, fixed + 1);
            }
            let inner: usize = (k + 1..shape.len()).map(|d| (shape[d] - 1) * strides[d]).sum();
            (fixed + first[k] * strides[k], fixed + last[k] * strides[k] + inner + 1)
        }
    })
}

/// The ranges an elementwise kernel over `n` output elements runs in so
/// that no binding exceeds `limit` bytes, with windows starting at
/// multiples of `align`; `None` when some leaf's read cannot fit even for
/// the shortest range. `narrow`: the output is packed f16 words.
pub(crate) fn plan(n: usize, narrow: bool, leaves: &[LeafRead], limit: u64, align: u64) -> Option<Vec<Range>> {
    // Ranges start where the output window (f32 elements, or f16 pairs in
    // words) starts on the alignment, so the kernel stores at its thread
    // index; stored f32 intermediates likewise. Both are read densely.
    let unit = (align / 4) as usize * if narrow { 2 } else { 1 };
    let dense = |half| LeafRead { maps: vec![Access::Dense], half };
    let reads: Vec<LeafRead> = leaves.iter().cloned().chain([dense(narrow), dense(false)]).collect();
    let ranges = ranges_reading(n, &reads, limit, align, unit)?;
    Some(
        ranges
            .into_iter()
            .map(|Cut { start, len, mut windows }| {
                let stored = windows.pop().expect("stored window").0;
                let out = windows.pop().expect("output window").0;
                Range { start, len, leaves: windows, out, stored }
            })
            .collect(),
    )
}

/// A range of elements and the window of each buffer it binds (with the
/// word each window starts at), as [`ranges_reading`] plans them.
pub(crate) struct Cut {
    pub start: usize,
    pub len: usize,
    pub windows: Vec<(Window, usize)>,
}

/// Ranges of `[0, n)` covering it in order, each as long as possible (a
/// multiple of `unit` elements, except the last) such that the window of
/// each buffer `reads` describes (the span its maps reach over the range,
/// in f32 words or packed halves, and the word it starts at) fits `limit`;
/// `None` when not even `unit` elements fit somewhere. Greedy, so ranges
/// end where a read would jump (at the end of a transposed row, say).
pub(crate) fn ranges_reading(n: usize, reads: &[LeafRead], limit: u64, align: u64, unit: usize) -> Option<Vec<Cut>> {
    let most = (limit.checked_sub(16)? / 4) as usize / unit;
    if most == 0 {
        return None;
    }
    let mut cuts = Vec::new();
    let mut start = 0;
    while start < n {
        let left = n - start;
        let cut = |units: usize| cut_at(start, (units * unit).min(left), reads, limit, align);
        // Spans only grow with the length: binary search for the most units that fit.
        let (mut lo, mut hi) = (1, most.min(left.div_ceil(unit)));
        let mut best = cut(1)?;
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            match cut(mid) {
                Some(c) => (lo, best) = (mid, c),
                None => hi = mid - 1,
            }
        }
        start += best.len;
        cuts.push(best);
    }
    Some(cuts)
}

/// The range `[start, start + len)` and its windows, or `None` when one exceeds `limit`.
fn cut_at(start: usize, len: usize, reads: &[LeafRead], limit: u64, align: u64) -> Option<Cut> {
    let windows: Vec<(Window, usize)> = reads
        .iter()
        .map(|read| {
            let (lo, hi) = span(&read.maps, start, len);
            let (lo, hi) = if read.half { (lo / 2, (hi - 1) / 2 + 1) } else { (lo, hi) };
            window(lo, hi - lo, 4, align)
        })
        .collect();
    windows.iter().all(|w| w.0.size <= limit).then_some(Cut { start, len, windows })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strided(shape: &[usize], strides: &[usize], offset: usize) -> Access {
        Access::Strided { shape: shape.into(), strides: strides.into(), offset }
    }

    /// Every element a range reads lies inside its span, checked by
    /// enumerating the reads of each range of awkward views.
    #[test]
    fn spans_cover_every_element_read() {
        let views = [
            vec![strided(&[5, 7], &[1, 5], 0)],
            vec![strided(&[3, 4, 6], &[0, 6, 1], 11)],
            vec![strided(&[6, 10], &[20, 2], 3)],
            vec![strided(&[70], &[0], 9)],
            vec![strided(&[7, 10], &[10, 1], 0), strided(&[10, 7], &[1, 10], 2)],
        ];
        for maps in &views {
            let Access::Strided { shape, .. } = &maps[0] else { unreachable!() };
            let n: usize = shape.iter().product();
            let read = |mut i: usize| {
                for m in maps {
                    if let Access::Strided { shape, strides, offset } = m {
                        let mut o = *offset;
                        for d in (0..shape.len()).rev() {
                            o += (i % shape[d]) * strides[d];
                            i /= shape[d];
                        }
                        i = o;
                    }
                }
                i
            };
            for start in 0..n {
                for len in 1..=n - start {
                    let (lo, hi) = span(maps, start, len);
                    for i in start..start + len {
                        let e = read(i);
                        assert!(lo <= e && e < hi, "{maps:?} [{start}, +{len}): {e} outside [{lo}, {hi})");
                    }
                }
            }
        }
        assert_eq!(span(&[Access::Dense], 5, 3), (5, 8));
        assert_eq!(span(&[strided(&[4, 8], &[8, 1], 2)], 9, 6), (11, 17), "a contiguous view is exact");
    }

    /// Ranges tile the output in order, every window starts aligned and
    /// fits; a read that cannot fit has no plan.
    #[test]
    fn plans_tile_the_output_within_the_limit() {
        let (limit, align) = (1024, 256);
        let leaves = [
            LeafRead { maps: vec![Access::Dense], half: false },
            LeafRead { maps: vec![strided(&[100, 30], &[0, 1], 7)], half: false },
            LeafRead { maps: vec![Access::Dense], half: true },
        ];
        for (n, narrow) in [(3000, false), (3001, true), (10, false)] {
            let ranges = plan(n, narrow, &leaves, limit, align).expect("fits");
            let mut next = 0;
            for r in &ranges {
                assert_eq!(r.start, next);
                next += r.len;
                for w in r.leaves.iter().map(|l| &l.0).chain([&r.out, &r.stored]) {
                    assert!(w.offset.is_multiple_of(align) && w.size <= limit, "{w:?}");
                }
                assert_eq!(r.stored.offset, r.start as u64 * 4, "stored values at their own index");
            }
            assert_eq!(next, n);
        }
        // A transposed read: every range of output rows reaches across the input.
        let transposed = [LeafRead { maps: vec![strided(&[64, 64], &[1, 64], 0)], half: false }];
        assert_eq!(plan(4096, false, &transposed, limit, align), None);
        // A copy (unit 1) still splits it: its ranges end at each output
        // row's end, a few per row.
        let cuts = ranges_reading(4096, &transposed, 4096, align, 1).expect("copies split");
        assert!((64..=6 * 64).contains(&cuts.len()), "{} ranges", cuts.len());
        let mut next = 0;
        for c in &cuts {
            assert_eq!(c.start, next);
            next += c.len;
            assert!(c.windows.iter().all(|w| w.0.size <= 4096));
        }
        assert_eq!(next, 4096);
    }
}

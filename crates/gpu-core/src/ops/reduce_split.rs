//! Sums over views too large for one storage binding: the view is cut
//! into sub-views that each fit (see `matmul/binding_split.rs` for the limit),
//! along the axis whose elements lie furthest apart among the reduced axes
//! and the first kept axis. Cut along a reduced axis, the pieces' partial
//! sums are added in a fixed order (deterministic); cut along the first
//! kept axis, each piece is a contiguous run of the result, copied into
//! place. Only sums split; the other reductions return `LimitExceeded`
//! naming themselves. The caller (`reduce.rs`) passes the sum to run on a
//! piece, so this file names no op of its own family.

use super::operands::Operands;
use crate::layout::Dims;
use crate::{Buffer, Layout, Result};

/// Bytes a launch binds for the view `l` of `io` elements, with room for
/// aligning its window's start down to `align`.
pub(crate) fn view_bytes(l: &Layout, io: Operands, align: u64) -> u64 {
    (l.span() - l.offset) as u64 * io.size() + align + 16
}

/// The sum of `layout` over the `reduced` axes, split into sub-views, or
/// `None` when the view fits or no axis can be cut (every candidate has
/// length 1). `sum(view, axes)` sums one piece (keeping its dims); the
/// result is contiguous, `n_out` values.
pub(crate) fn split_sum(
    x: &Buffer,
    io: Operands,
    layout: &Layout,
    reduced: &[bool],
    (limit, align): (u64, u64),
    sum: impl Fn(&Layout, &[usize]) -> Result<(Buffer, Dims)>,
) -> Option<Result<Buffer>> {
    if view_bytes(layout, io, align) <= limit {
        return None;
    }
    let rank = layout.rank();
    // The kept axis whose cut leaves each piece a contiguous run of the result.
    let first_kept = (0..rank).find(|&d| !reduced[d] && layout.shape[d] > 1);
    let d = (0..rank)
        .filter(|&d| (reduced[d] && layout.shape[d] > 1) || Some(d) == first_kept)
        .max_by_key(|&d| layout.strides[d])?;
    let len = layout.shape[d];
    let sub = |start: usize, n: usize| {
        let mut s = layout.clone();
        s.shape[d] = n;
        s.offset += start * layout.strides[d];
        s
    };
    // The longest piece that fits (at least 1: the recursive sum then cuts
    // it along another axis).
    let (mut lo, mut hi) = (1, len);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if view_bytes(&sub(0, mid), io, align) <= limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let axes: Vec<usize> = (0..rank).filter(|&a| reduced[a]).collect();
    let pieces = (0..len).step_by(lo).map(|start| (start, lo.min(len - start)));
    let run = || -> Result<Buffer> {
        if !reduced[d] {
            // Results of the kept axis' ranges, each copied into place.
            let n_out: usize = (0..rank).filter(|&a| !reduced[a]).map(|a| layout.shape[a]).product();
            let per = (n_out / len) as u64 * 4;
            let out = Buffer::alloc(x.device(), n_out as u64 * 4)?;
            let g = x.device().gpu_ctx().expect("split sums run on a GPU");
            for (start, n) in pieces {
                let (part, _) = sum(&sub(start, n), &axes)?;
                g.copy_range(part.wgpu(), 0, out.wgpu(), start as u64 * per, n as u64 * per)?;
            }
            return Ok(out);
        }
        let mut total: Option<Buffer> = None;
        for (start, n) in pieces {
            let (part, shape) = sum(&sub(start, n), &axes)?;
            let flat = Layout::contiguous(&[shape.iter().product()]);
            total = Some(match total {
                None => part,
                Some(t) => super::binary::binary(super::binary::BinaryOp::Add, &t, &flat, &part, &flat)?.0,
            });
        }
        Ok(total.expect("an axis longer than 1 gives at least one piece"))
    };
    Some(run())
}

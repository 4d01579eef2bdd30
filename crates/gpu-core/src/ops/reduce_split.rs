//! Sums over views too large for one storage binding: the view is cut
//! along a reduced axis into sub-views that each fit (see
//! `matmul_split.rs` for the limit), each is summed, and the partial sums
//! are added in a fixed order (deterministic). Only [`ReduceOp::Sum`]
//! splits; the other reductions return `LimitExceeded` naming themselves.

use super::operands::Operands;
use super::reduce::{reduce_io, ReduceOp};
use crate::{Buffer, Layout, Result};

/// Bytes a launch binds for the view `l` of `io` elements, with room for
/// aligning its window's start down to `align`.
pub(crate) fn view_bytes(l: &Layout, io: Operands, align: u64) -> u64 {
    (l.span() - l.offset) as u64 * io.size() + align + 16
}

/// The sum of `layout` over the `reduced` axes as partial sums of
/// sub-views along one reduced axis, or `None` when the view fits or
/// cannot be cut along a reduced axis (no reduced axis longer than 1).
pub(crate) fn split_sum(
    x: &Buffer,
    io: Operands,
    layout: &Layout,
    reduced: &[bool],
    (limit, align): (u64, u64),
) -> Option<Result<Buffer>> {
    if view_bytes(layout, io, align) <= limit {
        return None;
    }
    // The reduced axis whose elements lie furthest apart: cutting it shrinks
    // each piece's span the most.
    let d = (0..layout.rank()).filter(|&d| reduced[d] && layout.shape[d] > 1).max_by_key(|&d| layout.strides[d])?;
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
    let axes: Vec<usize> = (0..layout.rank()).filter(|&a| reduced[a]).collect();
    let run = || -> Result<Buffer> {
        let mut total: Option<Buffer> = None;
        let mut n_out = 0;
        for start in (0..len).step_by(lo) {
            let (part, shape) = reduce_io(ReduceOp::Sum, x, io, &sub(start, lo.min(len - start)), &axes, true)?;
            n_out = shape.iter().product();
            let flat = Layout::contiguous(&[n_out]);
            total = Some(match total {
                None => part,
                Some(t) => super::binary::binary(super::binary::BinaryOp::Add, &t, &flat, &part, &flat)?.0,
            });
        }
        let _ = n_out;
        Ok(total.expect("a reduced axis longer than 1 gives at least one piece"))
    };
    Some(run())
}

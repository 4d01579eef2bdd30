//! [`Walk`]: how an index op walks its tensors (the fields of
//! `index.wgsl`'s `Params`), shared by the launch (`ops/index.rs`) and the
//! fast path (`cpu/index.rs`); and the reference twins of gather,
//! scatter_add, one_hot and nll_loss's class targets, element by element
//! in row-major order.

use crate::layout::Layout;

/// The fields of `index.wgsl`'s `Params` besides the thread count; the
/// stride sets are already coalesced over `shape`. The fast CPU paths
/// (`cpu::index`) walk the same description.
#[derive(Default)]
pub(crate) struct Walk<'a> {
    pub(crate) shape: &'a [usize],
    /// Strides of the gathered-from (or scattered-to) tensor, the indexed dim zeroed.
    pub(crate) x_strides: &'a [usize],
    /// Strides of the index (unused by scatter_add, whose index is dense).
    pub(crate) i_strides: &'a [usize],
    pub(crate) x_offset: usize,
    pub(crate) dim_stride: usize,
    pub(crate) dim_size: usize,
    /// A class index that is not an error (class_targets only).
    pub(crate) ignore: Option<u32>,
}

/// Row-major coordinates of element `i` of `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut coords = vec![0; shape.len()];
    for (c, &d) in coords.iter_mut().zip(shape).rev() {
        *c = i % d;
        i /= d;
    }
    coords
}

/// Buffer position of coordinates under strides.
fn dot(coords: &[usize], strides: &[usize]) -> usize {
    coords.iter().zip(strides).map(|(c, s)| c * s).sum()
}

/// `torch.gather` (and `index_select`, whose index strides are 0 but along
/// `dim`): output element `c` of `out_shape` reads its index
/// `j = index[c · index_strides]`, then `xs` (viewed as `x`) at `c` with
/// `c[dim] = j`; 0.0 where `j` is out of range (the kernel's meaning after
/// it records the error).
pub(crate) fn gather(
    xs: &[f32],
    x: &Layout,
    dim: usize,
    (index, index_strides): (&[u32], &[usize]),
    (out_shape, out): (&[usize], &mut [f32]),
) {
    let dim_size = x.shape[dim];
    for (i, y) in out.iter_mut().enumerate() {
        let mut c = unravel(i, out_shape);
        let j = index[dot(&c, index_strides)] as usize;
        *y = if j < dim_size {
            c[dim] = j;
            xs[x.offset + dot(&c, &x.strides)]
        } else {
            0.0
        };
    }
}

/// `torch.Tensor.scatter_add_` on the dense `dst` of `dst_shape`:
/// `dst[c with c[dim] = index[c]] += src[c]` for each element `c` of the
/// dense `index` and `src` (of `index_shape`), in index order; an index
/// out of range skips its element.
pub(crate) fn scatter_add(
    (dst, dst_shape): (&mut [f32], &[usize]),
    dim: usize,
    index: &[u32],
    (src, index_shape): (&[f32], &[usize]),
) {
    let strides = crate::layout::contiguous_strides(dst_shape);
    for (i, (&j, &s)) in index.iter().zip(src).enumerate() {
        let j = j as usize;
        if j < dst_shape[dim] {
            let mut c = unravel(i, index_shape);
            c[dim] = j;
            dst[dot(&c, &strides)] += s;
        }
    }
}

/// `torch.nn.functional.one_hot` in f32: row `r` of `out` (`classes`
/// wide) is 1.0 at `labels[r]` and 0.0 elsewhere; all zeros for a label
/// out of range.
pub(crate) fn one_hot(labels: &[u32], classes: usize, out: &mut [f32]) {
    for (row, &label) in out.chunks_exact_mut(classes.max(1)).zip(labels) {
        for (c, y) in row.iter_mut().enumerate() {
            *y = if label as usize == c { 1.0 } else { 0.0 };
        }
    }
}

/// nll_loss's class targets made safe to look up: `safe` holds each
/// target, 0 where it is out of range; `keep` 1.0 where the row counts (in
/// range and not `ignore`), else 0.0.
pub(crate) fn class_targets(
    targets: &[u32],
    (classes, ignore): (usize, Option<u32>),
    safe: &mut [u32],
    keep: &mut [f32],
) {
    for ((&t, s), k) in targets.iter().zip(safe).zip(keep) {
        let in_range = (t as usize) < classes;
        *s = if in_range { t } else { 0 };
        *k = if in_range && Some(t) != ignore { 1.0 } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::contiguous_strides;

    #[test]
    fn unravel_and_dot_invert_row_major_order() {
        let shape = [2, 3, 4];
        let strides = contiguous_strides(&shape);
        for i in 0..24 {
            assert_eq!(dot(&unravel(i, &shape), &strides), i);
        }
        assert_eq!(unravel(23, &shape), vec![1, 2, 3]);
    }
}

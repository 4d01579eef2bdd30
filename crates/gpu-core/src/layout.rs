//! Shapes and strides: how a flat buffer is viewed as an n-dimensional array.
//!
//! Views (transpose, slice, broadcast) only change a [`Layout`]; kernels that
//! accept a layout read through it, the others need contiguous input.

use smallvec::SmallVec;

pub use crate::dims::{Dims, MAX_DIMS};
use crate::{Error, Result};

/// A strided view: element `[i0, i1, ...]` lives at `offset + sum(ik * strides[k])`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Size of each dimension.
    pub shape: Dims,
    /// Distance in elements between neighbours along each dimension (0 = broadcast).
    pub strides: Dims,
    /// Index of the first element in the buffer.
    pub offset: usize,
}

/// Row-major strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Dims {
    let mut strides: Dims = Dims::filled(0, shape.len());
    let mut acc = 1;
    for (s, &d) in strides.iter_mut().zip(shape).rev() {
        *s = acc;
        acc *= d;
    }
    strides
}

/// Number of elements of a shape (1 for a scalar, 0 when any dim is 0).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// NumPy broadcasting of two shapes, or `None` when they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Dims> {
    let rank = a.len().max(b.len());
    let mut out: Dims = Dims::filled(0, rank);
    for i in 0..rank {
        let da = if i < rank - a.len() { 1 } else { a[i - (rank - a.len())] };
        let db = if i < rank - b.len() { 1 } else { b[i - (rank - b.len())] };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

impl Layout {
    /// A dense row-major layout.
    pub fn contiguous(shape: &[usize]) -> Self {
        Layout { shape: shape.into(), strides: contiguous_strides(shape), offset: 0 }
    }

    /// Number of elements viewed.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// True when the view is dense row-major starting at offset 0.
    pub fn is_contiguous(&self) -> bool {
        self.offset == 0 && self.is_dense_row_major()
    }

    /// True when the view is dense row-major (at any offset).
    pub fn is_dense_row_major(&self) -> bool {
        // Size-1 dims may carry any stride. Walked from the last dim with
        // the running row-major stride (no vector: this runs per launch).
        let mut expect = 1;
        self.shape.iter().zip(&self.strides).rev().all(|(&d, &s)| {
            let ok = d == 1 || s == expect;
            expect *= d;
            ok
        })
    }

    /// The highest buffer index this view touches plus one (0 when empty).
    pub fn span(&self) -> usize {
        if self.numel() == 0 {
            return 0;
        }
        self.offset + self.shape.iter().zip(&self.strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>() + 1
    }

    /// This view broadcast to `shape` (NumPy rules; new and size-1 dims get stride 0).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Layout> {
        if shape.len() < self.rank() {
            return Err(Error::invalid(
                "broadcast_to",
                format!("cannot broadcast {:?} to lower rank {:?}", self.shape, shape),
            ));
        }
        let lead = shape.len() - self.rank();
        let mut strides: Dims = Dims::filled(0, shape.len());
        for (i, &d) in shape.iter().enumerate().skip(lead) {
            let (sd, ss) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = if sd == d {
                ss
            } else if sd == 1 {
                0
            } else {
                return Err(Error::invalid(
                    "broadcast_to",
                    format!("cannot broadcast {:?} to {:?}", self.shape, shape),
                ));
            };
        }
        Ok(Layout { shape: shape.into(), strides, offset: self.offset })
    }

    /// Reorders dimensions: output dim `i` is input dim `dims[i]`.
    pub fn permute(&self, dims: &[usize]) -> Result<Layout> {
        let mut seen = vec![false; self.rank()];
        if dims.len() != self.rank() || dims.iter().any(|&d| d >= self.rank() || std::mem::replace(&mut seen[d], true))
        {
            return Err(Error::invalid(
                "permute",
                format!("{dims:?} is not a permutation of the {} dims of {:?}", self.rank(), self.shape),
            ));
        }
        Ok(Layout {
            shape: dims.iter().map(|&d| self.shape[d]).collect(),
            strides: dims.iter().map(|&d| self.strides[d]).collect(),
            offset: self.offset,
        })
    }

    /// Keeps `len` elements of dimension `dim` starting at `start`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Layout> {
        if dim >= self.rank() || start + len > self.shape[dim] {
            return Err(Error::invalid(
                "narrow",
                format!("dim {dim}, range {start}..{} out of bounds for shape {:?}", start + len, self.shape),
            ));
        }
        let mut out = self.clone();
        out.offset += start * self.strides[dim];
        out.shape[dim] = len;
        Ok(out)
    }

    /// The same elements viewed with `shape`, without copying, as PyTorch's
    /// `view`: each run of dims that `shape` splits or merges must be dense
    /// within itself (a narrowed last dim split into heads is a view; a
    /// transposed pair merged into one is not). Any other view is an
    /// error, and the caller materialises it with `ops::copy::contiguous`
    /// first. Empty views reshape freely, since no element's position can
    /// be wrong.
    pub fn reshape(&self, shape: &[usize]) -> Result<Layout> {
        if numel(shape) != self.numel() {
            return Err(Error::invalid(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) to {:?} ({} elements)",
                    self.shape,
                    self.numel(),
                    shape,
                    numel(shape)
                ),
            ));
        }
        if self.numel() == 0 || self.is_dense_row_major() {
            return Ok(Layout { shape: shape.into(), strides: contiguous_strides(shape), offset: self.offset });
        }
        match self.view_strides(shape) {
            Some(strides) => Ok(Layout { shape: shape.into(), strides, offset: self.offset }),
            None => Err(Error::invalid(
                "reshape",
                format!(
                    "cannot view {:?} with strides {:?} as {:?}: the dims it merges are not dense together; \
                     make it contiguous first",
                    self.shape, self.strides, shape
                ),
            )),
        }
    }

    /// The strides of `shape` over the same elements (same count, non-zero),
    /// or `None` when some run of merged dims is not dense within itself:
    /// PyTorch's `computeStride`. The old dims are walked from the last in
    /// chunks that are each one strided block; the new dims must tile each
    /// chunk exactly.
    fn view_strides(&self, shape: &[usize]) -> Option<Dims> {
        let (old, st) = (&self.shape, &self.strides);
        if old.is_empty() {
            return Some(contiguous_strides(shape));
        }
        let mut strides: Dims = Dims::filled(0, shape.len());
        let mut view_d = shape.len();
        let mut base = st[old.len() - 1];
        let (mut chunk, mut viewed) = (1, 1);
        for d in (0..old.len()).rev() {
            chunk *= old[d];
            // A chunk ends where the dim before is not this block's continuation.
            if d == 0 || (old[d - 1] != 1 && st[d - 1] != chunk * base) {
                while view_d > 0 && (viewed < chunk || shape[view_d - 1] == 1) {
                    view_d -= 1;
                    strides[view_d] = viewed * base;
                    viewed *= shape[view_d];
                }
                if viewed != chunk {
                    return None;
                }
                if d > 0 {
                    (base, chunk, viewed) = (st[d - 1], 1, 1);
                }
            }
        }
        (view_d == 0).then_some(strides)
    }

    pub(crate) fn check_rank(&self, op: &'static str) -> Result<()> {
        if self.rank() > MAX_DIMS {
            return Err(Error::invalid(op, format!("rank {} exceeds the maximum of {MAX_DIMS}", self.rank())));
        }
        Ok(())
    }

    /// Buffer index of the `i`-th element in row-major order (the CPU twin of WGSL `strided_offset`).
    pub fn index_of(&self, mut i: usize) -> usize {
        let mut off = self.offset;
        for d in (0..self.rank()).rev() {
            let n = self.shape[d];
            off += (i % n) * self.strides[d];
            i /= n;
        }
        off
    }
}

/// Merges neighbouring dimensions that every operand walks as one (and drops
/// size-1 dims), so kernels do less index arithmetic. Returns the merged shape
/// and each operand's merged strides; a scalar becomes shape `[1]`.
pub fn coalesce(shape: &[usize], strides: &[&[usize]]) -> (Dims, SmallVec<[Dims; 4]>) {
    let mut out_shape = Dims::new();
    let mut out_strides: SmallVec<[Dims; 4]> = smallvec::smallvec![Dims::new(); strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = !out_shape.is_empty()
            && strides.iter().zip(&out_strides).all(|(s, o)| *o.last().unwrap() == s[d] * shape[d]);
        if mergeable {
            *out_shape.last_mut().unwrap() *= shape[d];
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                *o.last_mut().unwrap() = s[d];
            }
        } else {
            out_shape.push(shape[d]);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    if out_shape.is_empty() {
        out_shape.push(1);
        for o in out_strides.iter_mut() {
            o.push(1);
        }
    }
    (out_shape, out_strides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[3, 1, 5], &[4, 1]), Some([3, 4, 5].into()));
        assert_eq!(broadcast_shapes(&[], &[2]), Some([2].into()));
        assert_eq!(broadcast_shapes(&[0, 1], &[1, 3]), Some([0, 3].into()));
        assert_eq!(broadcast_shapes(&[2, 3], &[3, 2]), None);
    }

    #[test]
    fn views_index_like_numpy() {
        let l = Layout::contiguous(&[2, 3, 4]);
        let t = l.permute(&[2, 0, 1]).unwrap();
        // t[1, 1, 2] == l[1, 2, 1] == 1*12 + 2*4 + 1
        assert_eq!(t.index_of(6 + 3 + 2), 21);
        let n = l.narrow(2, 1, 2).unwrap();
        assert_eq!(n.index_of(0), 1);
        assert_eq!(n.index_of(3), 6);
        assert!(!n.is_contiguous());
        let b = Layout::contiguous(&[3, 1]).broadcast_to(&[2, 3, 4]).unwrap();
        assert_eq!(b.strides, vec![0, 1, 0]);
        assert!(l.permute(&[0, 0, 1]).is_err());
    }

    #[test]
    fn coalescing_merges_dense_runs() {
        let (s, st) = coalesce(&[2, 3, 4], &[&[12, 4, 1], &[0, 4, 1]]);
        assert_eq!(s, vec![2, 12]);
        assert_eq!(st.to_vec(), vec![Dims::from([12, 1]), [0, 1].into()]);
        let (s, st) = coalesce(&[1, 1], &[&[1, 1]]);
        assert_eq!((s, st.to_vec()), ([1].into(), vec![Dims::from([1])]));
    }

    #[test]
    fn reshape_views_split_and_merge_dense_runs_like_pytorch() {
        // q cut from a packed [B, T, 3E] projection, split into heads: a view.
        let qkv = Layout::contiguous(&[2, 5, 3 * 8]);
        let q = qkv.narrow(2, 8, 8).unwrap();
        let heads = q.reshape(&[2, 5, 4, 2]).unwrap();
        assert_eq!((heads.strides.clone(), heads.offset), ([120, 24, 2, 1].into(), 8));
        // Merging the batch and time dims back is a view too (their run is dense).
        let rows = q.reshape(&[10, 8]).unwrap();
        assert_eq!(rows.strides, vec![24, 1]);
        // Size-1 dims anywhere.
        assert_eq!(q.reshape(&[1, 2, 5, 1, 8]).unwrap().strides[1..3], [120, 24]);
        // A transposed pair merged is not; split alone it is.
        let t = Layout::contiguous(&[4, 6]).permute(&[1, 0]).unwrap();
        assert!(t.reshape(&[24]).is_err());
        assert_eq!(t.reshape(&[2, 3, 4]).unwrap().strides, vec![3, 1, 6]);
        // Every element lands where the copy-then-reshape would put it.
        for (l, shape) in [(&heads, &[10, 4, 2][..]), (&q, &[5, 2, 8]), (&t, &[3, 2, 2, 2])] {
            let v = l.reshape(shape).unwrap();
            assert!((0..l.numel()).all(|i| v.index_of(i) == l.index_of(i)), "{:?} as {shape:?}", l.shape);
        }
    }

    #[test]
    fn reshape_is_free_only_for_dense_views() {
        let l = Layout::contiguous(&[2, 3, 4]);
        let r = l.reshape(&[6, 4]).unwrap();
        assert_eq!((r.shape.clone(), r.strides.clone(), r.offset), ([6, 4].into(), [4, 1].into(), 0));
        // A dense slice along the first dim keeps its offset.
        let s = l.narrow(0, 1, 1).unwrap().reshape(&[3, 4]).unwrap();
        assert_eq!((s.strides.clone(), s.offset), ([4, 1].into(), 12));
        assert_eq!(s.index_of(5), 17);
        assert_eq!(
            l.reshape(&[]).unwrap_err().to_string(),
            "reshape: cannot reshape [2, 3, 4] (24 elements) to [] (1 elements)"
        );
        let msg = l.reshape(&[5, 5]).unwrap_err().to_string();
        assert!(msg.contains("[2, 3, 4]") && msg.contains("[5, 5]"), "{msg}");
        let t = l.permute(&[1, 0, 2]).unwrap();
        let msg = t.reshape(&[24]).unwrap_err().to_string();
        assert!(msg.contains("contiguous") && msg.contains("[3, 2, 4]"), "{msg}");
        assert!(l.narrow(2, 0, 2).unwrap().reshape(&[12]).is_err());
        assert!(Layout::contiguous(&[3]).broadcast_to(&[2, 3]).unwrap().reshape(&[6]).is_err());
        // Size-1 dims with odd strides and empty views are still free.
        let one = Layout { shape: Dims::from([1, 4]), strides: Dims::from([99, 1]), offset: 3 };
        assert_eq!(
            one.reshape(&[2, 2]).unwrap(),
            Layout { shape: Dims::from([2, 2]), strides: Dims::from([2, 1]), offset: 3 }
        );
        let empty = Layout { shape: Dims::from([0, 3]), strides: Dims::from([1, 7]), offset: 0 };
        assert_eq!(empty.reshape(&[3, 0]).unwrap().shape, vec![3, 0]);
        let scalar = Layout::contiguous(&[]).reshape(&[1, 1]).unwrap();
        assert_eq!(scalar.strides, vec![1, 1]);
    }
}

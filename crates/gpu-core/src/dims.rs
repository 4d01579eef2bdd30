//! [`Dims`]: a shape or a list of strides, kept inline.
//!
//! Every op makes, clones and views layouts several times per launch (the
//! output's shape, the operands' broadcast views, the saved inputs of the
//! backward); with a `Vec` each of those was a heap allocation, most of
//! an eager launch's. Up to [`MAX_DIMS`] entries
//! (the highest rank a kernel accepts) live in the value itself; a higher
//! rank (host-only tensors) spills to the heap.

use std::fmt;
use std::ops::{Deref, DerefMut};

use smallvec::SmallVec;

/// The highest rank a kernel accepts (sizes travel to WGSL as two `vec4<u32>`).
pub const MAX_DIMS: usize = 8;

/// A shape or a list of strides. Derefs to a growable list (`push`,
/// `insert`, ...) and from there to `&[usize]`; compares equal to a slice,
/// array or `Vec` of the same entries and prints like one (`[2, 3]`).
/// `Dims::from(&[2, 3][..])`, `[2, 3].into()` or `iter.collect()` make one,
/// `.to_vec()` gives a `Vec`.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dims(SmallVec<[usize; MAX_DIMS]>);

impl Dims {
    /// No entries (a scalar's shape).
    pub fn new() -> Self {
        Self(SmallVec::new())
    }

    /// `n` entries, each `value`.
    pub fn filled(value: usize, n: usize) -> Self {
        Self(SmallVec::from_elem(value, n))
    }
}

impl Deref for Dims {
    type Target = SmallVec<[usize; MAX_DIMS]>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Dims {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl fmt::Debug for Dims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl From<&[usize]> for Dims {
    fn from(s: &[usize]) -> Self {
        Self(SmallVec::from_slice(s))
    }
}

impl From<&Vec<usize>> for Dims {
    fn from(s: &Vec<usize>) -> Self {
        Self(SmallVec::from_slice(s))
    }
}

impl From<Vec<usize>> for Dims {
    fn from(v: Vec<usize>) -> Self {
        Self(SmallVec::from_slice(&v))
    }
}

impl<const N: usize> From<[usize; N]> for Dims {
    fn from(a: [usize; N]) -> Self {
        Self(SmallVec::from_slice(&a))
    }
}

impl<const N: usize> From<&[usize; N]> for Dims {
    fn from(a: &[usize; N]) -> Self {
        Self(SmallVec::from_slice(a))
    }
}

impl From<Dims> for Vec<usize> {
    fn from(d: Dims) -> Self {
        d.0.to_vec()
    }
}

impl FromIterator<usize> for Dims {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Extend<usize> for Dims {
    fn extend<I: IntoIterator<Item = usize>>(&mut self, iter: I) {
        self.0.extend(iter)
    }
}

impl<'a> IntoIterator for &'a Dims {
    type Item = &'a usize;
    type IntoIter = std::slice::Iter<'a, usize>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Dims {
    type Item = usize;
    type IntoIter = smallvec::IntoIter<[usize; MAX_DIMS]>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl AsRef<[usize]> for Dims {
    fn as_ref(&self) -> &[usize] {
        &self.0
    }
}

impl std::borrow::Borrow<[usize]> for Dims {
    fn borrow(&self) -> &[usize] {
        &self.0
    }
}

impl PartialEq<[usize]> for Dims {
    fn eq(&self, other: &[usize]) -> bool {
        self.0[..] == *other
    }
}

impl PartialEq<&[usize]> for Dims {
    fn eq(&self, other: &&[usize]) -> bool {
        self.0[..] == **other
    }
}

impl PartialEq<Vec<usize>> for Dims {
    fn eq(&self, other: &Vec<usize>) -> bool {
        self.0[..] == other[..]
    }
}

impl<const N: usize> PartialEq<[usize; N]> for Dims {
    fn eq(&self, other: &[usize; N]) -> bool {
        self.0[..] == other[..]
    }
}

impl<const N: usize> PartialEq<&[usize; N]> for Dims {
    fn eq(&self, other: &&[usize; N]) -> bool {
        self.0[..] == other[..]
    }
}

impl PartialEq<Dims> for Vec<usize> {
    fn eq(&self, other: &Dims) -> bool {
        self[..] == other.0[..]
    }
}

impl PartialEq<Dims> for [usize] {
    fn eq(&self, other: &Dims) -> bool {
        *self == other.0[..]
    }
}

impl PartialEq<Dims> for &[usize] {
    fn eq(&self, other: &Dims) -> bool {
        **self == other.0[..]
    }
}

impl<const N: usize> PartialEq<Dims> for [usize; N] {
    fn eq(&self, other: &Dims) -> bool {
        self[..] == other.0[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_compare_and_print_like_the_slices_they_hold() {
        let d: Dims = [2, 3].into();
        assert_eq!(d, vec![2, 3]);
        assert_eq!(d, [2, 3]);
        assert_eq!(d, &[2usize, 3][..]);
        assert_eq!(vec![2, 3], d);
        assert_ne!(d, [2, 3, 1]);
        assert_eq!(format!("{d:?}"), "[2, 3]");
        let long: Dims = (0..12).collect();
        assert_eq!(long.len(), 12);
        assert!(long.spilled(), "past MAX_DIMS the entries live on the heap");
        assert!(!d.spilled());
    }
}

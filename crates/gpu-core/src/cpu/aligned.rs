//! A growable run of `f32`s that starts on a cache line: the packed
//! operands of `gemm_packed_a.rs`. `Vec<f32>` is only 4-byte aligned, and
//! glibc hands a large allocation out 16 bytes past a page, so every other
//! 32-byte load of a packed run of B straddled two cache lines (and every
//! 64-byte one did): on a Zen 3 core the AVX2 kernel's products from
//! packed operands took 2-4% longer that way (41 runs alternated).

use std::ops::{Deref, DerefMut};

/// Floats per cache line.
const LINE: usize = 16;

/// One cache line of floats.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

/// `len` floats from the start of a cache line, in whole lines.
pub(crate) struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// Empty, allocating nothing.
    pub(crate) const fn new() -> Self {
        AlignedVec { lines: Vec::new(), len: 0 }
    }

    /// Makes it `len` floats long, keeping the allocation (and what the
    /// kept lines held) where it is large enough; new lines are zero.
    pub(crate) fn resize(&mut self, len: usize) {
        self.lines.resize(len.div_ceil(LINE), Line([0.0; LINE]));
        self.len = len;
    }
}

impl Deref for AlignedVec {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        // SAFETY: `Line` is 16 `f32`s with no padding (`repr(C)`, size 64 =
        // its alignment), so the lines are `16 · lines.len() >= len`
        // contiguous, initialized floats.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast(), self.len) }
    }
}

impl DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as in `deref`, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts on a line at every length, keeps what it held when it grows
    /// within its lines, and zeroes the lines it adds.
    #[test]
    fn starts_on_a_line_and_keeps_its_floats() {
        let mut v = AlignedVec::new();
        assert!(v.is_empty());
        for len in [1, 15, 16, 17, 1000, 3] {
            v.resize(len);
            assert_eq!(v.len(), len);
            assert_eq!(v.as_ptr() as usize % 64, 0, "length {len}");
            v.iter_mut().enumerate().for_each(|(i, x)| *x = i as f32);
        }
        v.resize(40);
        assert_eq!(&v[..3], &[0.0, 1.0, 2.0]);
        // Floats 3..16 lay in the kept first line; lines past it are new.
        assert!(v[16..].iter().all(|&x| x == 0.0));
    }
}

//! The CPU backend's one way into `matrixmultiply::sgemm` (the matmul twin
//! and the conv and attention fast paths): matrix views over slices whose
//! extents are checked before the call, so the callers hold no unsafe code.

/// An `m` x `k` (or `k` x `n`) matrix read from `data` through row and
/// column strides: row-major, its transpose, or any other strided view.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> Mat<'a> {
    /// `data` as a row-major matrix of `cols` columns.
    pub(crate) fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat { data, rs: cols, cs: 1 }
    }

    /// The transpose of the row-major matrix of `cols` columns in `data`.
    pub(crate) fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat { data, rs: 1, cs: cols }
    }

    /// Panics unless every element of an `r` x `c` view lies in `data`.
    fn check(&self, r: usize, c: usize, what: &str) {
        if r > 0 && c > 0 {
            let last = (r - 1) * self.rs + (c - 1) * self.cs;
            assert!(last < self.data.len(), "wgrad internal: gemm {what} view {r}x{c} overruns its slice");
        }
    }
}

/// `c = alpha · a @ b + beta · c` for `a` `m` x `k`, `b` `k` x `n` and `c`
/// row-major `m` x `n` with rows `ldc` apart.
pub(crate) fn gemm((m, k, n): (usize, usize, usize), alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    a.check(m, k, "A");
    b.check(k, n, "B");
    assert!((m - 1) * ldc + n <= c.len() && n <= ldc, "wgrad internal: gemm C {m}x{n} overruns its slice");
    // SAFETY: the checks above keep every index of the three views inside
    // their slices, and `c` is borrowed mutably, so it aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

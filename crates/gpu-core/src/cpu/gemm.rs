//! The CPU backend's one way into an sgemm (the matmul twin and the conv
//! and attention fast paths): matrix views over slices whose extents are
//! checked before the call, so the callers hold no unsafe code, and large
//! products split over rayon's threads. The kernel: small products of the
//! dot-product form go to `gemm_abt.rs`, products with a small A on
//! AVX-512 hosts (and short ones on AVX2 hosts) to `gemm_packed_a.rs`, the
//! rest to `matrixmultiply`.

use super::{gemm_abt, gemm_packed_a};

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

/// Products below this many multiply-adds run on the calling thread: a
/// split's hand-off costs more than it saves.
const SPLIT_MIN_MACS: usize = 1 << 18;

/// Columns (or rows) of C one task takes at least when a product is split.
const SPLIT_MIN_WIDTH: usize = 64;

/// Rows of C each part needs for a packed-A product to be split along its
/// rows rather than its columns.
const PACKED_ROWS_PER_PART: usize = 64;

/// `c = alpha · a @ b + beta · c` for `a` `m` x `k`, `b` `k` x `n` and `c`
/// row-major `m` x `n` with rows `ldc` apart.
///
/// Threading is rayon's, as everywhere in the CPU backend: a product made
/// inside a rayon task (one image of a convolution) runs on that task's
/// thread, and a large product made outside one is split over the pool
/// along its longer side of C (a convolution's C is 16 x 7,168, say). Each
/// part is a single-threaded sgemm, with the same summation order as the
/// whole: splitting C changes no bit of it. (`matrixmultiply`'s own
/// threads, beside rayon's, oversubscribed the cores and split a 16-row C
/// poorly.)
pub(crate) fn gemm((m, k, n): (usize, usize, usize), alpha: f32, a: Mat, b: Mat, beta: f32, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    a.check(m, k, "A");
    b.check(k, n, "B");
    assert!((m - 1) * ldc + n <= c.len() && n <= ldc, "wgrad internal: gemm C {m}x{n} overruns its slice");
    // Chosen for the whole product, so that its parts below run the same
    // kernel as the whole would.
    let packed_a = gemm_packed_a::takes((m, k), b.cs);
    let threads = rayon::current_num_threads();
    let side = m.max(n);
    let parts = threads.min(side / SPLIT_MIN_WIDTH);
    if rayon::current_thread_index().is_some() || parts < 2 || m * k * n < SPLIT_MIN_MACS {
        // A few outputs over long rows of A and of Bᵀ (a convolution's
        // per-image weight gradient): unpacked dot products beat a packed
        // sgemm there (`gemm_abt.rs`).
        let dots = a.cs == 1 && b.rs == 1 && k >= gemm_abt::MIN_K && m * n <= gemm_abt::MAX_OUTPUTS;
        if dots && (beta == 0.0 || beta == 1.0) {
            return gemm_abt::gemm_abt((m, n, k), alpha, (a.data, a.rs), (b.data, b.cs), c, ldc, beta == 1.0);
        }
        // SAFETY: the checks above keep every index of the three views
        // inside their slices, and `c` is borrowed mutably, so it aliases
        // neither input.
        return unsafe {
            sgemm(
                (m, k, n),
                alpha,
                (a.data.as_ptr(), a.rs, a.cs),
                (b.data.as_ptr(), b.rs, b.cs),
                beta,
                c.as_mut_ptr(),
                ldc,
                packed_a,
            )
        };
    }
    use rayon::prelude::*;
    let (a_ptr, b_ptr, c_ptr) =
        (SendPtr(a.data.as_ptr() as *mut f32), SendPtr(b.data.as_ptr() as *mut f32), SendPtr(c.as_mut_ptr()));
    // Along the rows of C when the packed-A kernel has rows enough for
    // every part: each part then packs only its rows of A, where a split
    // along the columns packs all of A in every part (at 256³ about a
    // third of a part's time). Otherwise along the longer side.
    let by_rows = m > n || (packed_a && m >= parts * PACKED_ROWS_PER_PART);
    let side = if by_rows { m } else { n };
    let per = side.div_ceil(parts);
    (0..parts).into_par_iter().for_each(|p| {
        let (lo, hi) = (p * per, ((p + 1) * per).min(side));
        if lo >= hi {
            return;
        }
        let (a_ptr, b_ptr, c_ptr) = (a_ptr.get(), b_ptr.get(), c_ptr.get());
        // SAFETY: part p reads rows lo..hi of A (or columns lo..hi of B),
        // inside their checked views, and writes rows (or columns) lo..hi
        // of C, which no other part touches; `c` stays borrowed mutably
        // until every part has finished.
        unsafe {
            if !by_rows {
                let b_at = b_ptr.add(lo * b.cs);
                let b_view = (b_at as *const f32, b.rs, b.cs);
                sgemm((m, k, hi - lo), alpha, (a_ptr, a.rs, a.cs), b_view, beta, c_ptr.add(lo), ldc, packed_a);
            } else {
                let a_at = a_ptr.add(lo * a.rs);
                let a_view = (a_at as *const f32, a.rs, a.cs);
                sgemm((hi - lo, k, n), alpha, a_view, (b_ptr, b.rs, b.cs), beta, c_ptr.add(lo * ldc), ldc, packed_a);
            }
        }
    });
}

/// A pointer handed to the parts of a split product (see [`gemm`]).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

// SAFETY: the parts of a split product write disjoint elements of C and
// only read A and B (see `gemm`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the wrapper whole).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `gemm_packed_a` (when `packed_a`: see [`gemm_packed_a::takes`]) or
/// `matrixmultiply::sgemm` on raw views, on the calling thread.
///
/// # Safety
/// Every element of the `m` x `k`, `k` x `n` and `m` x `n` views must lie
/// in memory valid for reads (A, B) and writes (C), C aliasing neither;
/// `packed_a` only where `takes` said so.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm(
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    (a, a_rs, a_cs): (*const f32, usize, usize),
    (b, b_rs, b_cs): (*const f32, usize, usize),
    beta: f32,
    c: *mut f32,
    ldc: usize,
    packed_a: bool,
) {
    if packed_a {
        return gemm_packed_a::gemm_packed_a((m, k, n), alpha, (a, a_rs, a_cs), (b, b_rs, b_cs), beta, c, ldc);
    }
    matrixmultiply::sgemm(
        m,
        k,
        n,
        alpha,
        a,
        a_rs as isize,
        a_cs as isize,
        b,
        b_rs as isize,
        b_cs as isize,
        beta,
        c,
        ldc as isize,
        1,
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Split products (both orientations, transposed and strided views,
    /// accumulation into a wider C) against the same product run whole on
    /// a rayon thread, bit for bit, and against a naive f64 product.
    #[test]
    fn split_products_are_the_whole_products() {
        let mut rng = crate::HostRng::new(7);
        let mut rand = |len: usize| rng.vec(len, -1.0, 1.0);
        // (m, k, n): C split by columns, by rows, and one too small to split.
        for (m, k, n) in [(16, 70, 1100), (1500, 40, 90), (9, 5, 7)] {
            let (a, b) = (rand(m * k), rand(k * n));
            let ldc = n + 3;
            let c0 = rand(m * ldc);
            for transposed in [false, true] {
                // A as stored, or as the transpose of a k x m matrix.
                let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
                let av = if transposed { Mat::transposed(&at, m) } else { Mat::rows(&a, k) };
                let bv = Mat::rows(&b, n);
                let mut split = c0.clone();
                gemm((m, k, n), 0.5, av, bv, 1.0, &mut split, ldc);
                let mut whole = c0.clone();
                rayon::scope(|s| s.spawn(|_| gemm((m, k, n), 0.5, av, bv, 1.0, &mut whole, ldc)));
                assert!(split == whole, "{m}x{k}x{n} transposed={transposed}: split differs from whole");
                let dot = |i: usize, j: usize| (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
                assert_product(
                    &format!("{m}x{k}x{n} transposed={transposed}"),
                    &split,
                    &c0,
                    (m, n, ldc),
                    0.5,
                    1.0,
                    dot,
                );
            }
        }
    }

    /// A product of the dot-product form (A by rows, B as the transpose of
    /// rows, long inner dimension, few outputs) goes to `gemm_abt`, with
    /// B's rows found from its column stride; beta 0 and 1 both.
    #[test]
    fn dot_product_form_goes_through_gemm_abt() {
        let mut rng = crate::HostRng::new(11);
        let (m, k, n) = (6, gemm_abt::MIN_K + 17, 9);
        let (a, b) = (rng.vec(m * k, -1.0, 1.0), rng.vec(n * k, -1.0, 1.0));
        let ldc = n + 2;
        let c0 = rng.vec(m * ldc, -1.0, 1.0);
        let dot = |i: usize, j: usize| (0..k).map(|p| a[i * k + p] as f64 * b[j * k + p] as f64).sum();
        for beta in [0.0, 1.0] {
            let mut c = c0.clone();
            gemm((m, k, n), 0.5, Mat::rows(&a, k), Mat::transposed(&b, k), beta, &mut c, ldc);
            assert_product(&format!("beta {beta}"), &c, &c0, (m, n, ldc), 0.5, beta as f64, dot);
            let mut direct = c0.clone();
            gemm_abt::gemm_abt((m, n, k), 0.5, (&a, k), (&b, k), &mut direct, ldc, beta == 1.0);
            assert!(c == direct, "beta {beta}: not the dot-product kernel's bits");
        }
    }

    /// Asserts `c` = `alpha · dot(i, j) + beta · c0` (f64 `dot`, an f32
    /// tolerance) over the `m` x `n` block of rows `ldc` apart, and `c0` left
    /// as it was past column `n`: the products' tests share it.
    pub(crate) fn assert_product(
        what: &str,
        c: &[f32],
        c0: &[f32],
        (m, n, ldc): (usize, usize, usize),
        alpha: f64,
        beta: f64,
        dot: impl Fn(usize, usize) -> f64,
    ) {
        for i in 0..m {
            for j in 0..ldc {
                let was = c0[i * ldc + j] as f64;
                let want = if j < n { alpha * dot(i, j) + beta * was } else { was };
                let got = c[i * ldc + j] as f64;
                assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "{what} [{i},{j}]: {got} vs {want}");
            }
        }
    }
}

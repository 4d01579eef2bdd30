//! `C (+)= A · Bᵀ` (reached through `cpu::gemm`, which picks it for small
//! products of this form) where the rows of both A and B run along the inner
//! dimension: every output is a dot product of two contiguous rows, so the
//! product needs no packing. `matrixmultiply` packs both operands on every
//! call, which for a convolution's per-image weight gradient (16 x 1024 x
//! 144: dY · colsᵀ) is as much work as the multiply-adds; here each output
//! keeps 16 lanes of partial sums in registers.
//!
//! Every output is computed the same way whatever the vector level and
//! wherever it sits in a register block: element `p` of the dot product goes
//! to lane `p % 16` (multiply, then add: no FMA), the 16 lanes are added in
//! order, then the `k % 16` tail elements in order. So the AVX-512, AVX2
//! and baseline copies give the same bits (tested), as `simd.rs` promises.

/// Lanes of one dot product's partial sums.
const W: usize = 16;

/// Inner lengths from which [`gemm_abt`] beats a packed sgemm on small
/// products (single-threaded on a Zen 4 host: 16 x 144 x 1024 84 GFLOP/s
/// against 22; 32 x 288 x 256 46 against 48; 64 x 576 x 64 27 against 57):
/// each output's 16 lanes are summed once, which short rows do not pay for.
pub(crate) const MIN_K: usize = 512;

/// Outputs up to which `cpu::gemm` hands a product of this form here: the
/// measured win is on few outputs (2,304 above); larger C reuses packed
/// panels better.
pub(crate) const MAX_OUTPUTS: usize = 4096;

/// `c[i·ldc + j] = alpha·dot(a row i, b row j) (+ c[i·ldc + j] when
/// `accumulate`)` for `i < m`, `j < n`, rows of `k` elements `lda` / `ldb`
/// apart.
///
/// # Panics
/// When a view overruns its slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_abt(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    (a, lda): (&[f32], usize),
    (b, ldb): (&[f32], usize),
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * lda + k <= a.len() && (n - 1) * ldb + k <= b.len(), "wgrad internal: gemm_abt operands overrun");
    assert!((m - 1) * ldc + n <= c.len() && n <= ldc, "wgrad internal: gemm_abt C overruns its slice");
    let level = super::simd::simd_level();
    for i0 in (0..m).step_by(4) {
        let rows_a = (m - i0).min(4);
        for j0 in (0..n).step_by(4) {
            let rows_b = (n - j0).min(4);
            let ar: [&[f32]; 4] = std::array::from_fn(|i| &a[(i0 + i.min(rows_a - 1)) * lda..][..k]);
            let br: [&[f32]; 4] = std::array::from_fn(|j| &b[(j0 + j.min(rows_b - 1)) * ldb..][..k]);
            let lanes = block(level, &ar, &br, k);
            for i in 0..rows_a {
                for j in 0..rows_b {
                    let mut s = 0.0f32;
                    for &l in &lanes[i * 4 + j] {
                        s += l;
                    }
                    for p in k / W * W..k {
                        s += ar[i][p] * br[j][p];
                    }
                    let out = &mut c[(i0 + i) * ldc + j0 + j];
                    *out = if accumulate { *out + alpha * s } else { alpha * s };
                }
            }
        }
    }
}

/// The 16 lanes of each of the 4 x 4 dot products of `a`'s and `b`'s rows
/// over their first `k / 16 · 16` elements, at `level`.
fn block(level: super::simd::SimdLevel, a: &[&[f32]; 4], b: &[&[f32]; 4], k: usize) -> [[f32; W]; 16] {
    #[cfg(target_arch = "x86_64")]
    {
        use super::simd::SimdLevel;
        match level {
            // SAFETY: simd_level never exceeds what the host supports, and
            // every row holds at least `k` elements (checked by the caller).
            SimdLevel::Avx512 => return unsafe { x86::block_avx512(a, b, k) },
            // SAFETY: as above.
            SimdLevel::Avx2 => return unsafe { x86::block_avx2(a, b, k) },
            SimdLevel::Baseline => {}
        }
    }
    let _ = level;
    let mut acc = [[0.0f32; W]; 16];
    for p0 in (0..k / W * W).step_by(W) {
        for i in 0..4 {
            for j in 0..4 {
                let t = &mut acc[i * 4 + j];
                for w in 0..W {
                    t[w] += a[i][p0 + w] * b[j][p0 + w];
                }
            }
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::W;

    /// [`super::block`] with one 16-lane register per dot product.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn block_avx512(a: &[&[f32]; 4], b: &[&[f32]; 4], k: usize) -> [[f32; W]; 16] {
        let mut acc = [_mm512_setzero_ps(); 16];
        for p0 in (0..k / W * W).step_by(W) {
            let av: [__m512; 4] = std::array::from_fn(|i| _mm512_loadu_ps(a[i].as_ptr().add(p0)));
            let bv: [__m512; 4] = std::array::from_fn(|j| _mm512_loadu_ps(b[j].as_ptr().add(p0)));
            for i in 0..4 {
                for j in 0..4 {
                    acc[i * 4 + j] = _mm512_add_ps(acc[i * 4 + j], _mm512_mul_ps(av[i], bv[j]));
                }
            }
        }
        let mut out = [[0.0f32; W]; 16];
        for (o, v) in out.iter_mut().zip(acc) {
            _mm512_storeu_ps(o.as_mut_ptr(), v);
        }
        out
    }

    /// [`super::block`] with two 8-lane registers per dot product (lanes
    /// 0-7 and 8-15).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn block_avx2(a: &[&[f32]; 4], b: &[&[f32]; 4], k: usize) -> [[f32; W]; 16] {
        let mut lo = [_mm256_setzero_ps(); 16];
        let mut hi = [_mm256_setzero_ps(); 16];
        for p0 in (0..k / W * W).step_by(W) {
            let a_lo: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(a[i].as_ptr().add(p0)));
            let a_hi: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(a[i].as_ptr().add(p0 + 8)));
            for j in 0..4 {
                let b_lo = _mm256_loadu_ps(b[j].as_ptr().add(p0));
                let b_hi = _mm256_loadu_ps(b[j].as_ptr().add(p0 + 8));
                for i in 0..4 {
                    lo[i * 4 + j] = _mm256_add_ps(lo[i * 4 + j], _mm256_mul_ps(a_lo[i], b_lo));
                    hi[i * 4 + j] = _mm256_add_ps(hi[i * 4 + j], _mm256_mul_ps(a_hi[i], b_hi));
                }
            }
        }
        let mut out = [[0.0f32; W]; 16];
        for (o, (l, h)) in out.iter_mut().zip(lo.into_iter().zip(hi)) {
            _mm256_storeu_ps(o.as_mut_ptr(), l);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), h);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::tests::assert_product;
    use crate::cpu::simd::{host_simd_level, set_simd_level, simd_level, SimdLevel};

    /// Against a naive f64 product on awkward sizes (edge blocks, tails,
    /// wider rows), with and without accumulation; every vector level the
    /// host has gives the same bits.
    #[test]
    fn matches_a_naive_product_at_every_level() {
        let mut rng = crate::HostRng::new(3);
        let mut rand = |len: usize| rng.vec(len, -1.0, 1.0);
        for (m, n, k) in [(1, 1, 1), (5, 7, 15), (16, 9, 33), (6, 144, 1024), (4, 4, 16)] {
            let (lda, ldb, ldc) = (k + 2, k + 1, n + 3);
            let (a, b, c0) = (rand(m * lda), rand(n * ldb), rand(m * ldc));
            let mut first: Option<Vec<f32>> = None;
            let (host, before) = (host_simd_level(), simd_level());
            for level in [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512].into_iter().filter(|&l| l <= host) {
                set_simd_level(level);
                for accumulate in [false, true] {
                    let mut c = c0.clone();
                    gemm_abt((m, n, k), 0.5, (&a, lda), (&b, ldb), &mut c, ldc, accumulate);
                    let dot = |i: usize, j: usize| (0..k).map(|p| a[i * lda + p] as f64 * b[j * ldb + p] as f64).sum();
                    let beta = if accumulate { 1.0 } else { 0.0 };
                    assert_product(&format!("{m}x{n}x{k}"), &c, &c0, (m, n, ldc), 0.5, beta, dot);
                    if accumulate {
                        match &first {
                            None => first = Some(c),
                            Some(f) => assert!(*f == c, "{m}x{n}x{k}: {} differs from the baseline", level.name()),
                        }
                    }
                }
            }
            // The level a capped run (`WGRAD_CPU_SIMD`) asked for, again.
            set_simd_level(before);
        }
    }
}

//! `C += Σ_entries A_e · B_eᵀ` where every output is a dot product read in
//! runs: row `i` of A is `a[a_rows[i] + run.c ..+ run.len]` and row `j` of
//! B is `b[b_rows[j] + run.b ..+ run.len]` over the same runs, summed over
//! several batch entries. This is a stride-1 convolution's weight gradient
//! read in place (`cpu/conv.rs`): A is the output gradient (a row per
//! output channel), B the zero-bordered input seen through one tap's
//! offset (a row per `(channel, ki, kj)`), and a run a stretch of output
//! pixels along a row, so no column buffer is gathered.
//!
//! Each dot product of a block (4 x 4 on AVX-512, 4 x 3 on AVX2) keeps a
//! register of lanes over every run of every entry (fused multiply-adds), reduced once at the
//! end: a fixed order for a given geometry and entry list, so the result
//! does not depend on threads. On AVX-512 element `t` of a run goes to
//! lane `t` of 16; on AVX2 to lane `t mod 8` of 8, in blocks of 4 x 3
//! (12 registers of sums, 3 of B, 1 of A: each load feeds three or four
//! multiply-adds; keeping 16 lanes would leave room for 2 x 2 blocks only,
//! a load per multiply-add, which ran at half the speed). So
//! the two levels' last bits differ, as any two sgemm kernels' do. Like
//! [`gemm_packed_a`](super::gemm_packed_a), hosts without AVX2 keep the
//! gather and `gemm_abt`/`matrixmultiply`.

use super::gemm_packed_a::{Run, RUN};
use super::simd::{host_simd_level, simd_level, SimdLevel};

/// One batch entry's operands: A's and B's data, the rows found at
/// `a_rows` and `b_rows` in them.
pub(crate) struct Entry<'a> {
    /// Where A's rows of this entry lie.
    pub a: &'a [f32],
    /// Where B's rows of this entry lie.
    pub b: &'a [f32],
}

/// `c[i·ldc + j] += Σ_e Σ_run Σ_t e.a[a_rows[i] + run.c + t] · e.b[b_rows[j] + run.b + t]`
/// for `i < a_rows.len()`, `j < b_rows.len()`.
///
/// # Panics
/// Without AVX2 (see [`super::gemm_packed_a::suits`]), or when a run
/// reads past an entry's data or C is too short.
pub(crate) fn dots(entries: &[Entry], rows: (&[usize], &[usize]), runs: &[Run], c: &mut [f32], ldc: usize) {
    dots_at(simd_level(), entries, rows, runs, c, ldc)
}

/// [`dots`] with the kernel of `level` (tests run each).
fn dots_at(
    level: SimdLevel,
    entries: &[Entry],
    (a_rows, b_rows): (&[usize], &[usize]),
    runs: &[Run],
    c: &mut [f32],
    ldc: usize,
) {
    let (m, n) = (a_rows.len(), b_rows.len());
    if m == 0 || n == 0 {
        return;
    }
    let host = host_simd_level();
    assert!(level >= SimdLevel::Avx2 && level <= host, "wgrad internal: gemm_dots at {level:?} on a {host:?} host");
    let reach = |rows: &[usize], at: fn(&Run) -> usize| {
        rows.iter().max().copied().unwrap_or(0) + runs.iter().map(at).max().unwrap_or(0)
    };
    let (a_reach, b_reach) = (reach(a_rows, |r| r.c + r.len), reach(b_rows, Run::reach));
    for e in entries {
        assert!(a_reach <= e.a.len() && b_reach <= e.b.len(), "wgrad internal: gemm_dots run reads past an entry");
    }
    assert!(runs.iter().all(|r| (1..=RUN).contains(&r.len)), "wgrad internal: gemm_dots run length");
    assert!((m - 1) * ldc + n <= c.len() && n <= ldc, "wgrad internal: gemm_dots C overruns its slice");
    // Blocks of 4 rows of A by 4 rows of B (AVX-512) or 3 (AVX2).
    #[cfg(target_arch = "x86_64")]
    let width = if level == SimdLevel::Avx512 { 4 } else { 3 };
    #[cfg(target_arch = "x86_64")]
    for i0 in (0..m).step_by(4) {
        let rows_a = (m - i0).min(4);
        for j0 in (0..n).step_by(width) {
            let rows_b = (n - j0).min(width);
            // Past the edge a block repeats its last row (not stored).
            let a_at: [usize; 4] = std::array::from_fn(|i| a_rows[i0 + i.min(rows_a - 1)]);
            let b_at: [usize; 4] = std::array::from_fn(|j| b_rows[j0 + j.min(rows_b - 1)]);
            // SAFETY: the host has `level` (asserted); every row of every
            // run lies in its entry's data (asserted above).
            let sums = unsafe {
                if level == SimdLevel::Avx512 {
                    x86::block(entries, (a_at, b_at), runs)
                } else {
                    x86::block_avx2(entries, (a_at, [b_at[0], b_at[1], b_at[2]]), runs)
                }
            };
            for i in 0..rows_a {
                for j in 0..rows_b {
                    c[(i0 + i) * ldc + j0 + j] += sums[i * 4 + j];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Entry, Run, RUN};
    use crate::cpu::gemm_packed_a::x86::{mask8, Lanes};
    use crate::cpu::gemm_packed_a::HALF;

    /// The 16 dot products of rows `a_at` x `b_at` (row-major), summed
    /// over every run of every entry.
    ///
    /// # Safety
    /// AVX-512F present; every run of every row lies in its entry's data.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq")]
    pub(super) unsafe fn block(entries: &[Entry], (a_at, b_at): ([usize; 4], [usize; 4]), runs: &[Run]) -> [f32; 16] {
        let mut acc = [_mm512_setzero_ps(); 16];
        for e in entries {
            let a: [*const f32; 4] = std::array::from_fn(|i| e.a.as_ptr().add(a_at[i]));
            let b: [*const f32; 4] = std::array::from_fn(|j| e.b.as_ptr().add(b_at[j]));
            for r in runs {
                let m = ((1u32 << r.len) - 1) as __mmask16;
                let av: [__m512; 4] = if r.len == RUN {
                    std::array::from_fn(|i| _mm512_loadu_ps(a[i].add(r.c)))
                } else {
                    std::array::from_fn(|i| _mm512_maskz_loadu_ps(m, a[i].add(r.c)))
                };
                let bv: [__m512; 4] = std::array::from_fn(|j| {
                    let lanes = Lanes::new(b[j], Some(*r));
                    if r.split() {
                        lanes.load_split(0)
                    } else {
                        lanes.load(0)
                    }
                });
                for i in 0..4 {
                    for j in 0..4 {
                        acc[i * 4 + j] = _mm512_fmadd_ps(av[i], bv[j], acc[i * 4 + j]);
                    }
                }
            }
        }
        std::array::from_fn(|t| _mm512_reduce_add_ps(acc[t]))
    }

    /// [`block`] on AVX2 + FMA for 4 rows of A by 3 of B, each dot's sums
    /// in the 8 lanes of one register (a run's two halves folded into the
    /// same lanes): 12 registers of sums, 3 of B and 1 of A fill AVX2's 16
    /// (4 x 4 would spill; two passes of 4 x 2 read A twice).
    ///
    /// # Safety
    /// AVX2 and FMA present; every run of every row lies in its entry's data.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block_avx2(
        entries: &[Entry],
        (a_at, b_at): ([usize; 4], [usize; 3]),
        runs: &[Run],
    ) -> [f32; 16] {
        let mut acc = [[_mm256_setzero_ps(); 3]; 4];
        for e in entries {
            let a: [*const f32; 4] = std::array::from_fn(|i| e.a.as_ptr().wrapping_add(a_at[i]));
            let b: [*const f32; 3] = std::array::from_fn(|j| e.b.as_ptr().wrapping_add(b_at[j]));
            for r in runs {
                if r.len == RUN {
                    half_avx2(&mut acc, a, b, (r.c, r.b), |p| _mm256_loadu_ps(p));
                    half_avx2(&mut acc, a, b, (r.c + HALF, r.b_hi), |p| _mm256_loadu_ps(p));
                } else {
                    let masks = [mask8(r.len.min(HALF)), mask8(r.len.saturating_sub(HALF))];
                    half_avx2(&mut acc, a, b, (r.c, r.b), |p| _mm256_maskload_ps(p, masks[0]));
                    half_avx2(&mut acc, a, b, (r.c + HALF, r.b_hi), |p| _mm256_maskload_ps(p, masks[1]));
                }
            }
        }
        let mut sums = [0.0f32; 16];
        for (i, row) in acc.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                sums[i * 4 + j] = reduce8(*v);
            }
        }
        sums
    }

    /// One half of a run (A's elements from `a_from`, B's from `b_from`,
    /// past each row's start) into the 4 x 3 sums.
    #[inline(always)]
    unsafe fn half_avx2(
        acc: &mut [[__m256; 3]; 4],
        a: [*const f32; 4],
        b: [*const f32; 3],
        (a_from, b_from): (usize, usize),
        load: impl Fn(*const f32) -> __m256,
    ) {
        let bv: [__m256; 3] = std::array::from_fn(|j| load(b[j].wrapping_add(b_from)));
        for (row, a) in acc.iter_mut().zip(a) {
            let av = load(a.wrapping_add(a_from));
            for (sum, bv) in row.iter_mut().zip(bv) {
                *sum = _mm256_fmadd_ps(av, bv, *sum);
            }
        }
    }

    /// The sum of 8 lanes.
    #[inline(always)]
    unsafe fn reduce8(v: __m256) -> f32 {
        let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let d = _mm_add_ps(q, _mm_movehl_ps(q, q));
        _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps(d, d, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against f64 sums over two entries, rows at scattered starts, runs
    /// of every length, and edge blocks (5 x 7 outputs) accumulated into C.
    #[test]
    fn sums_the_runs_of_every_entry() {
        let levels: Vec<SimdLevel> =
            [SimdLevel::Avx2, SimdLevel::Avx512].into_iter().filter(|&l| l <= host_simd_level()).collect();
        let mut rng = crate::HostRng::new(13);
        let (a_rows, b_rows): (Vec<usize>, Vec<usize>) =
            ((0..5).map(|i| i * 41 % 60).collect(), (0..7).map(|j| j * 29 % 70).collect());
        let mut runs: Vec<Run> = (1..=RUN).map(|len| Run::contiguous(len * 3, len * 2, len)).collect();
        // Runs in two halves apart in B (a convolution 8 outputs wide).
        runs.extend([Run { b: 50, b_hi: 7, c: 1, len: 16 }, Run { b: 9, b_hi: 60, c: 30, len: 13 }]);
        let data: Vec<(Vec<f32>, Vec<f32>)> =
            (0..2).map(|_| (rng.vec(120, -1.0, 1.0), rng.vec(130, -1.0, 1.0))).collect();
        let entries: Vec<Entry> = data.iter().map(|(a, b)| Entry { a, b }).collect();
        let ldc = 9;
        let c0 = rng.vec(5 * ldc, -1.0, 1.0);
        assert!(!levels.is_empty() || host_simd_level() < SimdLevel::Avx2);
        for &level in &levels {
            let mut c = c0.clone();
            dots_at(level, &entries, (&a_rows, &b_rows), &runs, &mut c, ldc);
            for i in 0..5 {
                for j in 0..ldc {
                    let mut want = c0[i * ldc + j] as f64;
                    if j < 7 {
                        for (a, b) in &data {
                            for r in &runs {
                                for t in 0..r.len {
                                    let bt = if t < 8 { r.b + t } else { r.b_hi + t - 8 };
                                    want += a[a_rows[i] + r.c + t] as f64 * b[b_rows[j] + bt] as f64;
                                }
                            }
                        }
                    }
                    let got = c[i * ldc + j] as f64;
                    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "{level:?} [{i},{j}]: {got} vs {want}");
                }
            }
        }
    }
}

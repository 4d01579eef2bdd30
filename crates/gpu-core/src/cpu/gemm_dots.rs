//! `C += Σ_entries A_e · B_eᵀ` where every output is a dot product read in
//! runs: row `i` of A is `a[a_rows[i] + run.c ..+ run.len]` and row `j` of
//! B is `b[b_rows[j] + run.b ..+ run.len]` over the same runs, summed over
//! several batch entries. This is a stride-1 convolution's weight gradient
//! read in place (`cpu/conv.rs`): A is the output gradient (a row per
//! output channel), B the zero-bordered input seen through one tap's
//! offset (a row per `(channel, ki, kj)`), and a run a stretch of output
//! pixels along a row, so no column buffer is gathered.
//!
//! Each of a 4 x 4 block's 16 dot products keeps 16 lanes in a register
//! over every run of every entry (element `t` of a run to lane `t`, fused
//! multiply-adds), reduced once at the end: a fixed order for a given
//! geometry and entry list, so the result does not depend on threads.
//! AVX-512 only, like [`gemm_packed_a`](super::gemm_packed_a); other hosts
//! keep the gather and `gemm_abt`/`matrixmultiply`.

use super::gemm_packed_a::{Run, RUN};

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
/// Without AVX-512 (see [`super::gemm_packed_a::suits`]), or when a run
/// reads past an entry's data or C is too short.
pub(crate) fn dots(entries: &[Entry], (a_rows, b_rows): (&[usize], &[usize]), runs: &[Run], c: &mut [f32], ldc: usize) {
    let (m, n) = (a_rows.len(), b_rows.len());
    if m == 0 || n == 0 {
        return;
    }
    assert!(super::simd::simd_level() == super::simd::SimdLevel::Avx512, "wgrad internal: gemm_dots needs AVX-512");
    let reach = |rows: &[usize], at: fn(&Run) -> usize| {
        rows.iter().max().copied().unwrap_or(0) + runs.iter().map(at).max().unwrap_or(0)
    };
    let (a_reach, b_reach) = (reach(a_rows, |r| r.c + r.len), reach(b_rows, Run::reach));
    for e in entries {
        assert!(a_reach <= e.a.len() && b_reach <= e.b.len(), "wgrad internal: gemm_dots run reads past an entry");
    }
    assert!(runs.iter().all(|r| (1..=RUN).contains(&r.len)), "wgrad internal: gemm_dots run length");
    assert!((m - 1) * ldc + n <= c.len() && n <= ldc, "wgrad internal: gemm_dots C overruns its slice");
    #[cfg(target_arch = "x86_64")]
    for i0 in (0..m).step_by(4) {
        let rows_a = (m - i0).min(4);
        for j0 in (0..n).step_by(4) {
            let rows_b = (n - j0).min(4);
            // Past the edge a block repeats its last row (not stored).
            let a_at: [usize; 4] = std::array::from_fn(|i| a_rows[i0 + i.min(rows_a - 1)]);
            let b_at: [usize; 4] = std::array::from_fn(|j| b_rows[j0 + j.min(rows_b - 1)]);
            // SAFETY: AVX-512 asserted; every row of every run lies in its
            // entry's data (asserted above).
            let sums = unsafe { x86::block(entries, (a_at, b_at), runs) };
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
    use crate::cpu::gemm_packed_a::x86::Lanes;

    /// The 16 dot products of rows `a_at` x `b_at`, summed over every run
    /// of every entry.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::simd::{host_simd_level, SimdLevel};

    /// Against f64 sums over two entries, rows at scattered starts, runs
    /// of every length, and edge blocks (5 x 7 outputs) accumulated into C.
    #[test]
    fn sums_the_runs_of_every_entry() {
        if host_simd_level() != SimdLevel::Avx512 {
            return;
        }
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
        let mut c = c0.clone();
        dots(&entries, (&a_rows, &b_rows), &runs, &mut c, ldc);
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
                assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "[{i},{j}]: {got} vs {want}");
            }
        }
    }
}

//! `C = alpha · A · B + beta · C` with A packed: A is copied into panels
//! of [`mr`] rows, k-major, and B is read where it lies, a run of up to 16
//! columns at a time, or from a copy packed run by run ([`PackedB`]). Row
//! `k` of a run starts at `offsets[k] + run.b`: a row-major B has
//! `offsets[k] = k · ldb`, and a stride-1
//! convolution reads its input in place through `offsets[(c, ki, kj)] = c ·
//! plane + ki · row + kj` (`cpu/conv.rs`, implicit GEMM: no column buffer).
//! Reached through `cpu::gemm` on AVX2 and AVX-512 hosts for products whose A fits
//! in cache (a B whose columns are not contiguous, such as a transposed
//! weight or attention's Kᵀ, packed first), from the convolutions' fast
//! paths, and from the LSTM's steps (its weight packed once a sequence).
//!
//! `matrixmultiply` packs B as well, on every call: for the products a
//! small network makes (a convolution's 16 x 144 x 1024 per image, the
//! LSTM's 32 x 256 x 1024 step) that copy costs more than the multiply-adds
//! (single-threaded on a Zen 4 host: 53 against 100 GFLOP/s for the first,
//! 70 against 110 for the second). Here two runs of B (32 columns) are
//! loaded once per panel of A and stay in L1 while the panels pass over
//! them, and each output keeps its sum in a register over the whole inner
//! dimension.
//!
//! Each output is `Σ_k A[i,k]·B[k,j]` with one fused multiply-add per term,
//! in order of k, whatever its position in a tile or the product's split
//! over threads, so splitting C changes no bit of it.
//!
//! Two kernels: AVX-512 (a tile of 8 rows over two runs, 16 registers of
//! sums) and AVX2 + FMA (6 rows over one run in two 8-lane halves, 12
//! registers of sums within AVX2's 16). Both make the same ordered FMA
//! sums, so they give the same bits. Other hosts (SSE2 only, NEON) keep
//! `matrixmultiply`.

use super::aligned::AlignedVec;
use super::simd::{simd_level, SimdLevel};

/// Rows of A per panel (and of C per tile) on AVX-512.
pub(crate) const MR: usize = 8;

/// Rows of A per panel on AVX2: 6 rows x 2 halves of a run are 12
/// registers of sums, plus 2 of B and 1 of A, within AVX2's 16 (4 rows
/// left too few independent sums to cover the FMA latency).
const MR_AVX2: usize = 6;

/// Rows of A per panel for the kernel of `level`.
pub(crate) fn mr(level: SimdLevel) -> usize {
    if level == SimdLevel::Avx512 {
        MR
    } else {
        MR_AVX2
    }
}

/// Columns of one run: one 16-lane register.
pub(crate) const RUN: usize = 16;

/// Packed A up to this many elements (1 MiB): larger products reuse B
/// better through `matrixmultiply`'s blocking (1024³: equal; 2048 x 256 x
/// 768: 0.97x of it here).
const MAX_A: usize = 1 << 18;

/// Rows of C from which the AVX2 kernel packs a row-major B rather than
/// reading it in place: it passes over each run of B once per 6 rows, and
/// read in place those passes ran at 50-90 GFLOP/s on a Zen 4 core, packed
/// at 95-105 (with the copy: 58-76 against 50-76 for 32 rows, 93 against
/// 81-91 for 128). The AVX-512 kernel, 8 rows over two runs, runs as fast
/// in place as packed.
const PACK_B_MIN_ROWS: usize = 32;

/// Whether this kernel takes an `m` x `k` A on this host: AVX2 or wider,
/// and A small enough to stay in cache.
pub(crate) fn suits((m, k): (usize, usize)) -> bool {
    m * k <= MAX_A && simd_level() >= SimdLevel::Avx2
}

/// Rows of C past which a product goes to `matrixmultiply` on AVX2 hosts
/// (see [`takes`]).
const AVX2_MAX_ROWS: usize = 64;

/// Whether [`gemm_packed_a`] takes the product `m` x `k` times a B with
/// column stride `b_cs`: A [`suits`], and B is row-major or A has a whole
/// panel of rows to pay for packing B (a copy of B is about what
/// `matrixmultiply`'s packing of a transposed B costs). On AVX2 hosts
/// only up to [`AVX2_MAX_ROWS`] rows: past them `matrixmultiply`'s own
/// AVX2 kernel was the faster on a Zen 3 host (256³ 1.20x, 128 x 128 x
/// 64 1.15x, 200 x 784 x 128 1.07x, medians of 7 runs alternated in one
/// process), where this one's broadcasts of A compete with its
/// multiply-adds; with fewer rows and a wide B, packing B on every call
/// costs `matrixmultiply` more (16 x 144 x 1024 and 64 x 256 x 1024 on
/// one thread: 0.86-0.87x of this kernel).
pub(crate) fn takes((m, k): (usize, usize), b_cs: usize) -> bool {
    let rows_pay = simd_level() >= SimdLevel::Avx512 || m <= AVX2_MAX_ROWS;
    suits((m, k)) && (b_cs == 1 || m >= MR) && rows_pay
}

/// Up to [`RUN`] adjacent columns of C: row `k` of B holds the first 8 at
/// `offsets[k] + b ..`, the rest at `offsets[k] + b_hi ..` (`b + 8` when
/// the run is contiguous in B; a convolution with 8 outputs per row reads
/// two rows in one run); row `i` of C holds them at `i · ldc + c ..+ len`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Run {
    /// Where the run starts in B, past each row's offset.
    pub b: usize,
    /// Where its columns 8.. start in B, past each row's offset.
    pub b_hi: usize,
    /// Where the run starts in C's first row.
    pub c: usize,
    /// Columns (1 ..= [`RUN`]).
    pub len: usize,
}

impl Run {
    /// `len` columns contiguous in B from `b` and in C from `c`.
    pub(crate) fn contiguous(b: usize, c: usize, len: usize) -> Self {
        Run { b, b_hi: b + HALF, c, len }
    }

    /// Whether its two halves lie apart in B.
    pub(crate) fn split(&self) -> bool {
        self.b_hi != self.b + HALF
    }

    /// How far past its row's offset the run reads in B.
    pub(crate) fn reach(&self) -> usize {
        if self.split() && self.len > HALF {
            (self.b + HALF).max(self.b_hi + self.len - HALF)
        } else {
            self.b + self.len
        }
    }
}

/// Columns of a run's first half.
pub(crate) const HALF: usize = RUN / 2;

/// A packed into panels of `mr` rows for the kernel of `level` ([`mr`]),
/// each `k` columns of `mr` values (rows past `m` zero). The packing
/// decides the kernel that reads it.
pub(crate) struct PackedA {
    data: AlignedVec,
    m: usize,
    k: usize,
    mr: usize,
    level: SimdLevel,
}

impl PackedA {
    /// Packs the `m` x `k` view of `a` with row and column strides `rs`,
    /// `cs`, for this host's kernel.
    ///
    /// # Panics
    /// When the view overruns its slice.
    pub(crate) fn new(mk: (usize, usize), a: (&[f32], usize, usize)) -> Self {
        Self::new_at(simd_level(), mk, a)
    }

    /// [`PackedA::new`] for the kernel of `level`.
    fn new_at(level: SimdLevel, mk: (usize, usize), a: (&[f32], usize, usize)) -> Self {
        let mut packed = PackedA { data: AlignedVec::new(), m: 0, k: 0, mr: mr(level), level };
        packed.repack(mk, a);
        packed
    }

    /// Packs the `m` x `k` view of `a` in place of what it held, for the
    /// same kernel (keeping the allocation: a product per step).
    ///
    /// # Panics
    /// When the view overruns its slice.
    pub(crate) fn repack(&mut self, (m, k): (usize, usize), (a, rs, cs): (&[f32], usize, usize)) {
        if m > 0 && k > 0 {
            assert!((m - 1) * rs + (k - 1) * cs < a.len(), "wgrad internal: packed A view {m}x{k} overruns its slice");
        }
        (self.m, self.k) = (m, k);
        // SAFETY: the view was checked against its slice.
        unsafe { self.pack((a.as_ptr(), rs, cs)) };
    }

    /// A's rows (C's).
    pub(crate) fn rows(&self) -> usize {
        self.m
    }

    /// Repacks in place (keeping the allocation).
    ///
    /// # Safety
    /// A's `m` x `k` view lies in valid memory.
    unsafe fn pack(&mut self, (a, rs, cs): (*const f32, usize, usize)) {
        let (m, k, mr) = (self.m, self.k, self.mr);
        // Every element is written below, the rows past `m` as zeros, so
        // what the allocation held is not cleared first.
        self.data.resize(m.div_ceil(mr) * k * mr);
        if k == 0 {
            return;
        }
        for (p, panel) in self.data.chunks_exact_mut(k * mr).enumerate() {
            let (live, first) = (mr.min(m - p * mr), a.add(p * mr * rs));
            match (mr, live) {
                (MR, MR) => pack_panel::<MR>(panel, first, (rs, cs)),
                (MR_AVX2, MR_AVX2) => pack_panel::<MR_AVX2>(panel, first, (rs, cs)),
                _ => {
                    for (kk, col) in panel.chunks_exact_mut(mr).enumerate() {
                        let at = first.add(kk * cs);
                        for (i, dst) in col.iter_mut().enumerate() {
                            *dst = if i < live { *at.add(i * rs) } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}

/// Packs a whole panel of `R` rows from `first` (row and column strides
/// `rs`, `cs`) column by column, so that the panel is written in order
/// with `R` known: row by row, `R` floats apart and `R` unknown, 256³'s
/// A took 2.5x as long (76 µs against 30, beside the product's 500 on a
/// Zen 3 core).
///
/// # Safety
/// The `R` x `panel.len() / R` view lies in valid memory.
#[inline(always)]
unsafe fn pack_panel<const R: usize>(panel: &mut [f32], first: *const f32, (rs, cs): (usize, usize)) {
    for (kk, col) in panel.chunks_exact_mut(R).enumerate() {
        let (at, col) = (first.add(kk * cs), &mut col[..R]);
        for (i, dst) in col.iter_mut().enumerate() {
            *dst = *at.add(i * rs);
        }
    }
}

/// B copied run by run: each run of [`RUN`] columns (the last zero-padded)
/// `k` rows of 16 contiguous floats, for a B that many products read (the
/// LSTM's `W_hh`, the same at every step). A row-major B whose rows lie a
/// multiple of 1 KiB apart maps a run's rows onto a few of L1's sets (4 of
/// 64 at 1 KiB), so each panel of A read the run from L2 again; packed, a
/// run is one contiguous stretch. Same sums, same bits as B in place.
pub(crate) struct PackedB {
    data: AlignedVec,
    offsets: Vec<usize>,
    runs: Vec<Run>,
}

impl PackedB {
    /// Nothing packed yet (a thread's scratch before its first product).
    const EMPTY: PackedB = PackedB { data: AlignedVec::new(), offsets: Vec::new(), runs: Vec::new() };

    /// Packs the `k` x `n` view of `b` with row and column strides `rs`, `cs`.
    ///
    /// # Panics
    /// When the view overruns its slice.
    pub(crate) fn new((k, n): (usize, usize), (b, rs, cs): (&[f32], usize, usize)) -> Self {
        if k > 0 && n > 0 {
            assert!((k - 1) * rs + (n - 1) * cs < b.len(), "wgrad internal: packed B view {k}x{n} overruns its slice");
        }
        let mut packed = PackedB::EMPTY;
        // SAFETY: the view was checked against its slice.
        unsafe { packed.pack((k, n), (b.as_ptr(), rs, cs)) };
        packed
    }

    /// Repacks in place (keeping the allocations).
    ///
    /// # Safety
    /// B's `k` x `n` view lies in valid memory.
    unsafe fn pack(&mut self, (k, n): (usize, usize), (b, rs, cs): (*const f32, usize, usize)) {
        let runs = n.div_ceil(RUN);
        // Every element is written below (a last, short run zeroed
        // first), so what the allocation held is not cleared.
        self.data.resize(runs * k * RUN);
        for (r, block) in self.data.chunks_exact_mut((k * RUN).max(1)).enumerate() {
            let cols = r * RUN..n.min((r + 1) * RUN);
            if cols.len() < RUN {
                block.fill(0.0);
            }
            let at = b.add(cols.start * cs);
            // Along B's contiguous side: a row's 16 floats, or a column's k.
            if rs == 1 && cs != 1 {
                for t in 0..cols.len() {
                    let col = at.add(t * cs);
                    for kk in 0..k {
                        block[kk * RUN + t] = *col.add(kk);
                    }
                }
            } else if cs == 1 {
                // A row-major B: one contiguous copy a row (the strided
                // loop below copied 256³'s B a float at a time).
                for (kk, row) in block.chunks_exact_mut(RUN).enumerate() {
                    row[..cols.len()].copy_from_slice(std::slice::from_raw_parts(at.add(kk * rs), cols.len()));
                }
            } else {
                for (kk, row) in block.chunks_exact_mut(RUN).enumerate() {
                    let from = at.add(kk * rs);
                    for (t, dst) in row[..cols.len()].iter_mut().enumerate() {
                        *dst = *from.add(t * cs);
                    }
                }
            }
        }
        self.offsets.clear();
        self.offsets.extend((0..k).map(|kk| kk * RUN));
        self.runs.clear();
        self.runs.extend((0..runs).map(|r| Run::contiguous(r * k * RUN, r * RUN, RUN.min(n - r * RUN))));
    }

    /// `C = alpha · A · B + beta · C` ([`product`] over the packed runs).
    ///
    /// # Panics
    /// As [`product`]'s.
    pub(crate) fn product(&self, a: &PackedA, alpha: f32, beta: f32, c: &mut [f32], ldc: usize) {
        product(a, &self.offsets, &self.runs, &self.data, alpha, beta, c, ldc)
    }
}

/// `C = alpha · A · B + beta · C` over `runs` of C's columns (see
/// [`Run`]), B's rows at `offsets` (`k` of them); with `beta == 0` C is not
/// read.
///
/// # Panics
/// Unless A was packed for a kernel this host has, or when a run reads
/// past `b` or writes past `c`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn product(
    a: &PackedA,
    offsets: &[usize],
    runs: &[Run],
    b: &[f32],
    alpha: f32,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let (level, host) = (a.level, super::simd::host_simd_level());
    assert!(level >= SimdLevel::Avx2 && level <= host, "wgrad internal: gemm_packed_a at {level:?} on a {host:?} host");
    assert!(offsets.len() == a.k, "wgrad internal: gemm_packed_a offsets");
    let reach = offsets.iter().max().copied().unwrap_or(0);
    for r in runs {
        assert!(r.len >= 1 && r.len <= RUN, "wgrad internal: gemm_packed_a run of {} columns", r.len);
        assert!(a.k == 0 || reach + r.reach() <= b.len(), "wgrad internal: gemm_packed_a run reads past B");
        assert!(
            a.m == 0 || (a.m - 1) * ldc + r.c + r.len <= c.len(),
            "wgrad internal: gemm_packed_a run writes past C"
        );
    }
    // SAFETY: the host has `level`, AVX2 or wider; every row of every run
    // lies in B, and every run's rows of C in `c` (asserted above).
    unsafe { product_raw(a, offsets, runs, b.as_ptr(), alpha, beta, c.as_mut_ptr(), ldc) }
}

/// [`product`] on raw pointers, with the kernel A was packed for.
///
/// # Safety
/// As [`product`]'s checks, done by the caller; the host has A's level,
/// at least AVX2.
#[allow(clippy::too_many_arguments)]
unsafe fn product_raw(
    a: &PackedA,
    offsets: &[usize],
    runs: &[Run],
    b: *const f32,
    alpha: f32,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let mr = a.mr;
        let panels = |p: usize| (a.data.as_ptr().add(p * a.k * mr), c.add(p * mr * ldc), mr.min(a.m - p * mr));
        if a.level == SimdLevel::Avx512 {
            for pair in runs.chunks(2) {
                let second = pair.get(1).copied();
                for (panel, c_row, rows) in (0..a.m.div_ceil(mr)).map(panels) {
                    x86::tile(a.k, panel, offsets.as_ptr(), b, (pair[0], second), (c_row, ldc, rows), alpha, beta);
                }
            }
        } else {
            for &run in runs {
                for (panel, c_row, rows) in (0..a.m.div_ceil(mr)).map(panels) {
                    x86::tile_avx2(a.k, panel, offsets.as_ptr(), b, run, (c_row, ldc, rows), alpha, beta);
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (a, offsets, runs, b, alpha, beta, c, ldc);
        unreachable!("wgrad internal: gemm_packed_a needs AVX2 (see suits)");
    }
}

/// What a thread keeps between products, so that a warm product allocates
/// nothing: packed A, packed B (when B is packed), B's row offsets and runs
/// (when read in place).
struct Scratch {
    a: PackedA,
    b: PackedB,
    offsets: Vec<usize>,
    runs: Vec<Run>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = const {
        std::cell::RefCell::new(Scratch {
            a: PackedA { data: AlignedVec::new(), m: 0, k: 0, mr: MR, level: SimdLevel::Avx512 },
            b: PackedB::EMPTY,
            offsets: Vec::new(),
            runs: Vec::new(),
        })
    };
}

/// `c[i·ldc + j] = alpha·Σ_p a[i·a_rs + p·a_cs]·b[p·b_rs + j·b_cs] + beta·c[i·ldc + j]`
/// for `i < m`, `j < n`; with `beta == 0` C is not read. A row-major B
/// (`b_cs == 1`) is read in place (or packed: [`PACK_B_MIN_ROWS`]), any
/// other (a transposed weight, attention's Kᵀ) is packed first.
///
/// # Safety
/// [`takes`] holds for the product, and every element of the three views
/// lies in memory valid for reads (A, B) and writes (C), C aliasing neither.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_packed_a(
    mkn: (usize, usize, usize),
    alpha: f32,
    a: (*const f32, usize, usize),
    b: (*const f32, usize, usize),
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    gemm_packed_a_at(simd_level(), mkn, alpha, a, b, beta, c, ldc)
}

/// [`gemm_packed_a`] with the kernel of `level` (tests run each).
///
/// # Safety
/// As [`gemm_packed_a`]'s; the host has `level`, at least AVX2.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_packed_a_at(
    level: SimdLevel,
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    a: (*const f32, usize, usize),
    (b, b_rs, b_cs): (*const f32, usize, usize),
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    SCRATCH.with_borrow_mut(|s| {
        (s.a.m, s.a.k, s.a.mr, s.a.level) = (m, k, mr(level), level);
        s.a.pack(a);
        if b_cs != 1 || (level == SimdLevel::Avx2 && m >= PACK_B_MIN_ROWS) {
            s.b.pack((k, n), (b, b_rs, b_cs));
            return product_raw(&s.a, &s.b.offsets, &s.b.runs, s.b.data.as_ptr(), alpha, beta, c, ldc);
        }
        s.offsets.clear();
        s.offsets.extend((0..k).map(|kk| kk * b_rs));
        s.runs.clear();
        s.runs.extend((0..n).step_by(RUN).map(|j| Run::contiguous(j, j, RUN.min(n - j))));
        product_raw(&s.a, &s.offsets, &s.runs, b, alpha, beta, c, ldc);
    });
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::{Run, HALF, MR, MR_AVX2, RUN};

    /// A run's columns in B, ready to load from each row's offset.
    #[derive(Clone, Copy)]
    pub(crate) struct Lanes {
        lo: *const f32,
        hi: *const f32,
        mask: __mmask16,
        full: bool,
    }

    impl Lanes {
        /// Run `r` of B (from `b`); a missing run loads nothing.
        pub(crate) unsafe fn new(b: *const f32, r: Option<Run>) -> Self {
            let r = r.unwrap_or(Run { len: 0, ..Run::contiguous(0, 0, 0) });
            Lanes { lo: b.add(r.b), hi: b.add(r.b_hi), mask: ((1u32 << r.len) - 1) as __mmask16, full: r.len == RUN }
        }

        /// The run's row at offset `o`, contiguous: one load.
        #[inline(always)]
        pub(crate) unsafe fn load(&self, o: usize) -> __m512 {
            if self.full {
                _mm512_loadu_ps(self.lo.add(o))
            } else {
                _mm512_maskz_loadu_ps(self.mask, self.lo.add(o))
            }
        }

        /// The run's row at offset `o`, in two halves.
        #[inline(always)]
        pub(crate) unsafe fn load_split(&self, o: usize) -> __m512 {
            let (m_lo, m_hi) = (self.mask as __mmask8, (self.mask >> HALF) as __mmask8);
            let lo = _mm256_maskz_loadu_ps(m_lo, self.lo.add(o));
            let hi = _mm256_maskz_loadu_ps(m_hi, self.hi.add(o));
            _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1)
        }
    }

    /// One tile of C: `rows` (at most [`MR`]) rows from a packed panel of
    /// A, over one or two runs, B's row `k` of a run at `b + offsets[k] +`
    /// the run's place; C's row `i` of a run at `c + i · ldc + run.c`.
    ///
    /// # Safety
    /// AVX-512 F, VL and DQ present; the panel holds `k·MR` values,
    /// `offsets` `k`; each run's rows of B and C lie in valid memory.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512vl,avx512dq")]
    pub(super) unsafe fn tile(
        k: usize,
        panel: *const f32,
        offsets: *const usize,
        b: *const f32,
        (first, second): (Run, Option<Run>),
        (c, ldc, rows): (*mut f32, usize, usize),
        alpha: f32,
        beta: f32,
    ) {
        let (l0, l1) = (Lanes::new(b, Some(first)), Lanes::new(b, second));
        let split = first.split() || second.is_some_and(|r| r.split());
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        let mut a = panel;
        for kk in 0..k {
            let o = *offsets.add(kk);
            let v = if split { [l0.load_split(o), l1.load_split(o)] } else { [l0.load(o), l1.load(o)] };
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i));
                row[0] = _mm512_fmadd_ps(av, v[0], row[0]);
                row[1] = _mm512_fmadd_ps(av, v[1], row[1]);
            }
            a = a.add(MR);
        }
        let (alpha, beta_v) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
        for (i, row) in acc.iter().enumerate().take(rows) {
            for (h, (run, lanes)) in [(Some(first), l0), (second, l1)].into_iter().enumerate() {
                let Some(run) = run else { continue };
                let at = c.add(i * ldc + run.c);
                let mut v = _mm512_mul_ps(alpha, row[h]);
                // C is not read when beta is 0 (it may hold anything).
                if beta != 0.0 {
                    v = _mm512_fmadd_ps(beta_v, _mm512_maskz_loadu_ps(lanes.mask, at), v);
                }
                _mm512_mask_storeu_ps(at, lanes.mask, v);
            }
        }
    }

    /// The first `len` of 8 lanes set, as AVX2's masked loads and stores
    /// take them (a lane's top bit).
    #[inline(always)]
    pub(crate) unsafe fn mask8(len: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(len as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// [`tile`] on AVX2 + FMA: a panel of up to [`MR_AVX2`] rows over one
    /// run, its two halves of 8 columns in two registers (a run split in B
    /// loads from both places alike). Each sum is the same ordered FMA
    /// chain as [`tile`]'s, so both give the same bits.
    ///
    /// # Safety
    /// AVX2 and FMA present; as [`tile`] otherwise.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(
        k: usize,
        panel: *const f32,
        offsets: *const usize,
        b: *const f32,
        run: Run,
        (c, ldc, rows): (*mut f32, usize, usize),
        alpha: f32,
        beta: f32,
    ) {
        let (lo, hi) = (b.wrapping_add(run.b), b.wrapping_add(run.b_hi));
        let full = run.len == RUN;
        let masks = [mask8(run.len.min(HALF)), mask8(run.len.saturating_sub(HALF))];
        let (alpha, beta_v) = (_mm256_set1_ps(alpha), _mm256_set1_ps(beta));
        // The loop comes in two copies, so that a full run's keeps no mask
        // in a register (15 of the 16 are in use), and in one per count of
        // rows, so that a last, partial panel makes no sums it drops (16
        // rows are panels of 6, 6 and 4: 12 x 256 x 1024 ran at 75, now 88
        // GFLOP/s on one Zen 4 core).
        let full_rows = |o: usize| [_mm256_loadu_ps(lo.add(o)), _mm256_loadu_ps(hi.add(o))];
        let masked = |o: usize| {
            [_mm256_maskload_ps(lo.wrapping_add(o), masks[0]), _mm256_maskload_ps(hi.wrapping_add(o), masks[1])]
        };
        let mut acc = [[_mm256_setzero_ps(); 2]; MR_AVX2];
        macro_rules! sums {
            ($($r:literal)*) => {
                match (rows, full) {
                    $(
                        ($r, true) => sums_avx2::<$r>(k, panel, offsets, full_rows, &mut acc),
                        ($r, false) => sums_avx2::<$r>(k, panel, offsets, masked, &mut acc),
                    )*
                    _ => unreachable!("wgrad internal: a panel of {rows} rows"),
                }
            };
        }
        sums!(1 2 3 4 5 6);
        for (i, row) in acc.iter().enumerate().take(rows) {
            for (h, sum) in row.iter().enumerate() {
                let at = c.wrapping_add(i * ldc + run.c + h * HALF);
                let mut v = _mm256_mul_ps(alpha, *sum);
                // C is not read when beta is 0 (it may hold anything).
                if full {
                    if beta != 0.0 {
                        v = _mm256_fmadd_ps(beta_v, _mm256_loadu_ps(at), v);
                    }
                    _mm256_storeu_ps(at, v);
                } else {
                    if beta != 0.0 {
                        v = _mm256_fmadd_ps(beta_v, _mm256_maskload_ps(at, masks[h]), v);
                    }
                    _mm256_maskstore_ps(at, masks[h], v);
                }
            }
        }
    }

    /// [`tile_avx2`]'s sums of the panel's first `R` rows into `out`: row
    /// `i` of the panel times B's rows, which `load(offset)` reads as a
    /// run's two halves.
    ///
    /// # Safety
    /// AVX2 and FMA present; as [`tile_avx2`].
    #[inline(always)]
    unsafe fn sums_avx2<const R: usize>(
        k: usize,
        panel: *const f32,
        offsets: *const usize,
        load: impl Fn(usize) -> [__m256; 2],
        out: &mut [[__m256; 2]; MR_AVX2],
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        let mut a = panel;
        for kk in 0..k {
            let v = load(*offsets.add(kk));
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(av, v[0], row[0]);
                row[1] = _mm256_fmadd_ps(av, v[1], row[1]);
            }
            a = a.add(MR_AVX2);
        }
        out[..R].copy_from_slice(&acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gemm::tests::assert_product;
    use crate::cpu::simd::host_simd_level;

    /// The kernels' levels this host has (none without AVX2).
    fn levels() -> Vec<SimdLevel> {
        [SimdLevel::Avx2, SimdLevel::Avx512].into_iter().filter(|&l| l <= host_simd_level()).collect()
    }

    /// Against a naive f64 product on awkward sizes (partial panels and
    /// runs, narrow C, an empty sum, strided and transposed A), with beta 0
    /// over a C full of NaN (not read) and beta 1; each output is the
    /// ordered FMA sum, so a tile's position changes no bit (C computed
    /// whole equals C computed in two column halves).
    #[test]
    fn matches_a_naive_product() {
        if levels().is_empty() {
            eprintln!("gemm_packed_a: this host has no AVX2; the kernel is never picked here");
            assert!(!suits((8, 8)));
            return;
        }
        let mut rng = crate::HostRng::new(5);
        // (40, 33, 70): B packed at AVX2 (PACK_B_MIN_ROWS), in place at AVX-512.
        let sizes =
            [(1, 1, 1), (8, 3, 32), (13, 37, 77), (16, 144, 1024), (9, 0, 5), (3, 5, 15), (17, 9, 48), (40, 33, 70)];
        for (m, k, n) in sizes {
            let ldb = n + 5;
            let (a, b) = (rng.vec(m * k + 3, -1.0, 1.0), rng.vec(k * ldb + 1, -1.0, 1.0));
            let ldc = n + 3;
            for transposed in [false, true] {
                let (a_rs, a_cs) = if transposed { (1, m) } else { (k, 1) };
                for beta in [0.0f32, 1.0] {
                    let c0 = if beta == 0.0 { vec![f32::NAN; m * ldc] } else { rng.vec(m * ldc, -1.0, 1.0) };
                    let run = |level, cols: std::ops::Range<usize>, c: &mut [f32]| {
                        // SAFETY: `levels` are the host's; the views lie in the vectors.
                        unsafe {
                            let (bp, cp) = (b.as_ptr().add(cols.start), c.as_mut_ptr().add(cols.start));
                            gemm_packed_a_at(
                                level,
                                (m, k, cols.len()),
                                0.5,
                                (a.as_ptr(), a_rs, a_cs),
                                (bp, ldb, 1),
                                beta,
                                cp,
                                ldc,
                            )
                        }
                    };
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let whole: Vec<Vec<f32>> = levels()
                        .into_iter()
                        .map(|level| {
                            let mut c = c0.clone();
                            run(level, 0..n, &mut c);
                            let mut halves = c0.clone();
                            run(level, 0..n / 2, &mut halves);
                            run(level, n / 2..n, &mut halves);
                            assert!(bits(&halves) == bits(&c), "{m}x{k}x{n} {level:?}: split columns changed bits");
                            c
                        })
                        .collect();
                    let c = &whole[0];
                    assert!(whole.iter().all(|w| bits(w) == bits(c)), "{m}x{k}x{n}: the levels' bits differ");
                    let dot = |i: usize, j: usize| {
                        (0..k).map(|p| a[i * a_rs + p * a_cs] as f64 * b[p * ldb + j] as f64).sum()
                    };
                    let what = format!("{m}x{k}x{n} transposed={transposed} beta={beta}");
                    // Past column n C keeps its NaN; elsewhere a NaN means C was read.
                    let zeroed = |v: &[f32]| v.iter().map(|&x| if x.is_nan() { 0.0 } else { x }).collect::<Vec<_>>();
                    let inside_nan = (0..m * ldc).any(|i| i % ldc < n && c[i].is_nan());
                    assert!(!inside_nan, "{what}: NaN inside C");
                    assert_product(&what, &zeroed(c), &zeroed(&c0), (m, n, ldc), 0.5, beta as f64, dot);
                }
            }
        }
    }

    /// A thread's scratch is repacked without being cleared: a product
    /// after a larger one full of NaN (partial panel, partial run, B packed
    /// and in place) gives the bits it gives on a fresh thread.
    #[test]
    fn repacked_scratch_keeps_nothing_of_the_last_product() {
        let mut rng = crate::HostRng::new(33);
        for level in levels() {
            for (m, k, n) in [(13, 20, 21), (40, 9, 37)] {
                let (a, b) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
                let product = |a: &[f32], b: &[f32], (m, k, n)| {
                    let mut c = vec![0.0f32; m * n];
                    // SAFETY: `levels` are the host's; the views lie in the vectors.
                    unsafe {
                        gemm_packed_a_at(
                            level,
                            (m, k, n),
                            1.0,
                            (a.as_ptr(), k, 1),
                            (b.as_ptr(), n, 1),
                            0.0,
                            c.as_mut_ptr(),
                            n,
                        )
                    };
                    c.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                };
                let fresh = std::thread::scope(|s| s.spawn(|| product(&a, &b, (m, k, n))).join().unwrap());
                let nan = vec![f32::NAN; 64 * 64];
                product(&nan, &nan, (64, 64, 64));
                assert!(
                    product(&a, &b, (m, k, n)) == fresh,
                    "{level:?} {m}x{k}x{n}: the last product's scratch leaked"
                );
            }
        }
    }

    /// B packed ([`PackedB`]: a transposed B always, and once for many
    /// products as the LSTM's steps use it, from a row-major or a
    /// transposed view) gives the bits of a row-major B read in place.
    #[test]
    fn packed_b_gives_the_bits_of_b_in_place() {
        let mut rng = crate::HostRng::new(21);
        let (m, k, n) = (11, 37, 50);
        let (a, b) = (rng.vec(m * k, -1.0, 1.0), rng.vec(k * n, -1.0, 1.0));
        let bt: Vec<f32> = (0..n * k).map(|i| b[i % k * n + i / k]).collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for level in levels() {
            let run = |bv: (*const f32, usize, usize)| {
                let mut c = vec![f32::NAN; m * n];
                // SAFETY: `levels` are the host's; the views lie in the vectors.
                unsafe { gemm_packed_a_at(level, (m, k, n), 0.5, (a.as_ptr(), k, 1), bv, 0.0, c.as_mut_ptr(), n) };
                c
            };
            // Fewer rows than PACK_B_MIN_ROWS: a row-major B is read in place.
            let in_place = run((b.as_ptr(), n, 1));
            assert!(bits(&run((bt.as_ptr(), 1, k))) == bits(&in_place), "{level:?}: transposed B differs");
            let pa = PackedA::new_at(level, (m, k), (&a, k, 1));
            for (what, view) in [("row-major", (&b[..], n, 1)), ("transposed", (&bt[..], 1, k))] {
                let mut c = vec![f32::NAN; m * n];
                PackedB::new((k, n), view).product(&pa, 0.5, 0.0, &mut c, n);
                assert!(bits(&c) == bits(&in_place), "{level:?}: B packed from a {what} view differs");
            }
            let dot = |i: usize, j: usize| (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
            assert_product("packed B", &in_place, &vec![0.0; m * n], (m, n, n), 0.5, 0.0, dot);
        }
    }

    /// Rows of B at arbitrary offsets and runs that land anywhere in C (as
    /// the implicit convolution uses them) against the same product on a
    /// materialised row-major B.
    #[test]
    fn offsets_and_runs_read_and_write_where_they_say() {
        let mut rng = crate::HostRng::new(9);
        let (m, k) = (11, 7);
        let a = rng.vec(m * k, -1.0, 1.0);
        let src = rng.vec(400, -1.0, 1.0);
        let offsets: Vec<usize> = (0..k).map(|kk| (kk * 37) % 50).collect();
        // Contiguous, partial, split in two halves, split and partial.
        let runs = [
            Run::contiguous(3, 0, 16),
            Run::contiguous(100, 16, 5),
            Run::contiguous(200, 21, 16),
            Run { b: 40, b_hi: 250, c: 37, len: 16 },
            Run { b: 60, b_hi: 5, c: 53, len: 11 },
        ];
        let n = 64;
        // B materialised: column j of run r is src[offsets[kk] + r.b + t].
        let mut dense = vec![0.0f32; k * n];
        for r in &runs {
            for t in 0..r.len {
                let at = if t < HALF { r.b + t } else { r.b_hi + t - HALF };
                for kk in 0..k {
                    dense[kk * n + r.c + t] = src[offsets[kk] + at];
                }
            }
        }
        let dot = |i: usize, j: usize| (0..k).map(|p| a[i * k + p] as f64 * dense[p * n + j] as f64).sum();
        let covered = |j: usize| runs.iter().any(|r| (r.c..r.c + r.len).contains(&j));
        for level in levels() {
            let packed = PackedA::new_at(level, (m, k), (&a, k, 1));
            let mut c = vec![f32::NAN; m * n];
            product(&packed, &offsets, &runs, &src, 1.0, 0.0, &mut c, n);
            // Columns no run covers keep their NaN.
            assert!((0..m * n).all(|i| covered(i % n) != c[i].is_nan()), "{level:?}: a run wrote outside its columns");
            for (i, v) in c.iter_mut().enumerate() {
                if !covered(i % n) {
                    *v = 0.0;
                }
            }
            let what = format!("offsets and runs at {level:?}");
            assert_product(&what, &c, &vec![0.0; m * n], (m, n, n), 1.0, 0.0, dot);
        }
    }
}

//! Run-time choice of vector width for the CPU backend's hot loops. The
//! crate is built for baseline x86-64 (SSE2), so a loop the compiler
//! vectorizes uses 4 lanes of f32 even on a host with AVX-512. A kernel
//! declared with [`multiversion!`](crate::cpu::simd::multiversion) is
//! compiled three times (baseline, AVX2 + FMA, AVX-512) and runs the widest
//! copy the host supports, so one binary is fast on a new host and still
//! runs on an old one.
//!
//! The copies compute the same bits: the compiler does not fuse a multiply
//! and an add into an FMA unless told to (Rust never tells it), and the
//! kernels' sums keep a fixed number of lanes ([`super::lanes`]) whatever
//! the register width. `tests/main/parity_fast_cpu.rs` runs each kernel at
//! every level the host has and compares the bits.
//!
//! `WGRAD_CPU_SIMD` (`baseline`, `avx2`, `avx512`) caps the level, e.g. to
//! test the fallback on a new host; a level the host lacks is never used.
//! On other architectures the baseline build is the only copy (aarch64's
//! baseline includes NEON).

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// A vector instruction set level, widest last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// What the build targets (SSE2 on x86-64, NEON on aarch64).
    Baseline = 1,
    /// AVX2 with FMA (x86-64).
    Avx2 = 2,
    /// AVX-512 F, BW, DQ and VL (x86-64).
    Avx512 = 3,
}

impl SimdLevel {
    /// The level's name, as `WGRAD_CPU_SIMD` takes it.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline => "baseline",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    fn from_code(code: u8) -> SimdLevel {
        match code {
            3 => SimdLevel::Avx512,
            2 => SimdLevel::Avx2,
            _ => SimdLevel::Baseline,
        }
    }
}

/// The widest level this host supports.
pub fn host_simd_level() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
            && avx2_fma()
        {
            return SimdLevel::Avx512;
        }
        if avx2_fma() {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Baseline
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// The level in use, 0 until first asked for.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The level the CPU backend's multiversioned kernels run at: the host's
/// widest, capped by `WGRAD_CPU_SIMD` or [`set_simd_level`].
pub fn simd_level() -> SimdLevel {
    match LEVEL.load(Relaxed) {
        0 => {
            let host = host_simd_level();
            let level = match std::env::var("WGRAD_CPU_SIMD").ok().as_deref().map(parse) {
                Some(Some(cap)) => cap.min(host),
                _ => host,
            };
            LEVEL.store(level as u8, Relaxed);
            level
        }
        code => SimdLevel::from_code(code),
    }
}

/// Caps the level from now on (at most the host's); returns the level set.
/// For tests and benchmarks: the levels compute the same results.
pub fn set_simd_level(cap: SimdLevel) -> SimdLevel {
    let level = cap.min(host_simd_level());
    LEVEL.store(level as u8, Relaxed);
    level
}

/// A `WGRAD_CPU_SIMD` value (unknown: `None`, the host's level stands).
fn parse(s: &str) -> Option<SimdLevel> {
    match s.trim().to_ascii_lowercase().as_str() {
        "baseline" | "sse2" | "none" | "0" => Some(SimdLevel::Baseline),
        "avx2" => Some(SimdLevel::Avx2),
        "avx512" | "avx-512" => Some(SimdLevel::Avx512),
        _ => None,
    }
}

/// Declares `fn NAME(ARGS) -> RET { BODY }` whose body is compiled once per
/// [`SimdLevel`] and run at [`simd_level`]. The body should be one loop's
/// worth of work (a row, a chunk): what it calls is compiled for the level
/// only when inlined into it (slices' iterators, `#[inline(always)]`
/// helpers such as [`crate::kernels::fast_math`]), not code behind a thread pool.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                match $crate::cpu::simd::simd_level() {
                    // SAFETY: simd_level never exceeds what the host supports.
                    $crate::cpu::simd::SimdLevel::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::cpu::simd::SimdLevel::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::cpu::simd::SimdLevel::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// A loop to run at the host's vector level: the generic form of
/// [`multiversion!`] for loops over an op's closure (the elementwise
/// tables hand each loop a closure per op). [`Loop::run`] must be
/// `#[inline(always)]`: it is then compiled into a copy per level, where
/// the closures it calls are inlined and its loops over contiguous slices
/// vectorize at the level's width (a closure handed to a dispatching
/// function instead stayed a call, compiled for the baseline).
pub(crate) trait Loop {
    /// The loop.
    fn run(self);
}

/// Runs `l` at [`simd_level`].
#[inline(always)]
pub(crate) fn dispatch<L: Loop>(l: L) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        unsafe fn avx512<L: Loop>(l: L) {
            l.run()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<L: Loop>(l: L) {
            l.run()
        }
        match simd_level() {
            // SAFETY: simd_level never exceeds what the host supports.
            SimdLevel::Avx512 => return unsafe { avx512(l) },
            // SAFETY: as above.
            SimdLevel::Avx2 => return unsafe { avx2(l) },
            SimdLevel::Baseline => {}
        }
    }
    l.run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_cap_at_the_host() {
        assert_eq!(parse("AVX2"), Some(SimdLevel::Avx2));
        assert_eq!(parse(" baseline "), Some(SimdLevel::Baseline));
        assert_eq!(parse("avx512"), Some(SimdLevel::Avx512));
        assert_eq!(parse("neon"), None);
        assert!(SimdLevel::Baseline < SimdLevel::Avx2 && SimdLevel::Avx2 < SimdLevel::Avx512);
        assert!(SimdLevel::Avx512.min(host_simd_level()) <= host_simd_level());
        for code in 1..=3u8 {
            assert_eq!(SimdLevel::from_code(code) as u8, code);
        }
    }
}

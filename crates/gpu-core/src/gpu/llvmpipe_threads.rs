//! How many worker threads llvmpipe (lavapipe, Mesa's CPU Vulkan driver)
//! runs compute dispatches on: `LP_NUM_THREADS`, set before the first wgpu
//! instance exists unless the user set it.
//!
//! Mesa's compute pool (`lp_cs_tpool.c`) splits each dispatch's workgroups
//! into `num_threads` equal runs, and the queue waits for the last run
//! before it starts the next dispatch. With Mesa's default of one thread per
//! core, a dispatch is two runs on a 2-core machine: when one worker wakes
//! late or its half holds the slower workgroups, the other core idles, and
//! a training step is hundreds of short dispatches (an LSTM step is 288).
//! `perf` saw lavapipe's workers busy 54% of an LSTM step. Four threads per
//! core make each run a quarter of a core's share, so whichever worker is
//! running takes the next run: the LSTM step went from 187-189 ms to
//! 141-142 ms, the Transformer's from 687-748 to 638-641 ms and ResNet-20's
//! from 383 to 327 ms on 2 cores (docs/history/performance-issue-11.md, "lavapipe's thread
//! pool"). Hardware GPUs never read the variable.

use std::sync::Once;

/// The variable Mesa's llvmpipe reads once per process, when the driver
/// is first loaded.
const VAR: &str = "LP_NUM_THREADS";

/// Worker threads per core that wgrad asks llvmpipe for.
const THREADS_PER_CORE: usize = 4;

/// Mesa 22.3's most compute threads (`LP_MAX_THREADS`); more is clamped.
const MOST: usize = 16;

/// The value to set `LP_NUM_THREADS` to on a machine with `cores` cores
/// where it is `current`; `None` leaves it alone: the user's choice stands,
/// and on one core Mesa's default (no pool: the queue runs each dispatch
/// itself) has no waits to shorten.
pub(crate) fn wanted(current: Option<&std::ffi::OsStr>, cores: usize) -> Option<usize> {
    if current.is_some() || cores < 2 {
        return None;
    }
    Some((cores * THREADS_PER_CORE).min(MOST))
}

/// Sets `LP_NUM_THREADS` for this process when [`wanted`] says so. Runs
/// once, before the first wgpu instance: llvmpipe reads the variable when
/// the Vulkan loader first loads it, and no other thread is inside the
/// driver yet.
pub(crate) fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Some(n) = wanted(std::env::var_os(VAR).as_deref(), cores) {
            std::env::set_var(VAR, n.to_string());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn four_threads_per_core_up_to_mesas_limit() {
        assert_eq!(wanted(None, 2), Some(8));
        assert_eq!(wanted(None, 3), Some(12));
        assert_eq!(wanted(None, 4), Some(16));
        assert_eq!(wanted(None, 64), Some(16));
    }

    #[test]
    fn the_users_setting_and_single_cores_are_left_alone() {
        assert_eq!(wanted(Some(OsStr::new("2")), 2), None);
        assert_eq!(wanted(Some(OsStr::new("")), 8), None);
        assert_eq!(wanted(None, 1), None);
        assert_eq!(wanted(None, 0), None);
    }
}

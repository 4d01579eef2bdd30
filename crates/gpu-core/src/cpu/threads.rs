//! `WGRAD_CPU_THREADS`: how many threads the CPU backend's kernels use.
//! Every kernel splits its work over rayon's global pool (the GEMM too:
//! `matrixmultiply` runs single-threaded inside it), so sizing that pool
//! bounds them all; data-parallel ranks sharing a machine each take their
//! share of its cores this way.

use std::sync::Once;

/// Sizes rayon's global pool from `WGRAD_CPU_THREADS` before the first
/// kernel uses it. Unset, rayon's own default (`RAYON_NUM_THREADS`, else
/// one per core). A value that is not a positive number is ignored with a
/// warning, as is a pool already started by the program itself.
pub(crate) fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(value) = std::env::var("WGRAD_CPU_THREADS") else { return };
        match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => {
                if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
                    eprintln!("wgrad: WGRAD_CPU_THREADS={n} not applied: {e}");
                }
            }
            _ => eprintln!("wgrad: WGRAD_CPU_THREADS={value:?} is not a positive number; ignored"),
        }
    });
}

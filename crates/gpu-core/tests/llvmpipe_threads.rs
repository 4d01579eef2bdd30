// Own binary: it removes LP_NUM_THREADS from the process environment and counts the process's llvmpipe threads.
//! `LP_NUM_THREADS` (`gpu/llvmpipe_threads.rs`): wgrad sets it before the
//! first wgpu instance, unless the user did, and llvmpipe (lavapipe) really
//! starts that many compute workers. One test in its own binary: it changes
//! the process environment and counts the process's threads.

use wgrad_gpu_core::ops::fill;
use wgrad_gpu_core::testing::fresh_gpu_or_skip;

/// How many of this process's threads llvmpipe named as its pool workers
/// (`llvmpipe-0`, `llvmpipe-1`, ...: its rasterizer pool, started with the
/// compute pool and with the same size) per screen; `None` off Linux.
fn llvmpipe_workers() -> Option<usize> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        names.push(std::fs::read_to_string(task.ok()?.path().join("comm")).ok()?);
    }
    let worker = |i: usize| names.iter().any(|n| n.trim() == format!("llvmpipe-{i}"));
    Some((0..).take_while(|&i| worker(i)).count())
}

#[test]
fn lavapipe_gets_four_compute_threads_per_core() {
    std::env::remove_var("LP_NUM_THREADS");
    let Some(dev) = fresh_gpu_or_skip("llvmpipe threads") else { return };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let set = std::env::var("LP_NUM_THREADS").ok();
    if cores < 2 {
        assert_eq!(set, None, "one core keeps Mesa's default");
        return;
    }
    let want = (4 * cores).min(16);
    assert_eq!(set, Some(want.to_string()), "LP_NUM_THREADS on {cores} cores");
    if !dev.name().contains("llvmpipe") {
        return; // a hardware GPU's driver never reads it
    }
    // llvmpipe starts its pools with its first context; a dispatch makes sure.
    assert_eq!(fill::fill(&dev, 1000, 2.0).unwrap().to_f32().unwrap()[999], 2.0);
    if let Some(workers) = llvmpipe_workers() {
        assert_eq!(workers, want, "llvmpipe's workers (Mesa's default would be {cores})");
    }
}

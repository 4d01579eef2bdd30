//! Host cost per kernel launch, from the `Stats` of a timed region: what a
//! step costs the CPU that drives the GPU, independent of the adapter, so it
//! is measured on lavapipe as well as on a hardware GPU. Included with
//! `#[path]` so that benches without `common` can take it.
#![allow(dead_code)]

use wgrad::gpu_core::StatsSnapshot;

/// Microseconds of host time per launch in a timed region.
pub struct HostCost {
    /// Inside wgrad's recorder: launches recorded (fuser, bind groups,
    /// encoding) and batches submitted.
    pub record_us: f64,
    /// The region's wall time less its waits for the device: everything the
    /// host did (the autograd graph, the ops' own logic, recording, submitting).
    pub busy_us: f64,
}

/// [`HostCost`] of a region that took `wall_s` seconds and whose counters
/// moved by `done` (`after - before`); zeros when it launched nothing.
pub fn per_launch(done: &StatsSnapshot, wall_s: f64) -> HostCost {
    let n = done.dispatches.max(1) as f64;
    let waited = done.host_wait_ns as f64 / 1e9;
    HostCost {
        record_us: (done.host_record_ns + done.host_submit_ns) as f64 / 1e3 / n,
        busy_us: (wall_s - waited).max(0.0) * 1e6 / n,
    }
}

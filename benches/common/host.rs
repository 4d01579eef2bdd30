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
    /// Recording alone (no submit): on lavapipe a submit runs kernels on
    /// the submitting thread, so this is the figure to compare there.
    pub recording_us: f64,
    /// The share of launches replayed from a plan (`Stats::launches_replayed`).
    pub replayed: f64,
    /// All the host did outside the recorder and the submits: the autograd
    /// graph and the ops' own logic (on lavapipe the submits hold the
    /// kernels' run time, which this leaves out).
    pub outside_us: f64,
}

/// [`HostCost`] of a region that took `wall_s` seconds and whose counters
/// moved by `done` (`after - before`); zeros when it launched nothing.
pub fn per_launch(done: &StatsSnapshot, wall_s: f64) -> HostCost {
    let n = done.dispatches.max(1) as f64;
    let waited = done.host_wait_ns as f64 / 1e9;
    HostCost {
        record_us: (done.host_record_ns + done.host_submit_ns) as f64 / 1e3 / n,
        busy_us: (wall_s - waited).max(0.0) * 1e6 / n,
        recording_us: done.host_record_ns as f64 / 1e3 / n,
        replayed: done.launches_replayed as f64 / n,
        outside_us: ((wall_s - waited).max(0.0) * 1e6 - (done.host_record_ns + done.host_submit_ns) as f64 / 1e3)
            .max(0.0)
            / n,
    }
}

/// Runs `measure` on `dev` with replay off, then on (`Device::set_replay`),
/// and leaves replay on.
pub fn eager_then_replayed<T>(dev: &wgrad::gpu_core::Device, mut measure: impl FnMut() -> T) -> (T, T) {
    dev.set_replay(false).expect("replay off");
    let eager = measure();
    dev.set_replay(true).expect("replay on");
    (eager, measure())
}

/// The host cost per launch of workloads recorded afresh (`WGRAD_REPLAY=0`)
/// and replayed, measured in the same run: recording alone, all the host
/// did, their ratios, the host's time outside the recorder and the submits
/// (the graph and the ops), and the share of launches replayed.
pub fn print_replay_table(rows: &[(String, HostCost, HostCost)]) {
    println!(
        "{:<22} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7} {:>10} {:>10} {:>9}",
        "host us per launch",
        "rec eager",
        "rec repl",
        "ratio",
        "all eager",
        "all repl",
        "ratio",
        "ops eager",
        "ops repl",
        "replayed"
    );
    for (name, e, r) in rows {
        println!(
            "{name:<22} {:>10.2} {:>10.2} {:>7.2} {:>10.2} {:>10.2} {:>7.2} {:>10.2} {:>10.2} {:>8.0}%",
            e.recording_us,
            r.recording_us,
            r.recording_us / e.recording_us,
            e.busy_us,
            r.busy_us,
            r.busy_us / e.busy_us,
            e.outside_us,
            r.outside_us,
            r.replayed * 100.0
        );
    }
}

//! Host cost per kernel launch, from the `Stats` of a timed region: what a
//! step costs the CPU that drives the GPU, independent of the adapter, so it
//! is measured on lavapipe as well as on a hardware GPU. Included with
//! `#[path]` so that benches without `common` can take it.
#![allow(dead_code)]

use wgrad::gpu_core::StatsSnapshot;

/// Microseconds of host time per launch in a timed region.
#[derive(Clone, Copy)]
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
    /// The submit thread's work (wgpu's encoding and validation of the
    /// batches' passes, and the queue submits), beside the caller's: the
    /// caller counts it as waiting when it reads a value back before the
    /// thread is done, so a step whose waits exceed its device time is
    /// bound by this (on lavapipe the submits also run the kernels).
    pub encode_us: f64,
}

impl HostCost {
    /// All the host did but submit and wait: recording plus the graph and
    /// the ops (on lavapipe a submit runs the kernels, so it is left out).
    pub fn host_us(&self) -> f64 {
        self.recording_us + self.outside_us
    }
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
        encode_us: done.host_encode_ns as f64 / 1e3 / n,
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

/// One row of [`print_replay_table`]: a workload recorded afresh, replayed
/// batch by batch, and (where the bench has one) through a compiled step.
pub struct ReplayRow {
    pub name: String,
    pub eager: HostCost,
    pub replayed: HostCost,
    pub compiled: Option<HostCost>,
}

/// The host cost per launch of workloads recorded afresh (`WGRAD_REPLAY=0`),
/// replayed, and compiled (`CompiledStep`: forward, backward and the
/// optimizer's updates replayed as a step graph, the optimizer's host half
/// before it), measured in the same run: recording
/// alone, all the host did but submit and wait, their ratios to eager, the
/// share of launches replayed batch by batch, and the submit thread's work
/// ([`HostCost::encode_us`]).
pub fn print_replay_table(rows: &[ReplayRow]) {
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "host us per launch",
        "rec eager",
        "rec repl",
        "rec comp",
        "all eager",
        "all repl",
        "all comp",
        "repl/e",
        "comp/e",
        "replayed",
        "enc eager",
        "enc repl",
        "enc comp"
    );
    let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for r in rows {
        let (e, p, c) = (&r.eager, &r.replayed, r.compiled.as_ref());
        println!(
            "{:<22} {:>10.2} {:>10.2} {:>10} {:>10.2} {:>10.2} {:>10} {:>8.2} {:>8} {:>8.0}% {:>10.2} {:>10.2} {:>10}",
            r.name,
            e.recording_us,
            p.recording_us,
            show(c.map(|c| c.recording_us)),
            e.host_us(),
            p.host_us(),
            show(c.map(|c| c.host_us())),
            p.host_us() / e.host_us(),
            show(c.map(|c| c.host_us() / e.host_us())),
            p.replayed * 100.0,
            e.encode_us,
            p.encode_us,
            show(c.map(|c| c.encode_us))
        );
    }
}

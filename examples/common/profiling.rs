//! `--profile` for the examples: the step profiler's table for one
//! steady-state training step (the tenth, after pipelines are compiled and
//! the buffer pool is warm), printed and written as a Chrome trace.
//! Included with `#[path]` so each example takes only what it uses.

use std::path::PathBuf;

use wgrad::prelude::Device;

/// Which step gets profiled: late enough that pipelines and the pool are warm.
const PROFILED_STEP: usize = 10;

/// Counts training steps and profiles one of them when asked to.
pub struct StepProfiler {
    enabled: bool,
    steps: usize,
    trace: PathBuf,
}

impl StepProfiler {
    /// `enabled` from the `--profile` flag; the trace goes to `trace`.
    pub fn new(enabled: bool, trace: PathBuf) -> Self {
        StepProfiler { enabled, steps: 0, trace }
    }

    /// Runs one training step; the profiled one prints its table and writes the trace.
    pub fn step<R>(&mut self, dev: &Device, f: impl FnOnce() -> R) -> R {
        self.steps += 1;
        if !self.enabled || self.steps != PROFILED_STEP {
            return f();
        }
        let (r, report) = dev.profile(f).expect("profiling a step");
        println!("\nprofile of training step {PROFILED_STEP}:\n{report}");
        match report.write_chrome_trace(&self.trace) {
            Ok(()) => println!("trace: {} (open in https://ui.perfetto.dev)\n", self.trace.display()),
            Err(e) => println!("could not write {}: {e}\n", self.trace.display()),
        }
        r
    }
}

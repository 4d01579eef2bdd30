//! Step graphs, the public face of `gpu/tape.rs`: [`Device::record`] runs
//! a step and keeps the commands it encoded; a [`StepGraph`] replays them
//! without running the step's code. `wgrad_autograd::CompiledStep` is the
//! user-facing loop built on these (static inputs, two recordings compared
//! before the first replay, re-recording when shapes change).

use crate::gpu::tape::{Ready, Tape};
use crate::{Buffer, Device, Result};

/// The device commands one run of a step encoded ([`Device::record`]).
/// Not replayable by itself: a recording is trusted only once a second
/// recording of the step is the same ([`differs_from`](Self::differs_from)),
/// and replayed once pinned ([`into_graph`](Self::into_graph)).
pub struct Recording {
    device: Device,
    tape: Tape,
}

/// A recorded step pinned for replay: the buffers it binds are never
/// handed out by the pool while it lives. Dropping it releases them.
pub struct StepGraph {
    device: Device,
    ready: std::sync::Arc<[Ready]>,
    launches: usize,
    checks_indices: bool,
    pinned: Vec<wgpu::Buffer>,
    external: Vec<wgpu::Buffer>,
}

impl Device {
    /// Runs `f`, recording the commands it encodes (on a GPU device).
    /// Returns `f`'s value and the recording, or why there is none: the CPU
    /// backend records nothing, a step that reads data back or runs under
    /// the profiler is not recordable, and recordings do not nest.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> (T, std::result::Result<Recording, String>) {
        let Some(g) = self.gpu_ctx() else {
            return (f(), Err("the CPU backend runs each step as it comes (nothing to record)".into()));
        };
        if let Err(e) = g.begin_tape() {
            return (f(), Err(e.to_string()));
        }
        // Ends the recording even if `f` panics, so later work is not appended to it.
        struct End<'a>(&'a crate::gpu::GpuContext, bool);
        impl Drop for End<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    let _ = self.0.end_tape();
                }
            }
        }
        let mut end = End(g, false);
        let out = f();
        end.1 = true;
        let tape = match g.end_tape() {
            Ok(t) => t,
            Err(e) => return (out, Err(e.to_string())),
        };
        match &tape.refused {
            Some(why) => (out, Err(format!("not recordable: {why}"))),
            None => (out, Ok(Recording { device: self.clone(), tape })),
        }
    }
}

impl Device {
    /// Whether a step is being recorded ([`Device::record`]) on this
    /// device: work that must not be part of a replayed step (a readback
    /// to start) waits until the recording ends.
    pub fn is_recording(&self) -> bool {
        self.gpu_ctx().is_some_and(|g| g.batch.lock().unwrap().tape.is_some())
    }
}

impl Recording {
    /// Adds `buffers` (the step's outputs) to what [`differs_from`](Self::differs_from) compares.
    pub fn mark_outputs(&mut self, buffers: &[&Buffer]) {
        let backed = buffers.iter().filter(|b| b.is_backed()).map(|b| b.wgpu().clone());
        self.tape.marked.extend(backed);
    }

    /// Where this recording differs from an `earlier` one of the same step
    /// (other commands, other buffers, other parameter bytes or uploads),
    /// `None` when they are the same.
    pub fn differs_from(&self, earlier: &Recording) -> Option<String> {
        self.tape.differs_from(&earlier.tape)
    }

    /// Kernel launches recorded.
    pub fn launches(&self) -> usize {
        self.tape.dispatches()
    }

    /// Pins the recording's buffers and makes it replayable (its parameter
    /// blocks copied into buffers of its own, a bind group made per launch).
    pub fn into_graph(self) -> StepGraph {
        let pinned = self.tape.buffers();
        let external = self.tape.external(&pinned);
        let ready = match self.device.gpu_ctx() {
            Some(g) => {
                g.pool.pin(&pinned);
                g.prepare_tape(&self.tape)
            }
            None => Vec::new(),
        }
        .into();
        let (launches, checks_indices) = (self.tape.dispatches(), self.tape.checks_indices);
        StepGraph { device: self.device, ready, launches, checks_indices, pinned, external }
    }
}

impl StepGraph {
    /// Records the step again into the pending batch (submitted with it):
    /// the same launches on the same buffers, reading what those buffers
    /// hold then.
    ///
    /// # Errors
    /// When a buffer the step reads but did not make (a parameter, a
    /// static input) was freed since recording, and device errors.
    pub fn replay(&self) -> Result<()> {
        match self.device.gpu_ctx() {
            Some(g) => g.replay_tape(&self.ready, &self.external, self.checks_indices),
            None => Ok(()),
        }
    }

    /// Kernel launches one replay encodes.
    pub fn launches(&self) -> usize {
        self.launches
    }
}

impl Drop for StepGraph {
    fn drop(&mut self) {
        if let Some(g) = self.device.gpu_ctx() {
            g.pool.unpin(&self.pinned);
        }
    }
}

//! How the [`GpuContext`] records a step as a tape (`tape.rs`): starting
//! and ending the recording, and preparing a tape for replay.

use super::context::GpuContext;
use super::pipelines::bind_group;
use super::tape::{Command, Ready, Tape};
use super::window::binding;

impl GpuContext {
    /// Starts recording a step: what is pending is submitted first (it is
    /// not the step's), and no operand texture is taken to hold anything
    /// yet (the step copies in all it reads).
    pub(crate) fn begin_tape(&self) -> crate::Result<()> {
        let mut batch = self.batch.lock().unwrap();
        if batch.tape.is_some() {
            return Err(crate::Error::invalid("record", "a step is already being recorded"));
        }
        self.submit(&mut batch)?;
        batch.staging.forget();
        let mut tape = Tape::default();
        if self.profiler.is_active() {
            tape.refuse("the profiler is on");
        }
        batch.tape = Some(tape);
        self.pool.start_logging();
        Ok(())
    }

    /// Ends the recording begun by [`begin_tape`](Self::begin_tape),
    /// submitting the step's last commands.
    pub(crate) fn end_tape(&self) -> crate::Result<Tape> {
        let mut batch = self.batch.lock().unwrap();
        let submitted = self.submit(&mut batch);
        let mut tape = batch.tape.take().unwrap_or_default();
        tape.own = self.pool.stop_logging();
        tape.checks_indices = self.index_checks_pending.load(std::sync::atomic::Ordering::Relaxed);
        submitted?;
        Ok(tape)
    }

    /// The commands of `tape` ready to replay: its parameter blocks copied
    /// into uniform buffers of its own (they never change), and per launch
    /// a bind group binding those.
    pub(crate) fn prepare_tape(&self, tape: &Tape) -> Vec<Ready> {
        use wgpu::util::DeviceExt;
        let mut ready = Vec::new();
        for seg in &tape.segments {
            let chunks: Vec<wgpu::Buffer> = seg
                .chunks
                .iter()
                .map(|data| {
                    self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("wgrad step graph params"),
                        contents: if data.is_empty() { &[0; 4] } else { data },
                        usage: wgpu::BufferUsages::UNIFORM,
                    })
                })
                .collect();
            for c in &seg.commands {
                let Command::Dispatch { pipeline, layout, chunk, offset, grid, bound, views, .. } = c else {
                    ready.push(Ready::Other(c.clone()));
                    continue;
                };
                let resources =
                    bound.iter().enumerate().map(|(i, (b, w))| binding(b, *w, views.get(i).and_then(Option::as_ref)));
                let bind_group = bind_group(&self.device, layout, "wgrad step graph", &chunks[*chunk], resources);
                ready.push(Ready::Dispatch { pipeline: pipeline.clone(), bind_group, offset: *offset, grid: *grid });
            }
        }
        ready
    }

    /// Appends a prepared tape's commands to the pending batch (after the
    /// work recorded before; nothing is submitted for it), refusing when a
    /// buffer in `external` was freed since recording.
    pub(crate) fn replay_tape(
        &self,
        ready: &std::sync::Arc<[Ready]>,
        external: &[wgpu::Buffer],
        checks_indices: bool,
    ) -> crate::Result<()> {
        use super::host_clock;
        use crate::stats::HostPhase;
        let _host = host_clock::enter(&self.stats, HostPhase::Record);
        let mut batch = self.batch.lock().unwrap();
        if batch.tape.is_some() {
            return Err(crate::Error::invalid("replay", "a step graph replayed while a step is being recorded"));
        }
        if let Some(b) = self.pool.first_parked(external) {
            return Err(crate::Error::invalid(
                "replay",
                format!(
                    "a buffer of {} bytes the recorded step reads was freed since (a parameter replaced, \
                     an input dropped): record the step again",
                    b.size()
                ),
            ));
        }
        // Deferred launches before it run first.
        self.settle(&mut batch)?;
        let launches = batch.append(ready);
        if checks_indices {
            self.index_checks_pending.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.stats().graph_replayed(launches as u64);
        self.submit_if_full(&mut batch)
    }
}

//! A compute pass kept open across dispatches. Launches share one pass:
//! wgpu still orders each dispatch after the writes it depends on (every
//! dispatch is its own usage scope), while a GPU is spared a pass begin and
//! end per kernel. The pipeline is set only when it changes. Used by the
//! batch the caller records into and by a step graph's replay
//! (`tape::encode_graph`).

/// The open pass (if any) and the pipeline it has set.
#[derive(Default)]
pub(crate) struct OpenPass {
    pass: Option<wgpu::ComputePass<'static>>,
    pipeline: Option<wgpu::ComputePipeline>,
}

impl OpenPass {
    /// Records one dispatch into the pass, begun on `encoder` if none is
    /// open (a pass forgotten from its lifetime locks `encoder` until
    /// [`end`](Self::end)).
    pub fn dispatch(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        offset: u32,
        (x, y): (u32, u32),
    ) {
        let pass = self.pass.get_or_insert_with(|| {
            let desc = wgpu::ComputePassDescriptor { label: Some("wgrad kernels"), timestamp_writes: None };
            encoder.begin_compute_pass(&desc).forget_lifetime()
        });
        if self.pipeline.as_ref() != Some(pipeline) {
            pass.set_pipeline(pipeline);
            self.pipeline = Some(pipeline.clone());
        }
        pass.set_bind_group(0, bind_group, &[offset]);
        pass.dispatch_workgroups(x, y, 1);
    }

    /// Ends the pass (before any other command on its encoder).
    pub fn end(&mut self) {
        self.pass = None;
        self.pipeline = None;
    }
}

//! The pending work ([`Batch`]): kernels are encoded into one pending
//! command encoder and submitted together when data must leave the device
//! (or on `flush`). The `GpuContext` methods that record into it are in
//! `recorder.rs`.
//!
//! Per-dispatch sizes go into a CPU-side parameter arena (256-byte slots,
//! bound with dynamic offsets) that is written to the GPU right before the
//! submit, so recording a kernel costs no queue operation.

use std::sync::Arc;

use super::fusion::Deferred;
use super::launch::PARAMS_BYTES;
use super::open_pass::OpenPass;
use super::pipelines::Kernel;
use super::submitter::Finish;
use super::tape::{Command, Ready, Tape};
use super::window::Window;

/// Slots in one parameter chunk (64 KiB).
const SLOTS_PER_CHUNK: usize = 256;
/// Past this many recorded dispatches the batch submits itself, so a loop
/// that never reads back stays bounded in memory.
pub(crate) const MAX_PENDING_DISPATCHES: usize = 4096;
/// Largest workgroup count per grid dimension that WebGPU guarantees.
pub(crate) const MAX_GRID_DIM: u32 = 65_535;

/// One parameter chunk: its uniform buffer and the blocks written to it.
pub(super) struct Chunk {
    pub(super) buffer: wgpu::Buffer,
    pub(super) data: Vec<u8>,
}

/// A batch's command encoder.
pub(super) fn new_encoder(device: &wgpu::Device) -> wgpu::CommandEncoder {
    device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgrad batch") })
}

/// Commands the caller recorded, finished where the batch is.
pub(super) fn recorded(encoder: wgpu::CommandEncoder) -> Finish {
    Box::new(move |_| encoder.finish())
}

/// Timestamp queries per query set while profiling (two per launch). A
/// batch that fills one submits early; a run the fuser encodes in one go
/// may fill it before the batch can submit, and continues in another.
pub(super) const PROFILE_QUERIES: u32 = 512;

/// GPU timestamps of the profiled launches of one batch.
pub(super) struct Timing {
    pub(super) set: wgpu::QuerySet,
    pub(super) resolve: wgpu::Buffer,
    pub(super) read: wgpu::Buffer,
    /// Profile record index of each timed launch, in query-pair order.
    pub(super) records: Vec<usize>,
}

/// The work recorded since the last submit.
#[derive(Default)]
pub(crate) struct Batch {
    /// The compute pass consecutive launches share (ended by any other
    /// command: a copy, a timed launch, the submit). Declared before the
    /// encoder so that it drops first.
    pub(super) pass: OpenPass,
    pub(super) encoder: Option<wgpu::CommandEncoder>,
    pub(super) chunks: Vec<Chunk>,
    /// Chunks free again after a submit (their bytes went with it; each
    /// holds an empty vector of a whole chunk's capacity, so its blocks are
    /// not appended to a vector growing from nothing in every batch).
    pub(super) spare: Vec<Chunk>,
    /// Launches recorded since the last submit, counted as recorded (an
    /// elementwise launch the fuser later merges counts too), so the
    /// [`MAX_PENDING_DISPATCHES`] bound is on recorded work either way.
    pub(super) dispatches: usize,
    pub(super) timings: Vec<Timing>,
    /// Elementwise launches recorded but not yet encoded (the fuser's run).
    pub(super) deferred: Vec<Deferred>,
    /// The textures that texture-operand kernels read (kept across batches).
    pub(crate) staging: super::texture_operands::Staging,
    /// Bind groups by what they bind, reused across launches and steps.
    pub(crate) bind_groups: super::bind_groups::BindGroups,
    /// The plans of earlier batches this one may replay (`replay.rs`).
    pub(crate) replay: super::replay::Replay,
    /// What runs once this batch is submitted (readbacks' maps).
    pub(crate) after_submit: Vec<super::submitter::AfterSubmit>,
    /// The batch's commands before `encoder`'s, in order (a step graph's
    /// replay splits the batch: see [`append`](Self::append)).
    pub(super) parts: Vec<Finish>,
    /// The step being recorded as a step graph, if one is (`tape.rs`).
    pub(crate) tape: Option<Tape>,
}

/// What one dispatch binds, for a step graph's record of it.
pub(super) struct Binds<'a> {
    pub(super) inputs: &'a [&'a wgpu::Buffer],
    pub(super) outputs: &'a [&'a wgpu::Buffer],
    pub(super) windows: &'a [Option<Window>],
    pub(super) views: &'a [Option<wgpu::TextureView>],
}

/// Splits a linear workgroup count into an (x, y) grid within the per-dimension limit.
pub(crate) fn fold_grid(n: u32) -> (u32, u32) {
    if n <= MAX_GRID_DIM {
        (n, 1)
    } else {
        let y = n.div_ceil(MAX_GRID_DIM);
        (n.div_ceil(y), y)
    }
}

impl Timing {
    pub(super) fn new(device: &wgpu::Device) -> Timing {
        let bytes = PROFILE_QUERIES as u64 * 8;
        let buffer = |usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgrad timestamps"),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Timing {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("wgrad profile"),
                ty: wgpu::QueryType::Timestamp,
                count: PROFILE_QUERIES,
            }),
            resolve: buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            read: buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            records: Vec::new(),
        }
    }
}

impl Batch {
    /// The pending encoder, for a command outside compute passes: ends the open pass.
    pub(crate) fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass.end();
        self.encoder.get_or_insert_with(|| new_encoder(device))
    }

    /// The view of an operand texture holding `buffer` (or its `window`):
    /// one that already does, or one it is copied into now (outside the
    /// compute pass, which the copy ends). Also returns the bytes it
    /// copied, `None` when it copied nothing.
    pub(super) fn stage_texture(
        &mut self,
        device: &wgpu::Device,
        buffer: &wgpu::Buffer,
        window: Option<Window>,
    ) -> (wgpu::TextureView, Option<u64>) {
        let window = window.unwrap_or(Window { offset: 0, size: buffer.size() });
        if let Some(view) = self.staging.holding(buffer, window) {
            return (view, None);
        }
        self.encoder(device);
        let encoder = self.encoder.as_mut().expect("the pending encoder exists");
        let (view, texture) = self.staging.copy_in(device, encoder, buffer, window);
        if let Some(t) = &mut self.tape {
            t.push(Command::TextureCopy { buffer: buffer.clone(), window, texture });
        }
        (view, Some(window.size))
    }

    /// Records one dispatch of `kernel` into the open pass (setting its
    /// pipeline only when the pass has another), whose parameter block is
    /// the last one pushed.
    pub(super) fn dispatch(
        &mut self,
        device: &wgpu::Device,
        kernel: &Kernel,
        (bind_group, binds): (&wgpu::BindGroup, Binds),
        offset: u32,
        workgroups: u32,
    ) {
        let (x, y) = fold_grid(workgroups);
        if let Some(t) = &mut self.tape {
            let window = |i: usize| binds.windows.get(i).copied().flatten();
            t.push(Command::Dispatch {
                pipeline: kernel.pipeline.clone(),
                layout: kernel.layout.clone(),
                chunk: self.chunks.len() - 1,
                offset,
                grid: (x, y),
                bound: binds
                    .inputs
                    .iter()
                    .chain(binds.outputs)
                    .enumerate()
                    .map(|(i, b)| ((*b).clone(), window(i)))
                    .collect(),
                views: binds.views.to_vec(),
            });
        }
        let encoder = self.encoder.get_or_insert_with(|| new_encoder(device));
        self.pass.dispatch(encoder, &kernel.pipeline, bind_group, offset, (x, y));
    }

    /// Appends a step graph's prepared commands (`tape.rs`) after what is
    /// recorded; returns the launches appended. They are encoded when the
    /// batch is finished (on the submit thread, `tape::encode_graph`), in a
    /// command buffer between the caller's encoders before and after them.
    pub(crate) fn append(&mut self, ready: &Arc<[Ready]>) -> usize {
        // Ends the open pass; what was recorded so far goes first.
        self.pass.end();
        if let Some(e) = self.encoder.take() {
            self.parts.push(recorded(e));
        }
        let graph = ready.clone();
        self.parts.push(Box::new(move |device| super::tape::encode_graph(device, &graph)));
        let launches = ready.iter().filter(|c| matches!(c, Ready::Dispatch { .. })).count();
        // The textures now hold what the replay copied into them.
        self.staging.forget();
        self.dispatches += launches;
        launches
    }

    /// The chunk the next parameter block goes to, if it exists yet (see
    /// [`push_params`](Self::push_params)).
    pub(super) fn next_params_chunk(&self) -> Option<&wgpu::Buffer> {
        match self.chunks.last() {
            Some(c) if c.data.len() < SLOTS_PER_CHUNK * PARAMS_BYTES as usize => Some(&c.buffer),
            _ => self.spare.last().map(|c| &c.buffer),
        }
    }

    /// Stores a parameter block and returns (chunk index, byte offset).
    pub(super) fn push_params(&mut self, device: &wgpu::Device, params: &[u32]) -> (usize, u32) {
        let bytes: &[u8] = bytemuck::cast_slice(params);
        assert!(bytes.len() as u64 <= PARAMS_BYTES, "kernel parameter block larger than {PARAMS_BYTES} bytes");
        let full = self.chunks.last().is_none_or(|c| c.data.len() >= SLOTS_PER_CHUNK * PARAMS_BYTES as usize);
        if full {
            let chunk = self.spare.pop().unwrap_or_else(|| Chunk {
                buffer: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgrad params"),
                    size: SLOTS_PER_CHUNK as u64 * PARAMS_BYTES,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                data: Vec::with_capacity(SLOTS_PER_CHUNK * PARAMS_BYTES as usize),
            });
            self.chunks.push(chunk);
        }
        let chunk = self.chunks.last_mut().unwrap();
        let offset = chunk.data.len();
        chunk.data.extend_from_slice(bytes);
        chunk.data.resize(offset + PARAMS_BYTES as usize, 0);
        (self.chunks.len() - 1, offset as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_fold_within_limits() {
        assert_eq!(fold_grid(1), (1, 1));
        assert_eq!(fold_grid(65_535), (65_535, 1));
        for n in [65_536u32, 1 << 20, 4_000_000_000] {
            let (x, y) = fold_grid(n);
            assert!(x <= MAX_GRID_DIM && y <= MAX_GRID_DIM && (x as u64 * y as u64) >= n as u64, "{n}");
        }
    }
}

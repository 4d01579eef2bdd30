//! Step graphs: the commands a whole step recorded, replayed without
//! running the step's code again (what CUDA graphs are to PyTorch).
//!
//! Replay of batches (`replay.rs`) still runs the step's Rust code (the
//! autograd graph, the ops' checks and kernel choices) and only skips the
//! recorder's decisions. A *tape* goes further: while a step runs, the
//! batch also appends every command it encodes (a dispatch with its
//! pipeline, layout, parameter slot and what it binds; a buffer copy; an
//! upload from its staging buffer; a copy into an operand texture) and, at
//! each submit, the parameter chunks' contents. Preparing a tape for
//! replay copies those contents into uniform buffers of its own and makes
//! a bind group per launch binding them; a replay appends the commands to
//! the pending batch: per launch `set_pipeline` (when it changes),
//! `set_bind_group`, `dispatch`.
//!
//! A tape is only correct to replay if the step would record the same
//! again, so the caller (`wgrad_autograd::CompiledStep`) records the step
//! until two consecutive recordings are [`equal`](Tape::differs_from)
//! (same commands, same parameter bytes and uploads, the same buffers up
//! to a renaming of those the pool handed the step): a step whose scalars
//! change every time (a dropout seed) or whose buffers do not settle is
//! never replayed. Then the tape is pinned: every buffer it binds is kept
//! out of the pool (freed, it is *parked* until the graph drops), so
//! nothing else is ever handed the buffers it writes. The buffers it reads
//! that were made before the step (parameters, optimizer state, the step's
//! static inputs) must stay held by their tensors: a replay that finds one
//! freed (a parameter replaced, an input dropped) refuses with an error.

use rustc_hash::FxHashSet as HashSet;
use std::hash::{Hash, Hasher};

use super::window::Window;

/// One command a step encoded.
#[derive(Clone)]
pub(crate) enum Command {
    /// A kernel launch into the open compute pass.
    Dispatch {
        pipeline: wgpu::ComputePipeline,
        layout: std::sync::Arc<wgpu::BindGroupLayout>,
        /// The parameter chunk (index into the segment's) and block offset.
        chunk: usize,
        offset: u32,
        grid: (u32, u32),
        /// What the bind group binds (inputs, then outputs; per input the
        /// view of the operand texture it reads instead, if any): compared
        /// instead of the bind group, which a texture-reading launch makes
        /// afresh every time, and bound again in the graph's own bind group.
        bound: Vec<(wgpu::Buffer, Option<Window>)>,
        views: Vec<Option<wgpu::TextureView>>,
    },
    /// A device copy.
    Copy { src: wgpu::Buffer, src_offset: u64, dst: wgpu::Buffer, dst_offset: u64, size: u64 },
    /// A host-to-device copy, from the staging buffer recording made (its
    /// contents never change), with a hash of the bytes for comparison.
    Upload { staging: wgpu::Buffer, dst: wgpu::Buffer, offset: u64, size: u64, hash: u64 },
    /// A copy of a buffer window into an operand texture (CPU adapters).
    TextureCopy { buffer: wgpu::Buffer, window: Window, texture: wgpu::Texture },
}

impl Command {
    /// Whether `self` and `other` do the same work, with `eq` saying
    /// whether two buffers correspond.
    fn same(&self, other: &Command, eq: &mut impl FnMut(&wgpu::Buffer, &wgpu::Buffer) -> bool) -> bool {
        use Command::*;
        match (self, other) {
            (
                Dispatch { pipeline: p, chunk: c, offset: o, grid: g, bound: b, views: v, .. },
                Dispatch { pipeline: p2, chunk: c2, offset: o2, grid: g2, bound: b2, views: v2, .. },
            ) => {
                p == p2
                    && c == c2
                    && o == o2
                    && g == g2
                    && v == v2
                    && b.len() == b2.len()
                    && b.iter().zip(b2).all(|((x, w), (y, w2))| w == w2 && eq(x, y))
            }
            (Upload { dst, offset, size, hash, .. }, Upload { dst: d2, offset: o2, size: s2, hash: h2, .. }) => {
                offset == o2 && size == s2 && hash == h2 && eq(dst, d2)
            }
            (
                Copy { src, src_offset, dst, dst_offset, size },
                Copy { src: s2, src_offset: so2, dst: d2, dst_offset: do2, size: z2 },
            ) => src_offset == so2 && dst_offset == do2 && size == z2 && eq(src, s2) && eq(dst, d2),
            (TextureCopy { buffer, window, texture }, TextureCopy { buffer: b2, window: w2, texture: t2 }) => {
                window == w2 && texture == t2 && eq(buffer, b2)
            }
            _ => false,
        }
    }

    /// What differs between two dispatches (for [`Tape::differs_from`]).
    fn how(&self, other: &Command) -> String {
        use Command::*;
        match (self, other) {
            (
                Dispatch { pipeline: p, chunk: c, offset: o, grid: g, bound: b, views: v, .. },
                Dispatch { pipeline: p2, chunk: c2, offset: o2, grid: g2, bound: b2, views: v2, .. },
            ) => {
                let bound: Vec<usize> = (0..b.len().min(b2.len())).filter(|&i| b[i] != b2[i]).collect();
                [
                    (p != p2, "the kernel".to_string()),
                    ((c, o) != (c2, o2), "the parameter slot".to_string()),
                    (g != g2, "the grid".to_string()),
                    (b.len() != b2.len() || !bound.is_empty(), format!("the buffers bound at {bound:?}")),
                    (v != v2, "the textures read".to_string()),
                ]
                .into_iter()
                .filter(|(d, _)| *d)
                .map(|(_, w)| w)
                .collect::<Vec<_>>()
                .join(", ")
            }
            _ => String::new(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Command::Dispatch { .. } => "a launch",
            Command::Copy { .. } => "a copy",
            Command::Upload { .. } => "an upload",
            Command::TextureCopy { .. } => "a texture copy",
        }
    }
}

/// The commands of one submission and the parameter chunks they bind.
#[derive(Default)]
pub(crate) struct Segment {
    /// The bytes of the parameter chunks its launches bind.
    pub chunks: Vec<Vec<u8>>,
    pub commands: Vec<Command>,
}

/// A step's recording (see the module doc).
#[derive(Default)]
pub(crate) struct Tape {
    pub segments: Vec<Segment>,
    /// Commands since the last submit.
    pub open: Vec<Command>,
    /// Why this recording cannot be replayed (a readback, the profiler, ...).
    pub refused: Option<String>,
    /// The buffers the step was handed by the pool (filled at the end).
    pub own: HashSet<wgpu::Buffer>,
    /// Buffers the caller marked (the step's outputs): compared too.
    pub marked: Vec<wgpu::Buffer>,
    /// Whether a launch validated indices (a replay arms the error check too).
    pub checks_indices: bool,
}

/// A hash of upload bytes (equal bytes, equal hash; a step whose uploads
/// differ is told apart with near certainty).
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl Tape {
    /// Appends a command (dropped once the tape is refused).
    pub fn push(&mut self, c: Command) {
        if self.refused.is_none() {
            self.open.push(c);
        }
    }

    /// Marks the recording as not replayable, keeping the first reason.
    pub fn refuse(&mut self, why: impl Into<String>) {
        if self.refused.is_none() {
            self.refused = Some(why.into());
            self.segments.clear();
            self.open.clear();
        }
    }

    /// Closes the segment of a submit whose parameter chunks are `chunks`.
    pub fn end_segment(&mut self, chunks: Vec<Vec<u8>>) {
        if self.refused.is_none() && !self.open.is_empty() {
            let commands = std::mem::take(&mut self.open);
            self.segments.push(Segment { chunks, commands });
        }
    }

    /// Launches recorded.
    pub fn dispatches(&self) -> usize {
        let all = self.segments.iter().flat_map(|s| &s.commands);
        all.filter(|c| matches!(c, Command::Dispatch { .. })).count()
    }

    /// Every buffer the tape binds or copies (each once).
    // A `wgpu::Buffer` hashes and compares by identity, which its interior
    // mutability does not touch.
    #[allow(clippy::mutable_key_type)]
    pub fn buffers(&self) -> Vec<wgpu::Buffer> {
        let mut seen = HashSet::default();
        let mut out = Vec::new();
        let mut add = |b: &wgpu::Buffer| {
            if seen.insert(b.clone()) {
                out.push(b.clone());
            }
        };
        for c in self.segments.iter().flat_map(|s| &s.commands) {
            match c {
                Command::Dispatch { bound, .. } => bound.iter().for_each(|(b, _)| add(b)),
                Command::Copy { src, dst, .. } => {
                    add(src);
                    add(dst);
                }
                Command::Upload { dst, .. } => add(dst),
                Command::TextureCopy { buffer, .. } => add(buffer),
            }
        }
        self.marked.iter().for_each(&mut add);
        out
    }

    /// Of `buffers` (the tape's), those the step was not handed: made
    /// before it (parameters, state, inputs), they must outlive every replay.
    pub fn external(&self, buffers: &[wgpu::Buffer]) -> Vec<wgpu::Buffer> {
        buffers.iter().filter(|b| !self.own.contains(*b)).cloned().collect()
    }

    /// Where `self` and `other` first differ, `None` when they record the
    /// same work. Buffers the pool handed each step (its own) correspond when
    /// they do one to one (the step's intermediates may be other buffers
    /// each time: a replay of either is right); every other buffer (a
    /// parameter, an input) must be the same one.
    // A `wgpu::Buffer` hashes and compares by identity.
    #[allow(clippy::mutable_key_type)]
    pub fn differs_from(&self, other: &Tape) -> Option<String> {
        if let Some(why) = self.refused.as_ref().or(other.refused.as_ref()) {
            return Some(why.clone());
        }
        if self.segments.len() != other.segments.len() {
            return Some(format!("{} submissions, then {}", other.segments.len(), self.segments.len()));
        }
        let (mut to, mut from) = (std::collections::HashMap::new(), std::collections::HashMap::new());
        let mut eq = |a: &wgpu::Buffer, b: &wgpu::Buffer| match (self.own.contains(a), other.own.contains(b)) {
            (false, false) => a == b,
            (true, true) => match (to.get(a), from.get(b)) {
                (None, None) => {
                    to.insert(a.clone(), b.clone());
                    from.insert(b.clone(), a.clone());
                    true
                }
                (Some(x), Some(y)) => x == b && y == a,
                _ => false,
            },
            _ => false,
        };
        for (s, (a, b)) in self.segments.iter().zip(&other.segments).enumerate() {
            if a.commands.len() != b.commands.len() {
                return Some(format!("submission {s}: {} commands, then {}", b.commands.len(), a.commands.len()));
            }
            if let Some(i) = (0..a.commands.len()).find(|&i| !a.commands[i].same(&b.commands[i], &mut eq)) {
                let how = a.commands[i].how(&b.commands[i]);
                return Some(format!("submission {s}, command {i}: {} differs ({how})", a.commands[i].name()));
            }
            let sizes = |s: &Segment| s.chunks.iter().map(Vec::len).collect::<Vec<_>>();
            if sizes(a) != sizes(b) {
                return Some(format!("submission {s}: other parameter chunks"));
            }
            if let Some(i) = (0..a.chunks.len()).find(|&i| a.chunks[i] != b.chunks[i]) {
                let (x, y) = (&a.chunks[i], &b.chunks[i]);
                let at = (0..x.len().min(y.len())).find(|&k| x[k] != y[k]).unwrap_or(0);
                let slot = (at as u64 / super::launch::PARAMS_BYTES * super::launch::PARAMS_BYTES) as u32;
                let launch = a.commands.iter().position(
                    |c| matches!(c, Command::Dispatch { chunk, offset, .. } if *chunk == i && *offset == slot),
                );
                return Some(format!(
                    "submission {s}: the parameters of command {} change between steps",
                    launch.map_or("?".to_string(), |l| l.to_string())
                ));
            }
        }
        let marked =
            self.marked.len() == other.marked.len() && self.marked.iter().zip(&other.marked).all(|(a, b)| eq(a, b));
        if !marked {
            return Some("the step's outputs do not correspond".into());
        }
        None
    }
}

/// A tape's command ready to replay ([`GpuContext::prepare_tape`](super::GpuContext::prepare_tape)).
pub(crate) enum Ready {
    Dispatch { pipeline: wgpu::ComputePipeline, bind_group: wgpu::BindGroup, offset: u32, grid: (u32, u32) },
    Other(Command),
}

/// A replay's commands in a command buffer of their own (on the submit
/// thread, when the batch they were appended to is finished): the
/// dispatches share compute passes, as in a batch recorded afresh.
pub(crate) fn encode_graph(device: &wgpu::Device, ready: &[Ready]) -> wgpu::CommandBuffer {
    let mut encoder =
        device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgrad step graph") });
    let mut pass = super::open_pass::OpenPass::default();
    for c in ready {
        match c {
            Ready::Dispatch { pipeline, bind_group, offset, grid } => {
                pass.dispatch(&mut encoder, pipeline, bind_group, *offset, *grid)
            }
            Ready::Other(c) => {
                pass.end();
                match c {
                    Command::Copy { src, src_offset, dst, dst_offset, size } => {
                        encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size)
                    }
                    Command::Upload { staging, dst, offset, size, .. } => {
                        encoder.copy_buffer_to_buffer(staging, 0, dst, *offset, *size)
                    }
                    Command::TextureCopy { buffer, window, texture } => {
                        super::texture_operands::copy_window(&mut encoder, buffer, *window, texture)
                    }
                    Command::Dispatch { .. } => unreachable!("prepared as Ready::Dispatch"),
                }
            }
        }
    }
    pass.end();
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(dev: &crate::Device) -> wgpu::Buffer {
        let usage = super::super::pool::USAGE;
        let desc = wgpu::BufferDescriptor { label: None, size: 256, usage, mapped_at_creation: false };
        dev.gpu_ctx().unwrap().device.create_buffer(&desc)
    }

    /// A tape of copies `src -> dst` per pair, whose `own` buffers are those given.
    fn tape(pairs: &[(&wgpu::Buffer, &wgpu::Buffer)], own: &[&wgpu::Buffer]) -> Tape {
        let mut t = Tape::default();
        for (src, dst) in pairs {
            t.push(Command::Copy { src: (*src).clone(), src_offset: 0, dst: (*dst).clone(), dst_offset: 0, size: 256 });
        }
        t.end_segment(Vec::new());
        t.own = own.iter().map(|b| (*b).clone()).collect();
        t
    }

    /// Two recordings are the same when the buffers the pool handed each
    /// correspond one to one and every other buffer is the same one.
    #[test]
    #[allow(clippy::mutable_key_type)]
    fn recordings_compare_their_own_buffers_up_to_renaming() {
        let Some(dev) = crate::testing::fresh_gpu_or_skip("recordings_compare_their_own_buffers") else { return };
        let [param, input, a, b, c, d] = [(); 6].map(|_| buffer(&dev));
        let first = tape(&[(&input, &a), (&a, &b), (&b, &param)], &[&a, &b]);
        // The intermediates are other buffers, consistently: the same step.
        let renamed = tape(&[(&input, &c), (&c, &d), (&d, &param)], &[&c, &d]);
        assert_eq!(renamed.differs_from(&first), None);
        // One intermediate standing for two: not the same step.
        let merged = tape(&[(&input, &c), (&c, &c), (&c, &param)], &[&c]);
        assert!(merged.differs_from(&first).is_some());
        // Another input (a buffer the step did not get from the pool): not the same.
        let other_input = tape(&[(&d, &c), (&c, &b), (&b, &param)], &[&c, &b]);
        assert!(other_input.differs_from(&first).is_some_and(|w| w.contains("command 0")));
    }
}

//! Counters that make the execution model testable: how many submissions,
//! dispatches and readbacks a piece of code causes, how much memory it
//! holds, and (on a GPU) where the host's time went.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What the host was doing for a GPU device (see `gpu/host_clock.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostPhase {
    /// Recording launches and copies: the fuser's planning, pipeline
    /// lookups, bind groups, encoding.
    Record,
    /// Submitting a batch: parameter blocks written, the command buffer
    /// finished and queued.
    Submit,
    /// Waiting for the device: a readback's map, timestamps.
    Wait,
    /// On the submit thread (`gpu/submitter.rs`): a batch's parameter
    /// blocks written and its command buffer finished and queued, beside
    /// the caller.
    Encode,
}

/// Live counters of one device. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    bytes_live: AtomicU64,
    bytes_peak: AtomicU64,
    buffers_created: AtomicU64,
    submissions: AtomicU64,
    dispatches: AtomicU64,
    readbacks: AtomicU64,
    texture_copies: AtomicU64,
    texture_bytes: AtomicU64,
    texture_reuses: AtomicU64,
    transient_bytes: AtomicU64,
    transient_peak: AtomicU64,
    host_record_ns: AtomicU64,
    host_submit_ns: AtomicU64,
    host_wait_ns: AtomicU64,
    host_encode_ns: AtomicU64,
    bind_groups_created: AtomicU64,
    plans_captured: AtomicU64,
    batches_replayed: AtomicU64,
    launches_replayed: AtomicU64,
    replay_fallbacks: AtomicU64,
    graphs_replayed: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Bytes in buffers held by live handles, in their allocation's size
    /// class (pooled free buffers are not counted), plus on the CPU backend
    /// the `transient_bytes` its kernels hold at this moment.
    pub bytes_live: u64,
    /// The largest `bytes_live` seen since the device was created or `reset_peak`.
    pub bytes_peak: u64,
    /// Device buffers allocated from the driver (pool misses).
    pub buffers_created: u64,
    /// Command buffers submitted to the queue.
    pub submissions: u64,
    /// Kernel launches recorded (on the CPU backend: kernel calls).
    pub dispatches: u64,
    /// Copies of device data back to the host.
    pub readbacks: u64,
    /// Buffers (or windows) copied into operand textures (CPU adapters; see
    /// `Device::set_texture_operands`).
    pub texture_copies: u64,
    /// Bytes those copies moved: on llvmpipe each is a `memcpy` on the queue
    /// thread while the kernel threads wait, so this is part of a step's
    /// cost that kernel timestamps do not show.
    pub texture_bytes: u64,
    /// Operand textures bound again without a copy, their buffer unwritten
    /// since.
    pub texture_reuses: u64,
    /// Host memory the CPU backend holds beyond its buffers at this moment:
    /// a kernel's f16 operands widened to f32 or f16 results before
    /// rounding, a readback's copy while it is made. Checked against the
    /// memory budget and counted in `bytes_live` while held (0 on a GPU).
    pub transient_bytes: u64,
    /// The largest `transient_bytes` seen since the device was created or
    /// `reset_peak`.
    pub transient_peak: u64,
    /// Host nanoseconds spent recording GPU work (launches, the fuser,
    /// copies, uploads), submission excluded; 0 on the CPU backend, whose
    /// kernels run as they are called.
    pub host_record_ns: u64,
    /// Host nanoseconds spent submitting batches to the GPU queue.
    pub host_submit_ns: u64,
    /// Host nanoseconds spent waiting for the GPU (readbacks). A step's
    /// wall time minus this is its host cost; when that exceeds the
    /// device's time, the host is what bounds the step.
    pub host_wait_ns: u64,
    /// Nanoseconds the submit thread spent finishing and queueing batches
    /// (wgpu's validation and encoding of their passes), in parallel with
    /// the caller's recording; with `WGRAD_SUBMIT_THREAD=0` that work is on
    /// the caller's thread, in `host_submit_ns`, and this stays 0.
    pub host_encode_ns: u64,
    /// Bind groups a GPU device created: one per launch, except those it
    /// found cached (binding the same buffers to the same kernel layout as
    /// an earlier launch: the steps of a training loop after the first).
    pub bind_groups_created: u64,
    /// Batches a GPU device kept as replay plans: recorded afresh, because
    /// no plan matched them whole (see `gpu/replay.rs`; 0 with replay off).
    pub plans_captured: u64,
    /// Batches that matched a plan whole: every launch replayed (but for
    /// launches that read operand textures, recorded afresh on CPU adapters).
    pub batches_replayed: u64,
    /// Launches encoded from a plan's pipeline and bind group (and fused
    /// kernels from its fuser decisions) instead of being recorded afresh.
    pub launches_replayed: u64,
    /// Batches that followed a plan and then differed from it (new shapes,
    /// another graph): recorded afresh from there and kept as a new plan
    /// (`Device::replay_fallback` says why the last one did).
    pub replay_fallbacks: u64,
    /// Whole steps replayed from a step graph (`Device::record`,
    /// `gpu/tape.rs`): their launches were neither recorded nor matched,
    /// only re-encoded (they count in `dispatches` too).
    pub graphs_replayed: u64,
}

impl Stats {
    /// Reads all counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            bytes_live: self.bytes_live.load(Relaxed),
            bytes_peak: self.bytes_peak.load(Relaxed),
            buffers_created: self.buffers_created.load(Relaxed),
            submissions: self.submissions.load(Relaxed),
            dispatches: self.dispatches.load(Relaxed),
            readbacks: self.readbacks.load(Relaxed),
            texture_copies: self.texture_copies.load(Relaxed),
            texture_bytes: self.texture_bytes.load(Relaxed),
            texture_reuses: self.texture_reuses.load(Relaxed),
            transient_bytes: self.transient_bytes.load(Relaxed),
            transient_peak: self.transient_peak.load(Relaxed),
            host_record_ns: self.host_record_ns.load(Relaxed),
            host_submit_ns: self.host_submit_ns.load(Relaxed),
            host_wait_ns: self.host_wait_ns.load(Relaxed),
            host_encode_ns: self.host_encode_ns.load(Relaxed),
            bind_groups_created: self.bind_groups_created.load(Relaxed),
            plans_captured: self.plans_captured.load(Relaxed),
            batches_replayed: self.batches_replayed.load(Relaxed),
            launches_replayed: self.launches_replayed.load(Relaxed),
            replay_fallbacks: self.replay_fallbacks.load(Relaxed),
            graphs_replayed: self.graphs_replayed.load(Relaxed),
        }
    }

    /// Restarts peak tracking from the current live bytes.
    pub fn reset_peak(&self) {
        self.bytes_peak.store(self.bytes_live.load(Relaxed), Relaxed);
        self.transient_peak.store(self.transient_bytes.load(Relaxed), Relaxed);
    }

    pub(crate) fn bytes_live(&self) -> u64 {
        self.bytes_live.load(Relaxed)
    }

    pub(crate) fn buffer_acquired(&self, bytes: u64) {
        let live = self.bytes_live.fetch_add(bytes, Relaxed) + bytes;
        self.bytes_peak.fetch_max(live, Relaxed);
    }
    pub(crate) fn buffer_released(&self, bytes: u64) {
        self.bytes_live.fetch_sub(bytes, Relaxed);
    }
    /// Transient host bytes taken (also live bytes; see `reservation::Reservation`).
    pub(crate) fn transient_acquired(&self, bytes: u64) {
        let t = self.transient_bytes.fetch_add(bytes, Relaxed) + bytes;
        self.transient_peak.fetch_max(t, Relaxed);
        self.buffer_acquired(bytes);
    }
    pub(crate) fn transient_released(&self, bytes: u64) {
        self.transient_bytes.fetch_sub(bytes, Relaxed);
        self.buffer_released(bytes);
    }
    pub(crate) fn add_host_time(&self, phase: HostPhase, d: Duration) {
        let counter = match phase {
            HostPhase::Record => &self.host_record_ns,
            HostPhase::Submit => &self.host_submit_ns,
            HostPhase::Wait => &self.host_wait_ns,
            HostPhase::Encode => &self.host_encode_ns,
        };
        counter.fetch_add(d.as_nanos() as u64, Relaxed);
    }
    pub(crate) fn bind_group_created(&self) {
        self.bind_groups_created.fetch_add(1, Relaxed);
    }
    pub(crate) fn plan_captured(&self) {
        self.plans_captured.fetch_add(1, Relaxed);
    }
    pub(crate) fn batch_replayed(&self) {
        self.batches_replayed.fetch_add(1, Relaxed);
    }
    pub(crate) fn launch_replayed(&self) {
        self.launches_replayed.fetch_add(1, Relaxed);
    }
    pub(crate) fn replay_fell_back(&self) {
        self.replay_fallbacks.fetch_add(1, Relaxed);
    }
    pub(crate) fn graph_replayed(&self, dispatches: u64) {
        self.graphs_replayed.fetch_add(1, Relaxed);
        self.dispatches.fetch_add(dispatches, Relaxed);
    }
    pub(crate) fn buffer_created(&self) {
        self.buffers_created.fetch_add(1, Relaxed);
    }
    pub(crate) fn submitted(&self) {
        self.submissions.fetch_add(1, Relaxed);
    }
    pub(crate) fn dispatched(&self) {
        self.dispatches.fetch_add(1, Relaxed);
    }
    pub(crate) fn read_back(&self) {
        self.readbacks.fetch_add(1, Relaxed);
    }
    /// One texture operand bound: `copied` bytes copied into it, or `None`
    /// when it already held them.
    pub(crate) fn texture_staged(&self, copied: Option<u64>) {
        match copied {
            Some(bytes) => {
                self.texture_copies.fetch_add(1, Relaxed);
                self.texture_bytes.fetch_add(bytes, Relaxed);
            }
            None => {
                self.texture_reuses.fetch_add(1, Relaxed);
            }
        }
    }
}

impl std::ops::Sub for StatsSnapshot {
    type Output = StatsSnapshot;
    /// Difference of two snapshots (`after - before`); `bytes_*` and
    /// `transient_*` are taken from `self`.
    fn sub(self, before: StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            bytes_live: self.bytes_live,
            bytes_peak: self.bytes_peak,
            buffers_created: self.buffers_created - before.buffers_created,
            submissions: self.submissions - before.submissions,
            dispatches: self.dispatches - before.dispatches,
            readbacks: self.readbacks - before.readbacks,
            texture_copies: self.texture_copies - before.texture_copies,
            texture_bytes: self.texture_bytes - before.texture_bytes,
            texture_reuses: self.texture_reuses - before.texture_reuses,
            transient_bytes: self.transient_bytes,
            transient_peak: self.transient_peak,
            host_record_ns: self.host_record_ns - before.host_record_ns,
            host_submit_ns: self.host_submit_ns - before.host_submit_ns,
            host_wait_ns: self.host_wait_ns - before.host_wait_ns,
            host_encode_ns: self.host_encode_ns - before.host_encode_ns,
            bind_groups_created: self.bind_groups_created - before.bind_groups_created,
            plans_captured: self.plans_captured - before.plans_captured,
            batches_replayed: self.batches_replayed - before.batches_replayed,
            launches_replayed: self.launches_replayed - before.launches_replayed,
            replay_fallbacks: self.replay_fallbacks - before.replay_fallbacks,
            graphs_replayed: self.graphs_replayed - before.graphs_replayed,
        }
    }
}

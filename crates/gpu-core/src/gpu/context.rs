//! An open wgpu device: queue, adapter facts, pool, pipeline cache and the
//! batch of recorded work.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::batch::Batch;
use super::pipelines::PipelineCache;
use super::pool::Pool;
use super::window::Window;
use crate::profiler::Profiler;
use crate::{Error, Result, Stats};

/// Everything the GPU backend needs to record and run kernels.
pub(crate) struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub pool: Pool,
    pub pipelines: Arc<PipelineCache>,
    /// Compiling the pipeline manifest's kernels in the background, if
    /// [`warmup::start`](super::warmup::start) was called (stopped on drop).
    pub warmup: Mutex<Option<super::warmup::Warmup>>,
    /// The threads readback futures started to wait in a device poll
    /// (`readback.rs`), joined on drop: each holds a clone of the device, and
    /// the last clone dropped on a thread of its own while the main thread
    /// is in `exit` unloads the driver under the exit handlers.
    pub waiters: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub batch: Mutex<Batch>,
    /// Where finished batches are submitted (a thread of its own by default).
    pub submitter: super::submitter::Submitter,
    /// The first error wgpu reported outside a call we could return it from.
    pub error: Arc<Mutex<Option<String>>>,
    /// The owning device's counters.
    pub stats: Arc<Stats>,
    /// The owning device's profiler.
    pub profiler: Arc<Profiler>,
    /// Whether elementwise launches are fused (`WGRAD_FUSION=0` turns it off;
    /// `Device::set_fusion` changes it).
    pub fusion: AtomicBool,
    /// `WGRAD_FUSION_DEBUG`: 1 prints each fused chain, 2 also its WGSL.
    pub fusion_debug: u8,
    /// How attention is computed, an `AttentionPath` code (`WGRAD_ATTENTION`;
    /// `Device::set_attention_path` changes it).
    pub attention: AtomicU8,
    /// Invocations per key row of attention's dk/dv pass that
    /// `Device::set_attention_split` set; 0: `WGRAD_ATTENTION_SPLIT` decides.
    pub attention_split: AtomicU8,
    /// Whether the load-bound kernels (the families' `_tex` variants) read f32
    /// inputs through textures: on for CPU adapters (`WGRAD_TEXTURE_OPERANDS=0`
    /// turns it off; `Device::set_texture_operands` changes it; see
    /// `texture_operands.rs`).
    pub texture_operands: AtomicBool,
    /// The index-error record of `index_check.rs` (16 bytes, zeroed by wgpu
    /// at creation and by each readback that copies it).
    pub index_errors: wgpu::Buffer,
    /// Whether a launch bound `index_errors` since the last readback read it.
    pub index_checks_pending: AtomicBool,
    /// The largest storage binding wgrad lets one launch use, in bytes: the
    /// adapter's `max_storage_buffer_binding_size`, or less when
    /// `WGRAD_MAX_BINDING_BYTES` or `Device::set_max_binding_bytes` lowers
    /// it (so tests can make ops split their work on small tensors).
    pub max_binding: AtomicU64,
    /// The matrix units the f16 products run on (`matmul_coop.wgsl`), if the
    /// adapter offers a configuration the kernel uses and
    /// `WGRAD_MATMUL_KERNEL` does not forbid them.
    pub matrix_units: Option<super::matrix_units::MatrixUnits>,
    /// `WGRAD_MATMUL_KERNEL=coop`: f16 products must run on matrix units.
    pub matrix_units_forced: bool,
    /// `WGRAD_MATMUL_KERNEL=tiled`: products on CPU adapters take the tiled
    /// (GPU) kernel instead of the subgroup one (to measure what the
    /// subgroup family buys).
    pub tiled_matmul_forced: bool,
}

/// The binding limit to use on an adapter whose own is `adapter`: a lower
/// `requested` one rounded down to 16 bytes (at least 16), else the
/// adapter's.
pub(crate) fn binding_limit(adapter: u64, requested: Option<u64>) -> u64 {
    requested.map_or(adapter, |r| (r / 16 * 16).clamp(16, adapter))
}

/// `WGRAD_MAX_BINDING_BYTES`, if set to a number of bytes.
fn binding_limit_from_env() -> Option<u64> {
    std::env::var("WGRAD_MAX_BINDING_BYTES").ok().and_then(|v| v.trim().parse().ok())
}

/// Optional features we use when the adapter offers them; none is required.
fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY
}

impl Drop for GpuContext {
    fn drop(&mut self) {
        // The warm-up threads compile with this device: let them stop first.
        if let Some(w) = self.warmup.lock().unwrap().take() {
            w.finish();
        }
        for waiter in self.waiters.get_mut().unwrap().drain(..) {
            let _ = waiter.join();
        }
        self.submitter.stop();
    }
}

impl GpuContext {
    /// Opens a device on `adapter`.
    pub async fn open_async(adapter: &wgpu::Adapter, stats: Arc<Stats>, profiler: Arc<Profiler>) -> Result<Self> {
        let info = adapter.get_info();
        // The adapter's own limits, not wgpu's conservative defaults: real
        // models need buffers above the default 128/256 MiB.
        let limits = adapter.limits();
        let kernel = super::matrix_units::kernel_from_env();
        let wish = super::matrix_units::Wish::parse(kernel.as_deref());
        let matrix_units = super::matrix_units::for_adapter(adapter, wish);
        let mut features = adapter.features() & wanted_features();
        let experimental = if matrix_units.is_some() {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            // SAFETY: the one experimental feature requested is cooperative
            // matrices, used only by `matmul_coop.wgsl`, which naga validates
            // (shaders.rs tests) and whose results the parity tests check
            // against the CPU twin on every adapter that offers it.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgrad"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: experimental,
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice { adapter: info.name.clone(), reason: e.to_string() })?;
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap();
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let index_errors = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad index errors"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // Texture operands pay on CPU adapters only (see texture_operands.rs).
        let texture_operands = info.device_type == wgpu::DeviceType::Cpu
            && super::texture_operands::supported(features)
            && crate::env::switch("WGRAD_TEXTURE_OPERANDS", true);
        let pipelines = Arc::new(PipelineCache::from_env());
        let submitter = super::submitter::Submitter::from_env(&device, &queue, &stats);
        Ok(GpuContext {
            device,
            queue,
            info,
            features,
            pool: Pool::default(),
            pipelines,
            warmup: Mutex::new(None),
            waiters: Mutex::new(Vec::new()),
            batch: Mutex::new(Batch::default()),
            submitter,
            error,
            stats,
            profiler,
            fusion: AtomicBool::new(crate::env::switch("WGRAD_FUSION", true)),
            fusion_debug: std::env::var("WGRAD_FUSION_DEBUG").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0),
            attention: AtomicU8::new(crate::kernels::attention::AttentionPath::from_env().code()),
            attention_split: AtomicU8::new(0),
            texture_operands: AtomicBool::new(texture_operands),
            index_errors,
            index_checks_pending: AtomicBool::new(false),
            max_binding: AtomicU64::new(binding_limit(
                limits.max_storage_buffer_binding_size,
                binding_limit_from_env(),
            )),
            limits,
            matrix_units,
            matrix_units_forced: wish == super::matrix_units::Wish::Forced,
            tiled_matmul_forced: kernel.as_deref() == Some("tiled"),
        })
    }

    /// The index-error record, for a launch that validates indices: the next
    /// readback will read it.
    pub fn index_errors_for_launch(&self) -> &wgpu::Buffer {
        self.index_checks_pending.store(true, Ordering::Relaxed);
        &self.index_errors
    }

    /// A CPU adapter (lavapipe's llvmpipe, WARP): the kernels that have a
    /// variant for CPU drivers (the subgroup matmul, thread-per-row and
    /// texture-operand kernels, attention's mapping, im2col by rows) pick it here.
    pub fn is_cpu_adapter(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether the fuser merges elementwise launches now.
    pub fn fusion_enabled(&self) -> bool {
        self.fusion.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Returns the pooled free buffers to the driver (and forgets the
    /// cached bind groups and replay plans, which keep buffers alive);
    /// returns the bytes freed.
    pub fn release_pooled(&self) -> u64 {
        let mut batch = self.batch.lock().unwrap();
        batch.bind_groups.clear();
        batch.replay.clear();
        drop(batch);
        self.pool.clear()
    }

    /// Returns (and clears) an error wgpu reported asynchronously.
    pub fn take_error(&self) -> Result<()> {
        match self.error.lock().unwrap().take() {
            Some(msg) if msg.to_lowercase().contains("out of memory") => {
                Err(Error::OutOfMemory { device: self.info.name.clone(), requested: 0, detail: msg })
            }
            Some(msg) => Err(Error::Gpu(msg)),
            None => Ok(()),
        }
    }

    /// The largest storage binding one launch may use, in bytes (see
    /// [`GpuContext::max_binding`]).
    pub fn binding_limit(&self) -> u64 {
        self.max_binding.load(Ordering::Relaxed)
    }

    /// Where a bound window may start: the adapter's
    /// `min_storage_buffer_offset_alignment`, at least 16 bytes (whole vec4s).
    pub fn window_align(&self) -> u64 {
        (self.limits.min_storage_buffer_offset_alignment as u64).max(16)
    }

    /// Ranges of a buffer of `n` f32 elements for kernels in which element
    /// `i` reads and writes index `i` only (constant fills, optimizer
    /// updates): `(start, len, window)` with `window` the bytes to bind,
    /// each within the binding limit; one range binding nothing special
    /// (`None`) when `bytes` fits whole.
    pub(crate) fn element_ranges(
        &self,
        n: usize,
        bytes: u64,
    ) -> smallvec::SmallVec<[(usize, usize, Option<Window>); 1]> {
        let limit = self.binding_limit();
        if bytes <= limit {
            return smallvec::smallvec![(0, n, None)];
        }
        let align = self.window_align();
        let step = (((limit - 16) / align * align / 4) as usize).max(1);
        (0..n)
            .step_by(step)
            .map(|start| {
                let len = step.min(n - start);
                (start, len, Some(Window { offset: start as u64 * 4, size: (len as u64 * 4).next_multiple_of(16) }))
            })
            .collect()
    }

    /// Checks a buffer size against the adapter's `max_buffer_size` before
    /// allocating it. Buffers above the binding limit are allowed: the ops
    /// that can split their work bind sub-ranges of them, and a launch that
    /// would bind one whole fails with [`Error::LimitExceeded`] naming its
    /// kernel (see `batch.rs`).
    pub fn check_size(&self, what: &str, bytes: u64) -> Result<()> {
        if bytes > self.limits.max_buffer_size {
            return Err(Error::LimitExceeded {
                what: what.into(),
                needed: bytes,
                limit: "max_buffer_size",
                allowed: self.limits.max_buffer_size,
            });
        }
        Ok(())
    }

    /// The size of the device buffer holding `bytes` logical bytes: the
    /// pool's size class, but never past the binding limit for a buffer
    /// that fits under it (rounding up must not make a bindable tensor
    /// unbindable).
    pub fn backing_size(&self, bytes: u64) -> u64 {
        let class = super::pool::size_class(bytes);
        let limit = self.binding_limit();
        if bytes <= limit && class > limit {
            bytes.max(16).next_multiple_of(16)
        } else {
            class
        }
    }
}

impl GpuContext {
    /// Whether a launch reads its f32 inputs of `bytes` each through
    /// textures (`texture_operands.rs`): the device has the path on (CPU
    /// adapters, unless turned off) and every input fits a texture.
    /// Never in the browser: which inputs a kernel reads as textures is
    /// reflected by naga, and there kernels reach WebGPU as WGSL text.
    pub(crate) fn wants_texture_operands(&self, bytes: impl IntoIterator<Item = u64>) -> bool {
        !cfg!(target_arch = "wasm32")
            && self.texture_operands.load(std::sync::atomic::Ordering::Relaxed)
            && bytes.into_iter().all(|b| super::texture_operands::fits(b, &self.limits))
    }

    /// `shader`, or its variant reading inputs through textures
    /// ([`shaders::texture_variant`](crate::shaders::texture_variant)) when
    /// there is one and [`wants_texture_operands`](Self::wants_texture_operands)
    /// for inputs of `bytes` each.
    pub(crate) fn texture_variant(&self, shader: &'static str, bytes: impl IntoIterator<Item = u64>) -> &'static str {
        // The device's flag first: GPUs (off) skip the table lookup per op.
        self.wants_texture_operands(bytes).then(|| crate::shaders::texture_variant(shader)).flatten().unwrap_or(shader)
    }
}

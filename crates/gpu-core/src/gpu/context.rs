//! An open wgpu device: queue, adapter facts, pool, pipeline cache and the
//! batch of recorded work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::batch::Batch;
use super::pipelines::PipelineCache;
use super::pool::Pool;
use crate::profile::Profiler;
use crate::{Error, Result, Stats};

/// Everything the GPU backend needs to record and run kernels.
pub(crate) struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub pool: Pool,
    pub pipelines: PipelineCache,
    pub batch: Mutex<Batch>,
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
    /// The index-error record of `index_check.rs` (16 bytes, zeroed by wgpu
    /// at creation and by each readback that copies it).
    pub index_errors: wgpu::Buffer,
    /// Whether a launch bound `index_errors` since the last readback read it.
    pub index_checks_pending: AtomicBool,
}

/// Optional features we use when the adapter offers them; none is required.
fn wanted_features() -> wgpu::Features {
    wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY
}

impl GpuContext {
    pub fn open(adapter: &wgpu::Adapter, stats: Arc<Stats>, profiler: Arc<Profiler>) -> Result<Self> {
        let info = adapter.get_info();
        // The adapter's own limits, not wgpu's conservative defaults: real
        // models need buffers above the default 128/256 MiB.
        let limits = adapter.limits();
        let features = adapter.features() & wanted_features();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgrad"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
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
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            features,
            pool: Pool::default(),
            pipelines: PipelineCache::default(),
            batch: Mutex::new(Batch::default()),
            error,
            stats,
            profiler,
            fusion: AtomicBool::new(std::env::var("WGRAD_FUSION").map_or(true, |v| v.trim() != "0")),
            fusion_debug: std::env::var("WGRAD_FUSION_DEBUG").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0),
            index_errors,
            index_checks_pending: AtomicBool::new(false),
        })
    }

    /// The index-error record, for a launch that validates indices: the next
    /// readback will read it.
    pub fn index_errors_for_launch(&self) -> &wgpu::Buffer {
        self.index_checks_pending.store(true, Ordering::Relaxed);
        &self.index_errors
    }

    /// Whether the fuser merges elementwise launches now.
    pub fn fusion_enabled(&self) -> bool {
        self.fusion.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
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

    /// Checks a buffer size against the adapter's limits before allocating it.
    pub fn check_size(&self, what: &str, bytes: u64) -> Result<()> {
        let limit_bind = self.limits.max_storage_buffer_binding_size;
        if bytes > self.limits.max_buffer_size {
            return Err(Error::LimitExceeded {
                what: what.into(),
                needed: bytes,
                limit: "max_buffer_size",
                allowed: self.limits.max_buffer_size,
            });
        }
        if bytes > limit_bind {
            return Err(Error::LimitExceeded {
                what: what.into(),
                needed: bytes,
                limit: "max_storage_buffer_binding_size",
                allowed: limit_bind,
            });
        }
        Ok(())
    }
}

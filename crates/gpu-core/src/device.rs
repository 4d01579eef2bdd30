//! [`Device`]: where buffers live and kernels run, a wgpu adapter or the CPU backend.

use std::sync::{Arc, OnceLock};

use crate::gpu::GpuContext;
use crate::profiler::{Profile, Profiler};
use crate::select::{pick_adapter, DeviceSpec};
use crate::{Result, Stats, StatsSnapshot};

/// A compute device. Cheap to clone (a shared handle).
#[derive(Clone)]
pub struct Device {
    pub(crate) inner: Arc<DeviceInner>,
}

// Device and Buffer assert Send + Sync instead of letting every downstream
// crate derive them: the derivation walks wgpu-core's internals deep enough
// to overflow rustc's recursion limit in crates whose modules nest tensors a
// few levels (a Vec<Vec<..>> of layers). The assertions below prove the
// inner types are Send + Sync here, once, so the impls add no new claim.
// (`Buffer` does the same in buffer.rs.)
const _: () = {
    fn send_sync<T: Send + Sync>() {}
    let _ = send_sync::<DeviceInner>;
};
// SAFETY: `DeviceInner` is Send + Sync (asserted above); `Device` only wraps it in an `Arc`.
unsafe impl Send for Device {}
// SAFETY: as above.
unsafe impl Sync for Device {}

pub(crate) struct DeviceInner {
    pub backend: Backend,
    /// Why this device was chosen, for logs ([`Device::reason`]).
    pub reason: String,
    /// Which CPU kernels run on the CPU backend (unused on a GPU).
    pub cpu_kernels: CpuKernels,
    /// Freed host buffers of the CPU backend (unused on a GPU).
    pub host_pool: crate::cpu::pool::HostPool,
    pub stats: Arc<Stats>,
    pub profiler: Arc<Profiler>,
    /// What allocations may hold in all (see `memory.rs`).
    pub budget: crate::memory::Budget,
}

pub(crate) enum Backend {
    Gpu(Box<GpuContext>),
    Cpu,
}

/// The two roles of the CPU kernels (see `crate::cpu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CpuKernels {
    /// The fast paths: threaded, vectorizable loops; what the CPU backend runs.
    Fast,
    /// The reference twins: the definitions, loop by loop, that the GPU
    /// kernels and the fast paths are tested against.
    Reference,
}

/// Facts about a device, for logs and the `devices` example.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Adapter name (`cpu` for the CPU backend).
    pub name: String,
    /// `Vulkan`, `Metal`, `Dx12` or `cpu`.
    pub backend: String,
    /// Discrete, integrated, software (`Cpu`) ...
    pub device_type: String,
    /// The largest buffer the device allows, in bytes.
    pub max_buffer_size: u64,
    /// The largest storage binding a kernel may use, in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Optional features enabled on the device (SHADER_F16, SUBGROUP,
    /// TIMESTAMP_QUERY); on the CPU backend, the vector level its hot loops
    /// run at (`CPU_SIMD_AVX512`, `CPU_SIMD_AVX2`, `CPU_SIMD_BASELINE`).
    pub features: Vec<String>,
    /// Whether f16 products run on matrix units (tensor cores) through
    /// cooperative matrices: `Some` where they do, `None` on adapters that
    /// do not offer them, on software adapters unless
    /// `WGRAD_MATMUL_KERNEL=coop` asks, under `WGRAD_MATMUL_KERNEL=tiled`,
    /// and on the CPU backend.
    pub matrix_units: Option<MatrixUnitsInfo>,
}

/// The matrix units a device's f16 products run on ([`DeviceInfo::matrix_units`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixUnitsInfo {
    /// The fragments' edge: 16 (16 x 16 x 16 products) or 8.
    pub fragment: u32,
    /// Lanes per subgroup, the unit a fragment is spread over.
    pub subgroup_size: u32,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.name())
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Device {
    /// Opens the device `WGRAD_DEVICE` asks for (see [`Device::from_spec`]).
    /// On a GPU it also keeps the pipeline manifest: the kernels an earlier
    /// run compiled start compiling now, in the background, and the new
    /// ones this run compiles are added (`WGRAD_PIPELINE_CACHE=off` turns
    /// it off; see docs/history/performance-issue-11.md, "Cold first steps").
    pub fn from_env() -> Result<Device> {
        let dev = Self::from_spec(&DeviceSpec::from_env()?)?;
        if let Some(g) = dev.gpu_ctx() {
            *g.warmup.lock().unwrap() = crate::gpu::warmup::start(&g.info, &g.pipelines, &g.device);
        }
        Ok(dev)
    }

    /// Opens a device: `Auto` prefers a hardware GPU, else the fast CPU
    /// backend (a software adapter such as lavapipe only by name or with
    /// `Gpu`); `Gpu` and `Named` fail instead of falling back.
    /// [`reason`](Self::reason) says why this device was chosen.
    pub fn from_spec(spec: &DeviceSpec) -> Result<Device> {
        crate::memory::from_env()?; // a bad WGRAD_MEMORY_BUDGET is an error here, not a silent "no budget"
        let (adapter, reason) = pick_adapter(spec)?;
        match adapter {
            Some(adapter) => Self::open(&adapter, reason),
            None if *spec == DeviceSpec::CpuReference => Ok(Self::cpu_with(CpuKernels::Reference, reason)),
            None => Ok(Self::cpu_with(CpuKernels::Fast, reason)),
        }
    }

    /// Opens a device on a given wgpu adapter.
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Device> {
        Self::open(adapter, "opened on a given adapter".into())
    }

    fn open(adapter: &wgpu::Adapter, reason: String) -> Result<Device> {
        crate::web::refuse_blocking("opening a GPU device synchronously", "Device::gpu_async().await")?;
        pollster::block_on(Self::open_async(adapter, reason))
    }

    async fn open_async(adapter: &wgpu::Adapter, reason: String) -> Result<Device> {
        let stats = Arc::new(Stats::default());
        let profiler = Arc::new(Profiler::default());
        let ctx = GpuContext::open_async(adapter, stats.clone(), profiler.clone()).await?;
        let backend = Backend::Gpu(Box::new(ctx));
        let host_pool = Default::default();
        let budget = crate::memory::Budget::initial(false)?;
        let inner = DeviceInner { backend, reason, cpu_kernels: CpuKernels::Fast, host_pool, stats, profiler, budget };
        Ok(Device { inner: Arc::new(inner) })
    }

    /// Why this device was chosen (e.g. `auto: no hardware GPU ...`), for
    /// the line examples print at start.
    pub fn reason(&self) -> &str {
        &self.inner.reason
    }

    /// The best GPU adapter; an error when there is none. In the browser,
    /// where nothing may wait, use [`gpu_async`](Self::gpu_async).
    pub fn gpu() -> Result<Device> {
        Self::from_spec(&DeviceSpec::Gpu)
    }

    /// [`gpu`](Self::gpu) without blocking: in the browser, the page's
    /// WebGPU adapter (awaiting `navigator.gpu.requestAdapter()` and
    /// `requestDevice()`); natively the same device as `gpu()`.
    pub async fn gpu_async() -> Result<Device> {
        #[cfg(target_arch = "wasm32")]
        let (adapter, reason) = (crate::select::browser_adapter().await?, "the browser's WebGPU adapter".to_string());
        #[cfg(not(target_arch = "wasm32"))]
        let (adapter, reason) = match crate::select::pick_adapter(&DeviceSpec::Gpu)? {
            (Some(a), reason) => (a, reason),
            (None, _) => unreachable!("a Gpu spec picks an adapter or fails"),
        };
        crate::memory::from_env()?;
        Self::open_async(&adapter, reason).await
    }

    /// A fresh CPU-backend device running the fast kernels.
    pub fn cpu() -> Device {
        Self::cpu_with(CpuKernels::Fast, "the CPU backend, opened directly".into())
    }

    /// A fresh CPU-backend device running the *reference* twins: each
    /// kernel's definition, single-threaded and loop by loop (f64
    /// accumulation where the kernel has it). It is the oracle the GPU
    /// kernels and the fast CPU paths are tested against, not a way to train.
    pub fn cpu_reference() -> Device {
        Self::cpu_with(CpuKernels::Reference, "the reference CPU twins (a test oracle)".into())
    }

    fn cpu_with(cpu_kernels: CpuKernels, reason: String) -> Device {
        crate::cpu::threads::configure();
        Device {
            inner: Arc::new(DeviceInner {
                backend: Backend::Cpu,
                reason,
                cpu_kernels,
                host_pool: Default::default(),
                stats: Arc::new(Stats::default()),
                profiler: Arc::new(Profiler::default()),
                // A bad WGRAD_MEMORY_BUDGET cannot fail this constructor; it
                // means no budget here, and `Device::from_env` reports it.
                budget: crate::memory::Budget::initial(true).unwrap_or_else(|_| crate::memory::Budget::none()),
            }),
        }
    }

    /// True for a CPU-backend device that runs the reference twins
    /// ([`Device::cpu_reference`]).
    pub fn is_cpu_reference(&self) -> bool {
        !self.is_gpu() && self.inner.cpu_kernels == CpuKernels::Reference
    }

    /// True when this is a CPU backend running the fast paths (`cpu/`);
    /// false on a GPU and on the reference device.
    pub(crate) fn runs_fast_cpu(&self) -> bool {
        !self.is_gpu() && self.inner.cpu_kernels == CpuKernels::Fast
    }

    /// The process-wide device chosen by `WGRAD_DEVICE`, opened on first use.
    ///
    /// # Panics
    /// When `WGRAD_DEVICE` demands a device that cannot be opened.
    pub fn shared() -> Device {
        static SHARED: OnceLock<Device> = OnceLock::new();
        SHARED
            .get_or_init(|| Device::from_env().unwrap_or_else(|e| panic!("wgrad: cannot open the device: {e}")))
            .clone()
    }

    /// True for a wgpu adapter, false for the CPU backend.
    pub fn is_gpu(&self) -> bool {
        matches!(self.inner.backend, Backend::Gpu(_))
    }

    /// Adapter name, or `cpu`.
    pub fn name(&self) -> String {
        match &self.inner.backend {
            Backend::Gpu(g) => g.info.name.clone(),
            Backend::Cpu if self.inner.cpu_kernels == CpuKernels::Reference => "cpu-reference".into(),
            Backend::Cpu => "cpu".into(),
        }
    }

    /// Facts about this device.
    pub fn info(&self) -> DeviceInfo {
        match &self.inner.backend {
            Backend::Gpu(g) => DeviceInfo {
                name: g.info.name.clone(),
                backend: format!("{:?}", g.info.backend),
                device_type: format!("{:?}", g.info.device_type),
                max_buffer_size: g.limits.max_buffer_size,
                max_storage_buffer_binding_size: g.limits.max_storage_buffer_binding_size,
                features: g.features.iter_names().map(|(n, _)| n.to_string()).collect(),
                matrix_units: g
                    .matrix_units
                    .map(|u| MatrixUnitsInfo { fragment: u.fragment, subgroup_size: u.subgroup_size }),
            },
            Backend::Cpu => DeviceInfo {
                name: "cpu".into(),
                backend: "cpu".into(),
                device_type: "Cpu".into(),
                max_buffer_size: isize::MAX as u64,
                max_storage_buffer_binding_size: isize::MAX as u64,
                features: vec![format!("CPU_SIMD_{}", crate::cpu::simd::simd_level().name().to_uppercase())],
                matrix_units: None,
            },
        }
    }

    /// The largest buffer one kernel binding may use, in bytes (cheap: for
    /// hot paths that must stay under it; [`info`](Self::info) has the rest).
    /// The adapter's `max_storage_buffer_binding_size`, unless
    /// `WGRAD_MAX_BINDING_BYTES` or [`set_max_binding_bytes`](Self::set_max_binding_bytes)
    /// lowered it.
    pub fn max_binding_bytes(&self) -> u64 {
        match &self.inner.backend {
            Backend::Gpu(g) => g.binding_limit(),
            Backend::Cpu => isize::MAX as u64,
        }
    }

    /// Lowers the binding limit of a GPU device to `bytes` (rounded down to
    /// 16 bytes; `None`: the adapter's own), as `WGRAD_MAX_BINDING_BYTES`
    /// does when the device opens. Ops then split work that would bind more
    /// (see docs/reliability.md), so tests can exercise the splitting on
    /// small tensors. Pending work is submitted first and the buffer pool
    /// emptied, so every buffer from now on is sized for the new limit.
    /// The CPU backend has no binding limit and ignores this.
    pub fn set_max_binding_bytes(&self, bytes: Option<u64>) -> Result<()> {
        if let Backend::Gpu(g) = &self.inner.backend {
            g.flush()?;
            g.release_pooled();
            let adapter = g.limits.max_storage_buffer_binding_size;
            let limit = crate::gpu::context::binding_limit(adapter, bytes);
            g.max_binding.store(limit, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// The counters of this device.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// The memory budget allocations are checked against, in bytes (`None`:
    /// only the device's limits). See [`set_memory_budget`](Self::set_memory_budget).
    pub fn memory_budget(&self) -> Option<u64> {
        self.inner.budget.get()
    }

    /// Sets the memory budget: an allocation that would bring the bytes
    /// held by live buffers (in their size classes; on the CPU backend also
    /// the host copies its kernels and readbacks make, see
    /// [`StatsSnapshot::transient_bytes`]) past it fails with
    /// [`Error::OutOfMemory`](crate::Error::OutOfMemory)
    /// before anything is written. `None` removes it. The default comes
    /// from `WGRAD_MEMORY_BUDGET`, else (CPU backend) the machine's
    /// available memory when the device opened.
    pub fn set_memory_budget(&self, bytes: Option<u64>) {
        self.inner.budget.set(bytes)
    }

    /// Restarts `bytes_peak` from the current `bytes_live`.
    pub fn reset_peak(&self) {
        self.inner.stats.reset_peak()
    }

    /// Turns the elementwise fuser on or off for launches recorded from now
    /// on (it starts on unless `WGRAD_FUSION=0`; the CPU backend never fuses).
    /// Work recorded before is submitted first, under the old setting.
    pub fn set_fusion(&self, on: bool) -> Result<()> {
        if let Backend::Gpu(g) = &self.inner.backend {
            g.flush()?;
            g.fusion.store(on, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Turns replay on or off for batches recorded from now on (it starts on
    /// unless `WGRAD_REPLAY=0`): a batch that repeats an earlier one (a
    /// training step) reuses that batch's pipelines, bind groups and fuser
    /// decisions instead of making them again, with bit-identical results
    /// (see `gpu/replay.rs`, docs/architecture.md "Replay"). Work recorded
    /// before is submitted first. The CPU backend records nothing and
    /// ignores this.
    pub fn set_replay(&self, on: bool) -> Result<()> {
        if let Backend::Gpu(g) = &self.inner.backend {
            g.flush()?;
            g.batch.lock().unwrap().replay.on = on;
        }
        Ok(())
    }

    /// Submits batches on a thread of the device's own (the default, unless
    /// `WGRAD_SUBMIT_THREAD=0` when it opened) or on the calling thread,
    /// from now on: on the thread, wgpu's validation and encoding of a
    /// batch run while the caller records the next launches (see
    /// `gpu/submitter.rs`, docs/architecture.md "Submitting"). An error when
    /// turned on for a device opened without the thread; the CPU backend
    /// submits nothing and ignores this.
    pub fn set_submit_thread(&self, on: bool) -> Result<()> {
        match &self.inner.backend {
            Backend::Gpu(g) => g.submitter.set_threaded(on),
            Backend::Cpu => Ok(()),
        }
    }

    /// Whether batches are submitted on the device's submit thread (false
    /// on the CPU backend).
    pub fn submit_thread(&self) -> bool {
        matches!(&self.inner.backend, Backend::Gpu(g) if g.submitter.is_threaded())
    }

    /// Whether repeated batches are replayed (false on the CPU backend).
    pub fn replay(&self) -> bool {
        matches!(&self.inner.backend, Backend::Gpu(g) if g.batch.lock().unwrap().replay.on)
    }

    /// Why the last batch that fell back from a replay plan did (the
    /// position and the launch that differed), if one has.
    pub fn replay_fallback(&self) -> Option<String> {
        match &self.inner.backend {
            Backend::Gpu(g) => g.batch.lock().unwrap().replay.last_fallback.clone(),
            Backend::Cpu => None,
        }
    }

    /// Whether elementwise launches are fused (false on the CPU backend).
    pub fn fusion(&self) -> bool {
        matches!(&self.inner.backend, Backend::Gpu(g) if g.fusion_enabled())
    }

    /// Chooses whether the load-bound kernels (the subgroup matmul, the
    /// kernel family of CPU adapters such as lavapipe; batch norm, softmax,
    /// row norm, reductions and unfused elementwise ops) read f32 inputs
    /// through textures from now on. It starts on for CPU adapters unless
    /// `WGRAD_TEXTURE_OPERANDS=0`, off on GPUs (where the copies into the
    /// textures are pure overhead). The results are the same either way; no
    /// effect on the CPU backend, nor on an adapter that cannot bind
    /// r32float storage textures read-only (WebGPU guarantees it).
    pub fn set_texture_operands(&self, on: bool) {
        if let Backend::Gpu(g) = &self.inner.backend {
            let on = on && crate::gpu::texture_operands::supported(g.features);
            g.texture_operands.store(on, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether the load-bound kernels read f32 inputs through textures (see
    /// [`set_texture_operands`](Self::set_texture_operands)); false on the
    /// CPU backend.
    pub fn texture_operands(&self) -> bool {
        matches!(&self.inner.backend, Backend::Gpu(g) if g.texture_operands.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Encodes the elementwise launches the fuser holds back (see
    /// docs/architecture.md, "The fuser"), without submitting: they release
    /// the buffers they read. Chains recorded before and after do not fuse.
    pub fn settle(&self) -> Result<()> {
        if let Backend::Gpu(g) = &self.inner.backend {
            g.settle_now()?;
        }
        Ok(())
    }

    /// Submits all recorded work now (nothing to do on the CPU backend).
    pub fn flush(&self) -> Result<()> {
        if let Backend::Gpu(g) = &self.inner.backend {
            g.flush()?;
        }
        Ok(())
    }

    /// Submits recorded work and waits until the device has finished it.
    pub fn synchronize(&self) -> Result<()> {
        if let Backend::Gpu(g) = &self.inner.backend {
            g.flush()?;
            let _host = crate::gpu::host_clock::enter(&g.stats, crate::stats::HostPhase::Wait);
            g.submitter.drain();
            crate::web::refuse_blocking("Device::synchronize", "an awaited readback (to_vec_async().await)")?;
            g.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| crate::Error::Gpu(e.to_string()))?;
            g.take_error()?;
        }
        Ok(())
    }

    /// Runs `f` under the step profiler and returns its result with what it
    /// launched (see [`crate::profile`]). Work recorded before is submitted
    /// first and not counted; the region's work is submitted and waited for
    /// at the end, so the times are complete.
    pub fn profile<R>(&self, f: impl FnOnce() -> R) -> Result<(R, Profile)> {
        self.synchronize()?;
        // Ends the profile even if `f` panics: a profiler left on would make
        // every later launch pay for recording.
        struct Stop<'a>(&'a Profiler);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.stop_quietly();
            }
        }
        self.inner.profiler.start();
        let running = Stop(&self.inner.profiler);
        let r = f();
        let done = self.synchronize();
        std::mem::forget(running);
        let profile = self.inner.profiler.stop(self.name());
        done?;
        Ok((r, profile))
    }

    /// Returns pooled free buffers to the driver; returns how many bytes were freed.
    pub fn empty_cache(&self) -> u64 {
        match &self.inner.backend {
            Backend::Gpu(g) => g.release_pooled(),
            Backend::Cpu => self.inner.host_pool.clear(),
        }
    }

    /// Whether f16 products run on matrix units (tensor cores) here (cheap;
    /// [`info`](Self::info)`().matrix_units` has their shape).
    pub fn has_matrix_units(&self) -> bool {
        matches!(&self.inner.backend, Backend::Gpu(g) if g.matrix_units.is_some())
    }

    /// Whether the device supports `f16` arithmetic in shaders (storage casts work everywhere).
    pub fn has_shader_f16(&self) -> bool {
        matches!(&self.inner.backend, Backend::Gpu(g) if g.features.contains(wgpu::Features::SHADER_F16))
    }

    /// Kernels (pipelines) compiled on this device so far, in the
    /// foreground or by the manifest's warm-up; 0 on the CPU backend. A
    /// first step's compile work, which later steps do not repeat.
    pub fn pipelines_compiled(&self) -> u64 {
        self.gpu_ctx().map_or(0, |g| g.pipelines.compiled.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Waits until the background compilation of the pipeline manifest's
    /// kernels (see [`from_env`](Self::from_env)) is done; at once when
    /// there is none. For a program that wants its first step timed
    /// without compile work, and for tests.
    pub fn finish_pipeline_warmup(&self) {
        if let Some(w) = self.gpu_ctx().and_then(|g| g.warmup.lock().unwrap().take()) {
            w.wait();
        }
    }

    pub(crate) fn gpu_ctx(&self) -> Option<&GpuContext> {
        match &self.inner.backend {
            Backend::Gpu(g) => Some(g),
            Backend::Cpu => None,
        }
    }
}

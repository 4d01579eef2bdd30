//! Compiled pipelines, built once per (shader, entry point, override constants)
//! and cached, plus the bind-group layouts they share.
//!
//! Binding convention of every kernel: `@binding(0)` is a 256-byte uniform of
//! sizes and strides (bound with a dynamic offset into the batch's parameter
//! arena), then the read-only inputs, then the read-write outputs. A `_tex`
//! variant's entry point takes the inputs it reads as storage textures as
//! r32float textures instead (read from the kernel and filled from the
//! launch's buffers, see `texture_operands.rs`).

use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::launch::PARAMS_BYTES;
pub(crate) use super::pipeline_key::Key;
use super::specialize::has_retry_loop;
use crate::shaders;

/// `WGRAD_LOG_PIPELINES=1` prints every pipeline compilation and its time
/// to stderr (what a slow first step spends its time on).
fn log_pipelines() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| crate::env::switch("WGRAD_LOG_PIPELINES", false))
}

/// `WGRAD_LOOP_BOUNDING=1` keeps wgpu's loop bounding in every shader (see
/// [`create_module`]); for measuring what turning it off gains.
fn force_loop_bounding() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| crate::env::switch("WGRAD_LOOP_BOUNDING", false))
}

/// Compiles WGSL into a module. wgpu's default checks add a 64-bit counter
/// to every loop so that a loop without an end cannot be optimised into
/// undefined behaviour; that counter also stops drivers from unrolling our
/// fixed-trip loops, which then index the register blocks dynamically (into
/// local memory): on an NVIDIA H100 the tiled matmul ran at 3% of cuBLAS
/// with it (docs/performance.md). Our loops all end, so we turn it off for
/// every shader without a retry loop; bounds checks stay on.
pub(crate) fn create_module(device: &wgpu::Device, label: &str, src: &str) -> wgpu::ShaderModule {
    module_from(device, label, has_retry_loop(src), wgpu::ShaderSource::Wgsl(src.into()))
}

/// [`create_module`] of `source`, WGSL or IR, given whether its WGSL had a
/// retry loop (which keeps wgpu's loop bounding).
fn module_from(device: &wgpu::Device, label: &str, retry_loop: bool, source: wgpu::ShaderSource) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor { label: Some(label), source };
    if force_loop_bounding() || retry_loop {
        return device.create_shader_module(desc);
    }
    let checks = wgpu::ShaderRuntimeChecks { force_loop_bounding: false, ..wgpu::ShaderRuntimeChecks::checked() };
    // SAFETY: the only check relaxed is loop bounding, and `has_retry_loop`
    // sends every shader with a loop not bounded by a counter to the checked
    // path; bounds checks remain, so no shader reads or writes past a binding.
    unsafe { device.create_shader_module_trusted(desc, checks) }
}

/// A ready pipeline and the layout its bind groups are made from.
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: Arc<wgpu::BindGroupLayout>,
    /// The inputs bound as r32float textures, a bit mask over input indices
    /// (copied in from the launch's buffers, see `texture_operands.rs`).
    pub textures: u32,
}

impl Kernel {
    /// A bind group for this kernel ([`bind_group`] with its layout).
    pub fn bind_group<'a>(
        &self,
        device: &wgpu::Device,
        label: &str,
        params: &'a wgpu::Buffer,
        resources: impl IntoIterator<Item = wgpu::BindingResource<'a>>,
    ) -> wgpu::BindGroup {
        bind_group(device, &self.layout, label, params, resources)
    }
}

/// A bind group of `layout` following the binding convention above: a
/// [`PARAMS_BYTES`] window of `params` at binding 0, bound with a dynamic
/// offset, then `resources` (inputs, then outputs) from binding 1.
pub(crate) fn bind_group<'a>(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    label: &str,
    params: &'a wgpu::Buffer,
    resources: impl IntoIterator<Item = wgpu::BindingResource<'a>>,
) -> wgpu::BindGroup {
    let params = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
        buffer: params,
        offset: 0,
        size: wgpu::BufferSize::new(PARAMS_BYTES),
    });
    let entries: Vec<wgpu::BindGroupEntry> = std::iter::once(params)
        .chain(resources)
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry { binding: i as u32, resource })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(label), layout, entries: &entries })
}

/// A slot a pipeline is compiled into once: a second thread asking for the
/// same key while the first compiles it waits for that compilation.
type Slot = Arc<OnceLock<Arc<Kernel>>>;

/// The hash a registry kernel is filed under: its key's fields, hashed
/// in place so that a launch finds its pipeline without building its
/// [`Key`] (which allocates its constants) on the eager hot path.
fn registry_hash(
    shader: &str,
    entry: &str,
    constants: impl Iterator<Item = (&'static str, u64)>,
    inputs: usize,
    outputs: usize,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    (shader, entry, inputs, outputs).hash(&mut h);
    for c in constants {
        c.hash(&mut h);
    }
    h.finish()
}

/// Whether `key` is the registry kernel of these fields.
fn is_registry(key: &Key, shader: &str, entry: &str, constants: &[(&str, f64)], inputs: usize, outputs: usize) -> bool {
    match key {
        Key::Registry { shader: s, entry: e, constants: c, inputs: i, outputs: o } => {
            *s == shader
                && *e == entry
                && (*i, *o) == (inputs, outputs)
                && c.len() == constants.len()
                && c.iter().zip(constants).all(|(&(n, v), &(m, w))| n == m && v == w.to_bits())
        }
        Key::Generated { .. } => false,
    }
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    /// Registry kernels by [`registry_hash`]; a bucket holds more than one
    /// key only on a collision.
    kernels: Mutex<HashMap<u64, Vec<(Key, Slot)>>>,
    /// Generated kernels by source, looked up without building a [`Key`]
    /// (a fused launch should not copy its source).
    generated: Mutex<HashMap<String, Slot>>,
    layouts: Mutex<HashMap<(usize, usize, u32), Arc<wgpu::BindGroupLayout>>>,
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    /// Registry shaders parsed for specialisation (`specialize.rs`); `None`
    /// where naga rejected one (its pipelines take the WGSL path).
    parsed: Mutex<HashMap<&'static str, Option<Arc<super::specialize::Parsed>>>>,
    /// False with `WGRAD_SPECIALIZE=0` when the device was opened: wgpu
    /// then gets the WGSL and the constants.
    pub(crate) specialize: bool,
    /// Where the keys first compiled in this process are written, when the
    /// device keeps a pipeline manifest (see `warmup.rs`).
    pub(crate) manifest: Mutex<Option<std::fs::File>>,
    /// The keys the manifest lists already (not written again).
    pub(crate) listed: Mutex<rustc_hash::FxHashSet<Key>>,
    /// Pipelines compiled so far, by any thread.
    pub(crate) compiled: std::sync::atomic::AtomicU64,
}

impl PipelineCache {
    pub fn get(
        &self,
        device: &wgpu::Device,
        shader: &'static str,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        inputs: usize,
        outputs: usize,
    ) -> Arc<Kernel> {
        let hash = registry_hash(shader, entry, constants.iter().map(|&(n, v)| (n, v.to_bits())), inputs, outputs);
        let found = self.kernels.lock().unwrap().get(&hash).and_then(|bucket| {
            let (_, slot) = bucket.iter().find(|(k, _)| is_registry(k, shader, entry, constants, inputs, outputs))?;
            slot.get().cloned()
        });
        found.unwrap_or_else(|| {
            let constants = constants.iter().map(|&(n, v)| (n, v.to_bits())).collect();
            self.kernel(device, Key::Registry { shader, entry, constants, inputs, outputs })
        })
    }

    /// The pipeline of a generated kernel's `main`, by its body (the WGSL
    /// after `fused_wgsl::prelude`, which is added when it is compiled on
    /// first use).
    pub fn generated(&self, device: &wgpu::Device, source: &str, inputs: usize, outputs: usize) -> Arc<Kernel> {
        let found = self.generated.lock().unwrap().get(source).and_then(|slot| slot.get().cloned());
        found.unwrap_or_else(|| self.kernel(device, Key::Generated { source: source.to_string(), inputs, outputs }))
    }

    /// The pipeline of `key`, compiled on first use (by this thread, or
    /// waited for when another is compiling it).
    fn kernel(&self, device: &wgpu::Device, key: Key) -> Arc<Kernel> {
        self.obtain(device, key, true)
    }

    /// Compiles `key` ahead of its first use (the manifest's warm-up), unless
    /// it is compiled or being compiled already.
    pub(crate) fn warm(&self, device: &wgpu::Device, key: Key) {
        self.obtain(device, key, false);
    }

    /// The pipeline of `key`; a first compilation is listed in the manifest
    /// when `record` (the warm-up's come from it).
    fn obtain(&self, device: &wgpu::Device, key: Key, record: bool) -> Arc<Kernel> {
        let slot = self.slot(&key);
        slot.get_or_init(|| {
            let kernel = self.compile(device, &key);
            let new = record && !self.listed.lock().unwrap().contains(&key);
            if let (true, Some(file)) = (new, self.manifest.lock().unwrap().as_mut()) {
                // A cache: a line that cannot be written costs a slower
                // first step next time, nothing else.
                let _ = super::pipeline_key::append(file, &key);
            }
            kernel
        })
        .clone()
    }

    /// The slot of `key` (created empty on first use).
    fn slot(&self, key: &Key) -> Slot {
        match key {
            Key::Generated { source, .. } => {
                let mut map = self.generated.lock().unwrap();
                match map.get(source) {
                    Some(slot) => slot.clone(),
                    None => map.entry(source.clone()).or_default().clone(),
                }
            }
            Key::Registry { shader, entry, constants, inputs, outputs } => {
                let hash = registry_hash(shader, entry, constants.iter().copied(), *inputs, *outputs);
                let mut map = self.kernels.lock().unwrap();
                let bucket = map.entry(hash).or_default();
                match bucket.iter().find(|(k, _)| k == key) {
                    Some((_, slot)) => slot.clone(),
                    None => {
                        bucket.push((key.clone(), Slot::default()));
                        bucket.last().unwrap().1.clone()
                    }
                }
            }
        }
    }

    fn compile(&self, device: &wgpu::Device, key: &Key) -> Arc<Kernel> {
        self.compiled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t0 = web_time::Instant::now();
        let (inputs, outputs) = match key {
            Key::Registry { inputs, outputs, .. } | Key::Generated { inputs, outputs, .. } => (*inputs, *outputs),
        };
        let textures = match key {
            Key::Registry { shader, entry, .. } => {
                self.parsed(shader).map_or(0, |p| super::texture_operands::texture_inputs(&p.module, &p.info, entry))
            }
            Key::Generated { .. } => 0,
        };
        let layout = self.layout(device, inputs, outputs, textures);
        // `constants` name the variant (logged); `applied` are the ones
        // wgpu still has to apply (none once the module is specialised).
        let (label, module, entry, constants, applied) = match key {
            Key::Registry { shader, entry, constants, .. } => {
                let constants: Vec<(&str, f64)> = constants.iter().map(|&(n, b)| (n, f64::from_bits(b))).collect();
                match self.specialized(device, shader, entry, &constants) {
                    Some(module) => (*shader, Arc::new(module), *entry, constants, Vec::new()),
                    None => (*shader, self.module(device, shader), *entry, constants.clone(), constants),
                }
            }
            Key::Generated { source, .. } => {
                let source = format!("{}{source}", super::fused_wgsl::prelude());
                let module = Arc::new(create_module(device, "wgrad fused", &source));
                ("wgrad fused", module, "main", Vec::new(), Vec::new())
            }
        };
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &applied,
                // Kernels initialise the workgroup memory they read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if log_pipelines() {
            eprintln!("wgrad: compiled {label}:{entry} {constants:?} in {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
        }
        Arc::new(Kernel { pipeline, layout, textures })
    }

    /// The pipeline cache of a device being opened: specialising unless
    /// `WGRAD_SPECIALIZE=0`.
    pub(crate) fn from_env() -> Self {
        let specialize = crate::env::switch("WGRAD_SPECIALIZE", true);
        PipelineCache { specialize, ..Default::default() }
    }

    /// `shader`'s module for `entry` under `constants`, specialised
    /// (`specialize.rs`): `None` when naga cannot apply them, and when the
    /// device does not specialise.
    fn specialized(
        &self,
        device: &wgpu::Device,
        shader: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Option<wgpu::ShaderModule> {
        if !self.specialize {
            return None;
        }
        let parsed = self.parsed(shader)?;
        let module = super::specialize::specialize(&parsed, entry, constants)?;
        let source = wgpu::ShaderSource::Naga(std::borrow::Cow::Owned(module));
        Some(module_from(device, shader, parsed.retry_loop, source))
    }

    /// Registry shader `shader` parsed and validated, once per process;
    /// `None` when naga rejects it.
    fn parsed(&self, shader: &'static str) -> Option<Arc<super::specialize::Parsed>> {
        let mut m = self.parsed.lock().unwrap();
        m.entry(shader).or_insert_with(|| super::specialize::parse(&shaders::source(shader)).map(Arc::new)).clone()
    }

    fn module(&self, device: &wgpu::Device, shader: &'static str) -> Arc<wgpu::ShaderModule> {
        let mut m = self.modules.lock().unwrap();
        m.entry(shader).or_insert_with(|| Arc::new(create_module(device, shader, &shaders::source(shader)))).clone()
    }

    /// The layout of `inputs` read-only and `outputs` read-write storage
    /// buffers, the inputs in the bit mask `textures` being r32float textures instead.
    fn layout(
        &self,
        device: &wgpu::Device,
        inputs: usize,
        outputs: usize,
        textures: u32,
    ) -> Arc<wgpu::BindGroupLayout> {
        let mut l = self.layouts.lock().unwrap();
        l.entry((inputs, outputs, textures))
            .or_insert_with(|| {
                let storage = |binding: usize, read_only: bool| wgpu::BindGroupLayoutEntry {
                    binding: binding as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                };
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(PARAMS_BYTES),
                    },
                    count: None,
                }];
                let texture = |binding: usize| wgpu::BindGroupLayoutEntry {
                    binding: binding as u32,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::ReadOnly,
                        format: super::texture_operands::FORMAT,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                    count: None,
                };
                entries.extend((0..inputs).map(|i| {
                    if textures >> i & 1 == 1 {
                        texture(1 + i)
                    } else {
                        storage(1 + i, true)
                    }
                }));
                entries.extend((0..outputs).map(|i| storage(1 + inputs + i, false)));
                Arc::new(device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("wgrad kernel"),
                    entries: &entries,
                }))
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::specialize::has_retry_loop;
    use crate::shaders;

    /// Loop bounding is turned off only where every loop counts to a bound:
    /// a `loop {` in a kernel must be a compare-and-swap retry (which keeps
    /// the bounding), and the hot kernels must not carry one by accident.
    #[test]
    fn loop_bounding_stays_only_on_retry_loops() {
        for name in shaders::SOURCES.iter().map(|(n, _)| *n).filter(|n| !shaders::is_library(n)) {
            let src = shaders::source(name);
            if has_retry_loop(&src) {
                assert!(src.contains("atomicCompareExchangeWeak"), "{name}: a `loop {{` that is not a retry loop");
            }
        }
        for name in ["matmul", "matmul_subgroup", "conv", "attention", "recurrent", "batch_norm"] {
            assert!(!has_retry_loop(&shaders::source(name)), "{name}");
        }
        assert!(has_retry_loop(&shaders::source("index")));
    }
}

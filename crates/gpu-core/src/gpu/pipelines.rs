//! Compiled pipelines, built once per (shader, entry point, override constants)
//! and cached, plus the bind-group layouts they share.
//!
//! Binding convention of every kernel: `@binding(0)` is a 256-byte uniform of
//! sizes and strides (bound with a dynamic offset into the batch's parameter
//! arena), then the read-only inputs, then the read-write outputs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::shaders;

/// Size of one kernel's parameter block (the largest WGSL `Params` struct).
pub(crate) const PARAMS_BYTES: u64 = 256;

/// `WGRAD_LOG_PIPELINES=1` prints every pipeline compilation and its time
/// to stderr (what a slow first step spends its time on).
fn log_pipelines() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("WGRAD_LOG_PIPELINES").is_ok_and(|v| v == "1"))
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    shader: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
    inputs: usize,
    outputs: usize,
}

/// A ready pipeline and the layout its bind groups are made from.
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: Arc<wgpu::BindGroupLayout>,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    kernels: Mutex<HashMap<Key, Arc<Kernel>>>,
    layouts: Mutex<HashMap<(usize, usize), Arc<wgpu::BindGroupLayout>>>,
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    /// Kernels generated at run time (the fuser's), keyed by their source:
    /// one expression structure, one source, one pipeline.
    generated: Mutex<HashMap<String, Arc<Kernel>>>,
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
        let key = Key {
            shader,
            entry,
            constants: constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
            inputs,
            outputs,
        };
        if let Some(k) = self.kernels.lock().unwrap().get(&key) {
            return k.clone();
        }
        let layout = self.layout(device, inputs, outputs);
        let module = self.module(device, shader);
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(shader),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let t0 = std::time::Instant::now();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(shader),
            layout: Some(&pl),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Kernels initialise the workgroup memory they read.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if log_pipelines() {
            eprintln!("wgrad: compiled {shader}:{entry} {constants:?} in {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
        }
        let k = Arc::new(Kernel { pipeline, layout });
        self.kernels.lock().unwrap().insert(key, k.clone());
        k
    }

    /// The pipeline of a generated source's `main` (built on first use).
    pub fn generated(&self, device: &wgpu::Device, source: &str, inputs: usize, outputs: usize) -> Arc<Kernel> {
        if let Some(k) = self.generated.lock().unwrap().get(source) {
            return k.clone();
        }
        let layout = self.layout(device, inputs, outputs);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("wgrad fused"),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("wgrad fused"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("wgrad fused"),
            layout: Some(&pl),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let k = Arc::new(Kernel { pipeline, layout });
        self.generated.lock().unwrap().insert(source.to_string(), k.clone());
        k
    }

    fn module(&self, device: &wgpu::Device, shader: &'static str) -> Arc<wgpu::ShaderModule> {
        let mut m = self.modules.lock().unwrap();
        m.entry(shader)
            .or_insert_with(|| {
                let src = shaders::source(shader);
                Arc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader),
                    source: wgpu::ShaderSource::Wgsl(src.into()),
                }))
            })
            .clone()
    }

    fn layout(&self, device: &wgpu::Device, inputs: usize, outputs: usize) -> Arc<wgpu::BindGroupLayout> {
        let mut l = self.layouts.lock().unwrap();
        l.entry((inputs, outputs))
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
                entries.extend((0..inputs).map(|i| storage(1 + i, true)));
                entries.extend((0..outputs).map(|i| storage(1 + inputs + i, false)));
                Arc::new(device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some("wgrad kernel"),
                    entries: &entries,
                }))
            })
            .clone()
    }
}

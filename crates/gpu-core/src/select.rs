//! Choosing where tensors live: `WGRAD_DEVICE`, adapter enumeration and ranking.

use crate::{Error, Result};

/// What the user asked for, usually from the `WGRAD_DEVICE` environment variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// Best hardware GPU, else the fast CPU backend. A software adapter
    /// (lavapipe, SwiftShader) is never picked here: on the same cores the
    /// CPU backend is faster, so it is used only when asked for by name or
    /// with [`DeviceSpec::Gpu`].
    Auto,
    /// Any wgpu adapter, software ones included; an error when there is none.
    Gpu,
    /// The CPU backend (its fast kernels).
    Cpu,
    /// The CPU backend running the reference twins (`cpu-reference`): the
    /// test oracle, and the "before" of the CPU benchmarks.
    CpuReference,
    /// The first adapter whose name contains this text (case-insensitive).
    Named(String),
}

impl DeviceSpec {
    /// What `WGRAD_DEVICE` accepts, for a program's `--help` (the examples
    /// print it, so their help cannot drift from [`DeviceSpec::parse`]).
    pub const HELP: &'static str = "WGRAD_DEVICE picks the device: auto (default: the best hardware GPU, else the \
CPU backend; a software adapter such as lavapipe only when asked for), gpu (any adapter, software ones included; an \
error when there is none), cpu (the CPU backend), cpu-reference (its single-threaded reference kernels), or a part \
of an adapter's name (e.g. nvidia, llvmpipe).";

    /// Parses `gpu`, `cpu`, `cpu-reference`, `auto`/empty, or an adapter-name substring.
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        Ok(match t.to_ascii_lowercase().as_str() {
            "" | "auto" => DeviceSpec::Auto,
            "gpu" => DeviceSpec::Gpu,
            "cpu" => DeviceSpec::Cpu,
            "cpu-reference" => DeviceSpec::CpuReference,
            _ if t.chars().any(|c| c.is_control()) => return Err(Error::BadDeviceSpec(s.into())),
            _ => DeviceSpec::Named(t.to_string()),
        })
    }

    /// Reads `WGRAD_DEVICE` (unset means [`DeviceSpec::Auto`]).
    pub fn from_env() -> Result<Self> {
        match std::env::var("WGRAD_DEVICE") {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(DeviceSpec::Auto),
        }
    }
}

/// The backends one build serves: native desktop APIs only (GL lacks what
/// compute needs), or the browser's WebGPU.
pub(crate) fn backends() -> wgpu::Backends {
    if cfg!(target_arch = "wasm32") {
        wgpu::Backends::BROWSER_WEBGPU
    } else {
        wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
    }
}

/// A wgpu instance over [`backends`].
pub(crate) fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

/// The page's WebGPU adapter (the browser offers one, high-performance
/// when asked).
#[cfg(target_arch = "wasm32")]
pub(crate) async fn browser_adapter() -> Result<wgpu::Adapter> {
    let options =
        wgpu::RequestAdapterOptions { power_preference: wgpu::PowerPreference::HighPerformance, ..Default::default() };
    instance()
        .request_adapter(&options)
        .await
        .map_err(|e| Error::NoAdapter { wanted: "WebGPU (navigator.gpu)".into(), available: format!("none: {e}") })
}

/// Every adapter wgpu sees, best first.
pub fn enumerate_adapters() -> Vec<wgpu::Adapter> {
    let inst = instance();
    let mut adapters = pollster::block_on(inst.enumerate_adapters(backends()));
    adapters.sort_by_key(|a| rank(&a.get_info()));
    adapters
}

/// What the `devices` example prints about one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Graphics API (`Vulkan`, `Metal`, `Dx12`).
    pub backend: String,
    /// Discrete, integrated, virtual, `Cpu` (software) or other.
    pub device_type: String,
    /// Driver name and version text.
    pub driver: String,
    /// The limits that matter for compute, as (name, value).
    pub limits: Vec<(&'static str, u64)>,
    /// Each optional feature wgrad can use, and whether the adapter offers it.
    pub features: Vec<(&'static str, bool)>,
    /// Whether wgrad runs f16 products on the adapter's matrix units
    /// (tensor cores), and the cooperative-matrix configurations it lists.
    pub matrix_units: String,
}

/// Summaries of every adapter, best first (the first is what `auto` picks).
pub fn list_adapters() -> Vec<AdapterSummary> {
    enumerate_adapters()
        .iter()
        .map(|a| {
            let (info, l, f) = (a.get_info(), a.limits(), a.features());
            AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
                limits: vec![
                    ("max_buffer_size", l.max_buffer_size),
                    ("max_storage_buffer_binding_size", l.max_storage_buffer_binding_size),
                    ("max_compute_workgroup_storage_size", l.max_compute_workgroup_storage_size as u64),
                    ("max_compute_invocations_per_workgroup", l.max_compute_invocations_per_workgroup as u64),
                    ("max_compute_workgroups_per_dimension", l.max_compute_workgroups_per_dimension as u64),
                    ("max_storage_buffers_per_shader_stage", l.max_storage_buffers_per_shader_stage as u64),
                ],
                features: vec![
                    ("SHADER_F16", f.contains(wgpu::Features::SHADER_F16)),
                    ("SUBGROUP", f.contains(wgpu::Features::SUBGROUP)),
                    ("TIMESTAMP_QUERY", f.contains(wgpu::Features::TIMESTAMP_QUERY)),
                ],
                matrix_units: crate::gpu::matrix_units::describe(a),
            }
        })
        .collect()
}

/// Lower is better: discrete, integrated, virtual, other, software.
fn rank(info: &wgpu::AdapterInfo) -> u8 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// True for adapters that run on real GPU hardware (not a CPU rasteriser).
fn is_hardware(info: &wgpu::AdapterInfo) -> bool {
    info.device_type != wgpu::DeviceType::Cpu
}

/// Picks an adapter for `spec`, with the reason in words; `Ok((None, _))`
/// means "use the CPU backend".
/// The variables MPI launchers (Open MPI, MPICH, MVAPICH, Slurm) and
/// `torchrun` set to a process's rank among the processes of its machine.
const LOCAL_RANK_VARS: [&str; 5] =
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"];

/// This process's rank on its machine when a launcher started several
/// (data-parallel training): each one opens a different GPU.
fn local_rank() -> Option<usize> {
    local_rank_from(|name| std::env::var(name).ok())
}

fn local_rank_from(var: impl Fn(&str) -> Option<String>) -> Option<usize> {
    LOCAL_RANK_VARS.iter().find_map(|name| var(name)?.trim().parse().ok())
}

/// The first of `candidates`, or with a local rank the `rank % len`-th of
/// them (more processes than GPUs share them round-robin); the rank is
/// returned when it chose (more than one candidate).
fn local_choice<T>(candidates: Vec<T>, rank: Option<usize>) -> Option<(T, Option<usize>)> {
    let n = candidates.len();
    let rank = rank.filter(|_| n > 1);
    let at = rank.map_or(0, |r| r % n.max(1));
    candidates.into_iter().nth(at).map(|c| (c, rank))
}

pub(crate) fn pick_adapter(spec: &DeviceSpec) -> Result<(Option<wgpu::Adapter>, String)> {
    match spec {
        DeviceSpec::Cpu => return Ok((None, "WGRAD_DEVICE=cpu asks for the CPU backend".into())),
        DeviceSpec::CpuReference => {
            return Ok((None, "WGRAD_DEVICE=cpu-reference asks for the reference twins".into()))
        }
        _ => {}
    }
    // The browser's adapter only comes asynchronously (Device::gpu_async).
    #[cfg(target_arch = "wasm32")]
    {
        if *spec == DeviceSpec::Auto {
            return Ok((None, "auto in the browser: the GPU opens with Device::gpu_async().await".into()));
        }
        crate::web::refuse_blocking("opening a GPU device synchronously", "Device::gpu_async().await")?;
    }
    let adapters = enumerate_adapters();
    let names = || {
        let v: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    match spec {
        DeviceSpec::Auto => {
            let available = names();
            let hardware: Vec<wgpu::Adapter> = adapters.into_iter().filter(|a| is_hardware(&a.get_info())).collect();
            let count = hardware.len();
            Ok(match local_choice(hardware, local_rank()) {
                Some((a, None)) => {
                    let why = format!("auto: the best hardware GPU ({:?})", a.get_info().device_type);
                    (Some(a), why)
                }
                Some((a, Some(rank))) => {
                    let why = format!("auto: hardware GPU {} of {count}, for local rank {rank}", rank % count);
                    (Some(a), why)
                }
                None => (
                    None,
                    format!(
                        "auto: no hardware GPU (adapters: {available}); the CPU backend is faster than a \
                         software adapter (WGRAD_DEVICE=gpu picks one)"
                    ),
                ),
            })
        }
        DeviceSpec::Gpu => {
            let available = names();
            let count = adapters.len();
            local_choice(adapters, local_rank())
                .map(|(a, rank)| {
                    let why = match rank {
                        None => "WGRAD_DEVICE=gpu: the best wgpu adapter".to_string(),
                        Some(r) => format!("WGRAD_DEVICE=gpu: adapter {} of {count}, for local rank {r}", r % count),
                    };
                    (Some(a), why)
                })
                .ok_or(Error::NoAdapter { wanted: "WGRAD_DEVICE=gpu".into(), available })
        }
        DeviceSpec::Named(n) => {
            let available = names();
            let needle = n.to_lowercase();
            adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&needle))
                .map(|a| (Some(a), format!("WGRAD_DEVICE={n}: the first adapter whose name contains it")))
                .ok_or(Error::NoAdapter { wanted: format!("WGRAD_DEVICE={n}"), available })
        }
        DeviceSpec::Cpu | DeviceSpec::CpuReference => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_rank_picks_its_own_gpu() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(local_rank_from(env(&[])), None);
        assert_eq!(local_rank_from(env(&[("OMPI_COMM_WORLD_LOCAL_RANK", "3")])), Some(3));
        assert_eq!(local_rank_from(env(&[("SLURM_LOCALID", "1"), ("LOCAL_RANK", "5")])), Some(1));
        assert_eq!(local_rank_from(env(&[("MPI_LOCALRANKID", "x")])), None);
        assert_eq!(local_choice(vec!["a", "b"], None), Some(("a", None)));
        assert_eq!(local_choice(vec!["a", "b"], Some(1)), Some(("b", Some(1))));
        assert_eq!(local_choice(vec!["a", "b"], Some(2)), Some(("a", Some(2))));
        // One GPU: every rank shares it, and the reason does not name a rank.
        assert_eq!(local_choice(vec!["a"], Some(1)), Some(("a", None)));
        assert_eq!(local_choice(Vec::<&str>::new(), Some(1)), None);
    }

    #[test]
    fn parses_device_specs() {
        assert_eq!(DeviceSpec::parse("").unwrap(), DeviceSpec::Auto);
        assert_eq!(DeviceSpec::parse("GPU").unwrap(), DeviceSpec::Gpu);
        assert_eq!(DeviceSpec::parse(" cpu ").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("CPU-reference").unwrap(), DeviceSpec::CpuReference);
        assert_eq!(DeviceSpec::parse("llvmpipe").unwrap(), DeviceSpec::Named("llvmpipe".into()));
        assert!(DeviceSpec::parse("a\nb").is_err());
    }

    #[test]
    fn help_names_every_keyword_parse_accepts() {
        for word in ["auto", "gpu", "cpu", "cpu-reference"] {
            assert!(DeviceSpec::HELP.contains(&format!("{word} (")), "HELP does not explain {word:?}");
            assert_ne!(DeviceSpec::parse(word).unwrap(), DeviceSpec::Named(word.into()), "{word} is a keyword");
        }
    }
}

//! Which kernel family runs a product: the user's choice
//! ([`MatmulKernel`], [`MatmulConfig`]), resolved per device into a
//! [`Family`] (the tiled kernel, the subgroup kernel of CPU adapters, or
//! matrix units for f16 operands).

use crate::gpu::matrix_units::MatrixUnits;
use crate::gpu::window::Window;
use crate::gpu::GpuContext;
use crate::ops::operands::{HalfLoads, Operands};
use crate::{Buffer, Error, Result};

/// The subgroup size `matmul_subgroup.wgsl` is written for.
pub(super) const SUBGROUP_LANES: u32 = 8;

/// Which GPU kernel computes a product. The CPU backend ignores the choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatmulKernel {
    /// [`Subgroup`](Self::Subgroup) on CPU adapters that support it
    /// (lavapipe), [`Tiled`](Self::Tiled) everywhere else.
    #[default]
    Auto,
    /// Workgroup-memory tiles and 8 x 8 register blocks: the kernel for GPUs.
    Tiled,
    /// No workgroup memory; rows shared across a subgroup by broadcasts. For
    /// CPU adapters, whose loads and barriers cost what the tiled kernel
    /// assumes is cheap. Needs subgroups of exactly 8 lanes.
    Subgroup,
    /// Matrix units (tensor cores) through WGSL cooperative matrices, for
    /// f16 operands (`shaders/matmul_coop.wgsl`); f32 products take the
    /// tiled kernel. [`Auto`](Self::Auto) picks it for f16 operands
    /// wherever a hardware adapter offers 16 x 16 x 16 (or 8 x 8 x 8) f16
    /// matrices with f32 accumulators (`Device::info().matrix_units`).
    Cooperative,
}

/// Everything that picks the kernel of a product besides its shapes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatmulConfig {
    /// The GPU kernel family.
    pub kernel: MatmulKernel,
    /// The operands' storage.
    pub operands: Operands,
    /// How f16 operands are read on a GPU (ignored for f32 and on the CPU backend).
    pub half_loads: HalfLoads,
    /// Whether a GPU cuts the product's K into slices (ignored on the CPU backend).
    pub split_k: SplitK,
}

/// Whether a product with few outputs and a long K runs as products over
/// slices of K, one batched launch, and their sum in slice order (a
/// reduction launch): the same bits on every run, and many more
/// workgroups than its tiles alone. The weight gradients of Linear layers
/// are such products (`[out, in]` over K = batch x tokens).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplitK {
    /// The rule (`split_k`): on GPUs that are no CPU adapter, f32 products
    /// of the tiled kernel with no epilogue and fewer than 256 workgroups,
    /// in slices of at least 128 values of K.
    #[default]
    Auto,
    /// The largest count of equal slices up to this one (1: whole), on any
    /// GPU adapter, for every product without an epilogue and not
    /// gathered from a convolution's tensor (tests).
    Slices(usize),
}

impl MatmulConfig {
    /// The default configuration with f16 operands.
    pub fn f16() -> Self {
        MatmulConfig { operands: Operands::F16, ..Self::default() }
    }

    /// The shader (file or generated variant) and entry point of `family`
    /// on `g`.
    pub(super) fn shader(&self, g: &GpuContext, family: Family) -> Result<(&'static str, &'static str)> {
        let subgroup = match family {
            Family::Coop(units) => {
                return Ok((if units.fragment == 8 { "matmul_coop8" } else { "matmul_coop" }, "main_coop"))
            }
            Family::Subgroup => true,
            Family::Tiled => false,
        };
        let native = match self.operands {
            Operands::F32 => None,
            Operands::F16 => Some(self.half_loads.native(g, "matmul")?),
        };
        Ok(match (subgroup, native) {
            (true, None) => ("matmul_subgroup", "main_subgroup"),
            (true, Some(false)) => ("matmul_subgroup_f16", "main_subgroup"),
            (true, Some(true)) => ("matmul_subgroup_f16_native", "main_subgroup"),
            (false, None) => ("matmul", "main"),
            (false, Some(false)) => ("matmul_f16", "main"),
            (false, Some(true)) => ("matmul_f16_native", "main"),
        })
    }
}

/// Whether a subgroup-kernel launch reads its f32 operands (each a buffer
/// and the window bound of it, if any) through textures (see
/// `gpu/texture_operands.rs`).
pub(super) fn textured(g: &GpuContext, operands: [(&Buffer, Option<Window>); 2]) -> bool {
    g.wants_texture_operands(operands.iter().map(|(b, w)| w.map_or(b.wgpu().size(), |w| w.size)))
}

/// True when the device runs `matmul_subgroup.wgsl`: subgroup operations
/// enabled, and every subgroup exactly 8 lanes wide.
pub(super) fn subgroup_kernel_fits(g: &GpuContext) -> bool {
    g.features.contains(wgpu::Features::SUBGROUP)
        && g.info.subgroup_min_size == SUBGROUP_LANES
        && g.info.subgroup_max_size == SUBGROUP_LANES
}

/// The matrix units a product of `cfg` runs on on `g`: for f16 operands,
/// those of the adapter unless the kernel is [`Tiled`](MatmulKernel::Tiled)
/// or [`Subgroup`](MatmulKernel::Subgroup); an error where
/// [`Cooperative`](MatmulKernel::Cooperative) (or `WGRAD_MATMUL_KERNEL=coop`)
/// asks for units the adapter does not offer, or for f32 operands.
pub(super) fn matrix_units(cfg: MatmulConfig, g: &GpuContext) -> Result<Option<MatrixUnits>> {
    let forced = cfg.kernel == MatmulKernel::Cooperative || (cfg.kernel == MatmulKernel::Auto && g.matrix_units_forced);
    let wanted = matches!(cfg.kernel, MatmulKernel::Auto | MatmulKernel::Cooperative);
    match (cfg.operands, g.matrix_units) {
        (Operands::F16, Some(units)) if wanted => Ok(Some(units)),
        (Operands::F16, None) if forced => Err(Error::invalid(
            "matmul",
            format!(
                "matrix units were asked for (MatmulKernel::Cooperative or WGRAD_MATMUL_KERNEL=coop) but {} offers \
                 no 16x16x16 or 8x8x8 f16 cooperative matrices with f32 sums (see `cargo run --example devices`)",
                g.info.name
            ),
        )),
        (Operands::F32, _) if cfg.kernel == MatmulKernel::Cooperative => {
            Err(Error::invalid("matmul", "matrix units take f16 operands; f32 products run on the tiled kernel"))
        }
        _ => Ok(None),
    }
}

/// Whether a product of `cfg` on `device` rounds an f16 result in its
/// store ([`MatmulKernel::rounds_f16_in_store`]): not on the subgroup
/// family, which a product on matrix units does not use.
pub(super) fn rounds_in_store(cfg: MatmulConfig, device: &crate::Device) -> bool {
    let Some(g) = device.gpu_ctx() else { return true };
    !matches!(Family::of(cfg, g, device, "matmul"), Ok(Family::Subgroup))
}

/// The kernel family one product runs on: the tiled kernel, the subgroup
/// kernel (CPU adapters) or matrix units, one of them by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    Tiled,
    Subgroup,
    Coop(MatrixUnits),
}

impl Family {
    /// The family of a product of `cfg` on `g`: matrix units where
    /// [`matrix_units`] gives them (f16 operands; they come before the
    /// subgroup kernel `Auto` resolves to on CPU adapters), else the kernel
    /// `cfg.kernel` resolves to; an error naming `op` where the subgroup
    /// kernel is asked for and the adapter's subgroups do not fit it.
    pub(super) fn of(cfg: MatmulConfig, g: &GpuContext, dev: &crate::Device, op: &'static str) -> Result<Family> {
        if let Some(units) = matrix_units(cfg, g)? {
            return Ok(Family::Coop(units));
        }
        match cfg.kernel.resolve(dev) {
            MatmulKernel::Subgroup if subgroup_kernel_fits(g) => Ok(Family::Subgroup),
            MatmulKernel::Subgroup => Err(Error::invalid(
                op,
                format!("the subgroup kernel needs subgroups of exactly {SUBGROUP_LANES} lanes on {}", g.info.name),
            )),
            _ => Ok(Family::Tiled),
        }
    }

    pub(super) fn subgroup(self) -> bool {
        self == Family::Subgroup
    }

    pub(super) fn units(self) -> Option<MatrixUnits> {
        match self {
            Family::Coop(units) => Some(units),
            _ => None,
        }
    }
}

impl MatmulKernel {
    /// Whether `device` can run this kernel (always true on the CPU backend,
    /// which runs the twin whatever the choice).
    pub fn runs_on(self, device: &crate::Device) -> bool {
        match (self, device.gpu_ctx()) {
            (MatmulKernel::Subgroup, Some(g)) => subgroup_kernel_fits(g),
            (MatmulKernel::Cooperative, Some(g)) => g.matrix_units.is_some(),
            _ => true,
        }
    }

    /// Whether an f16 product's f16 result is rounded in the product's own
    /// store (one launch) on `device`: yes for the tiled kernel, matrix
    /// units and the CPU backend's twin. The subgroup kernel (CPU adapters)
    /// stores f32 sums and a cast rounds them, because llvmpipe ran the
    /// rounding store 2-4x slower than the whole f32 product
    /// (docs/history/performance-2026-11-26.md, "Matmul epilogue"); the
    /// extra pass over the result is far cheaper there.
    pub fn rounds_f16_in_store(self, device: &crate::Device) -> bool {
        rounds_in_store(MatmulConfig { kernel: self, ..MatmulConfig::f16() }, device)
    }

    /// The kernel this choice runs on `device`: [`Auto`](Self::Auto)
    /// resolved on a GPU (the subgroup kernel on CPU adapters that fit it,
    /// unless `WGRAD_MATMUL_KERNEL=tiled`), anything else unchanged.
    pub fn resolve(self, device: &crate::Device) -> MatmulKernel {
        match (self, device.gpu_ctx()) {
            (MatmulKernel::Auto, Some(g)) => {
                if g.is_cpu_adapter() && subgroup_kernel_fits(g) && !g.tiled_matmul_forced {
                    MatmulKernel::Subgroup
                } else {
                    MatmulKernel::Tiled
                }
            }
            (k, _) => k,
        }
    }
}

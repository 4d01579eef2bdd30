//! Batched matrix product with NumPy batch broadcasting (`shaders/matmul.wgsl`
//! for GPUs, `shaders/matmul_subgroup.wgsl` for CPU adapters).
//!
//! Operands are strided views: a transposed operand is a permuted [`Layout`]
//! and is read in place, never copied.

use super::epilogue::Members;
use super::k_slices::{largest_divisor, slices_for};
use super::matmul_split::{Piece, Planner};
use super::operands::{host_f32, HostOutput};
use super::unary::UnaryOp;
use super::{run_fallible, Kind, Params, ParamsDecl};
use crate::cpu::gemm::{gemm, Mat};
use crate::gpu::matrix_units::MatrixUnits;
use crate::gpu::product_store::{switch_on, ProductLaunch, ProductStore, Tail, Takes};
use crate::gpu::window::{window, Window};
use crate::gpu::{GpuContext, Launch};
pub(crate) use crate::kernels::conv::ConvGather;
use crate::kernels::conv::ConvGeometry;
use crate::kernels::matmul::{self as twin, BOperand};
use crate::layout::{broadcast_shapes, coalesce, numel, Dims, Layout};
use crate::{Buffer, Error, Result};

/// `matmul.wgsl`'s uniform block (every matmul family and variant
/// includes it); the epilogue's members are written by
/// `Epilogue::params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "matmul",
    fields: &[
        ("batch_shape", Kind::Dims),
        ("a_bstrides", Kind::Dims),
        ("b_bstrides", Kind::Dims),
        ("m", Kind::U32),
        ("n", Kind::U32),
        ("k", Kind::U32),
        ("brank", Kind::U32),
        ("a_offset", Kind::U32),
        ("a_rs", Kind::U32),
        ("a_cs", Kind::U32),
        ("b_offset", Kind::U32),
        ("b_rs", Kind::U32),
        ("b_cs", Kind::U32),
        ("tiles_n", Kind::U32),
        ("tiles_per_batch", Kind::U32),
        ("workgroups", Kind::U32),
        ("conv_in_h", Kind::U32),
        ("conv_in_w", Kind::U32),
        ("conv_out_h", Kind::U32),
        ("conv_out_w", Kind::U32),
        ("conv_pad_top", Kind::U32),
        ("conv_pad_left", Kind::U32),
        ("conv_stride_h", Kind::U32),
        ("conv_stride_w", Kind::U32),
        ("bias_axis", Kind::U32),
        ("bias_batches", Kind::U32),
        ("relu", Kind::U32),
        ("scale", Kind::F32),
        ("alpha", Kind::F32),
        ("beta", Kind::F32),
        ("save_pre", Kind::U32),
        ("cell_hidden", Kind::U32),
        ("cell_x", Kind::U32),
        ("cell_prev", Kind::U32),
        ("cell_out", Kind::U32),
        ("cell_c", Kind::U32),
        ("cell_dy", Kind::U32),
    ],
};

/// The implicit-GEMM convolution's members, in `PARAMS` order.
const CONV_FIELDS: [&str; 8] = [
    "conv_in_h",
    "conv_in_w",
    "conv_out_h",
    "conv_out_w",
    "conv_pad_top",
    "conv_pad_left",
    "conv_stride_h",
    "conv_stride_w",
];

/// The LSTM cell epilogue's members, in `PARAMS` order.
const CELL_FIELDS: [&str; 6] = ["cell_hidden", "cell_x", "cell_prev", "cell_out", "cell_c", "cell_dy"];

/// The output tile (rows, columns) of one workgroup for an `m` x `n`
/// product: the `TILE_M` x `TILE_N` overrides of `shaders/matmul.wgsl`. Few
/// rows (convolutions with 16 or 32 output channels) get flat tiles, so no
/// work goes to rows beyond M; wide products get 64 x 128 tiles (128
/// threads), which on an NVIDIA H100 ran twice as fast as 64 x 64 at 2048^3
/// and as fast at 1024^3 (docs/performance.md). The subgroup kernel's tile
/// is 64 columns wide, computed by one subgroup (`ROW_GROUPS` groups of 8
/// rows, see [`subgroup_row_groups`]); with buffer operands, products of
/// at most 32 columns get 32-column tiles (half the work: a one-channel
/// convolution's weight gradient has 9 columns). Texture operands always
/// take 64-column tiles: each narrow product was a pipeline of its own,
/// and a CPU adapter's cold first step is its pipelines' compile time
/// (docs/history/performance-issue-11.md, "Fewer, smaller kernels for a cold first step").
/// `WGRAD_MATMUL_TILE` replaces the tiled kernel's choice (see [`tile_override`]).
///
/// `WGRAD_MATMUL_MIN_WORKGROUPS` shrinks the tiles of launches with few
/// workgroups ([`tiled_tile`]).
fn tile(subgroup: bool, reads: Reads, m: usize, n: usize, batches: usize) -> Result<(usize, usize)> {
    if subgroup {
        return Ok((8 * subgroup_row_groups(reads, m), if n <= 32 && reads == Reads::Buffers { 32 } else { 64 }));
    }
    if let Some(t) = tile_override().map_err(|e| Error::invalid("matmul", e))? {
        return Ok(t);
    }
    let min = min_workgroups().map_err(|e| Error::invalid("matmul", e))?;
    Ok(tiled_tile(m, n, batches, min))
}

/// The tiled kernel's tile for a launch of `batches` `m` x `n` products:
/// by shape, then smaller ([`smaller_tile`]) while the launch has fewer
/// than `min` workgroups. Off by default (`min` 0): on an H200 a compiled
/// ResNet-20 step ran 9-11% faster with every product on 32 x 64 tiles
/// (`WGRAD_MATMUL_TILE=32x64`), but 2-4% slower with this rule at minimums
/// of 512 to 4096 (before 16-row tiles shrank too), where an LSTM step
/// ran 9% faster (docs/performance.md, "Products with few workgroups").
fn tiled_tile(m: usize, n: usize, batches: usize, min: usize) -> (usize, usize) {
    let mut t = match m {
        0..=16 => (16, 128),
        17..=32 => (32, 128),
        _ if n > 64 => (64, 128),
        _ => (64, 64),
    };
    while batches * m.div_ceil(t.0) * n.div_ceil(t.1) < min {
        match smaller_tile(t) {
            Some(s) => t = s,
            None => break,
        }
    }
    t
}

/// The next tile down for a launch with too few workgroups: half as many
/// columns, then half as many rows, down to 32 x 64 (32 threads, the
/// kernel's fewest); a 16-row tile becomes 32 x 64 (16 x 64 would be 16
/// threads): twice the workgroups, each computing rows past M it does not
/// store.
fn smaller_tile(t: (usize, usize)) -> Option<(usize, usize)> {
    match t {
        (64, 128) => Some((64, 64)),
        (16, 128) | (32, 128) | (64, 64) => Some((32, 64)),
        _ => None,
    }
}

/// `WGRAD_MATMUL_MIN_WORKGROUPS` (a tuning knob like `WGRAD_MATMUL_TILE`),
/// else 0: no launch's tiles shrink.
fn min_workgroups() -> std::result::Result<usize, String> {
    static MIN: std::sync::OnceLock<std::result::Result<usize, String>> = std::sync::OnceLock::new();
    MIN.get_or_init(|| match std::env::var("WGRAD_MATMUL_MIN_WORKGROUPS") {
        Err(_) => Ok(0),
        Ok(v) => v.trim().parse().map_err(|_| format!("WGRAD_MATMUL_MIN_WORKGROUPS={v:?} is not a number")),
    })
    .clone()
}

/// How a subgroup-kernel launch reads its operands, as far as its tile
/// goes (the tiled kernel ignores it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reads {
    /// Storage buffers.
    Buffers,
    /// Textures (the `operands_tex` library, CPU adapters), B a strided matrix;
    /// `small` when the product has fewer than [`SMALL_PRODUCT`]
    /// multiply-adds.
    Textures { small: bool },
    /// Textures, B gathered from a convolution's tensor (`B_CONV` > 0).
    ConvTextures,
}

/// Most groups of 8 rows one subgroup computes when its operands are
/// textures (the subgroup kernel's `ROW_GROUPS` goes up to 8, used with
/// buffer operands, whose stalling per-lane loads a 64-row block amortises
/// best). With texture operands a 64-row block ran no faster than a 32-row
/// one on lavapipe and took twice as long to compile: a cold ResNet-20
/// first step 46 -> 27 s, a cold Transformer step 26 -> 15 s, steps the
/// same within noise (docs/history/performance-issue-11.md, "Texture operands").
const SUBGROUP_TEXTURE_ROW_GROUPS: usize = 4;

/// The same for a convolution's gathered products: 16 rows, so that
/// convolutions with 16, 32 and 64 output channels (ResNet-20's three
/// stages) share pipelines of half the code. A CPU adapter's cold first
/// step is mostly its pipelines' compile time: ResNet-20's fell from
/// 11.1-11.5 s to 4.7 s (with 64-column tiles only), for convolutions with
/// 64 output channels 15-20% slower (docs/history/performance-issue-11.md, "Fewer, smaller
/// kernels for a cold first step"). Plain products keep 32 rows: a
/// recurrent step's or attention's batch of 32 rows ran 10% slower in two
/// tiles; small ones ([`SMALL_PRODUCT`]) take 16 rows too.
const SUBGROUP_CONV_TEXTURE_ROW_GROUPS: usize = 2;

/// Multiply-adds (over all batch entries of the launch) below which a
/// plain product read through textures takes the 16-row tiles of
/// convolutions: a classifier's products take well under a millisecond in
/// either tile, while each pipeline of their own cost ResNet-20's cold
/// first step 0.5-0.9 s.
const SMALL_PRODUCT: usize = 1 << 20;

/// The subgroup kernel's largest `ROW_GROUPS` (its tile is 8 times as many
/// rows tall) for an `m`-row product read as `reads`: the texture caps
/// above, else 4 when 4 cover all rows, else 8.
fn subgroup_row_groups(reads: Reads, m: usize) -> usize {
    match reads {
        Reads::ConvTextures | Reads::Textures { small: true } => SUBGROUP_CONV_TEXTURE_ROW_GROUPS,
        Reads::Textures { small: false } => SUBGROUP_TEXTURE_ROW_GROUPS,
        Reads::Buffers if m <= 32 => 4,
        Reads::Buffers => 8,
    }
}

/// `shaders/matmul.wgsl`'s register block (`TM` = `TN`) and staged depth
/// (`BK`); a test checks them against the shader.
const TILED_BLOCK: usize = 8;
const TILED_BK: usize = 16;

/// `shaders/matmul_coop.wgsl`'s staged depth (`CK`), the staged A tile's
/// row stride in halves (`A_STRIDE`; B's rows are `TILE_N` + the same 8
/// halves of padding) and the registers each thread stages a slice through
/// (`MAX_SLOTS` quads per operand); a test checks them against the shader.
const COOP_DEPTH: usize = 32;
const COOP_A_STRIDE: usize = 40;
const COOP_MAX_SLOTS: usize = 16;

/// Whether the tiled kernel can run an `m` x `n` output tile: whole
/// register blocks, 32 to 256 threads, tile loads that divide evenly among
/// the threads, and both staged tiles within WebGPU's 16 KiB of workgroup
/// memory.
fn tiled_fits(m: usize, n: usize) -> bool {
    let threads = (m / TILED_BLOCK) * (n / TILED_BLOCK);
    m.is_multiple_of(TILED_BLOCK)
        && n.is_multiple_of(TILED_BLOCK)
        && (32..=256).contains(&threads)
        && (TILED_BK * m / 4).is_multiple_of(threads)
        && (TILED_BK * n / 4).is_multiple_of(threads)
        && TILED_BK * (m + n) * 4 <= 16 << 10
}

/// `WGRAD_MATMUL_TILE=MxN` (e.g. `128x128`): one output tile for every
/// product of the tiled kernel, for tuning on a new GPU (`cargo bench
/// --bench matmul`); unset, [`tile`] picks by shape.
fn tile_override() -> std::result::Result<Option<(usize, usize)>, String> {
    static TILE: std::sync::OnceLock<std::result::Result<Option<(usize, usize)>, String>> = std::sync::OnceLock::new();
    TILE.get_or_init(|| {
        let Ok(v) = std::env::var("WGRAD_MATMUL_TILE") else { return Ok(None) };
        let parsed = v.split_once('x').and_then(|(m, n)| Some((m.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((m, n)) if tiled_fits(m, n) => Ok(Some((m, n))),
            _ => Err(format!(
                "WGRAD_MATMUL_TILE={v:?} is not a tile the kernel can run: MxN, multiples of 8, \
                 32-256 threads (M/8 x N/8), M and N dividing 256, M + N <= 256"
            )),
        }
    })
    .clone()
}

/// The subgroup size `matmul_subgroup.wgsl` is written for.
const SUBGROUP_LANES: u32 = 8;

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

pub(crate) use super::epilogue::CellStore;
pub use super::epilogue::{Bias, BiasAxis, Epilogue};
pub use super::operands::{HalfLoads, Operands};

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
    fn shader(&self, g: &GpuContext, family: Family) -> Result<(&'static str, &'static str)> {
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
fn textured(g: &GpuContext, operands: [(&Buffer, Option<Window>); 2]) -> bool {
    g.wants_texture_operands(operands.iter().map(|(b, w)| w.map_or(b.wgpu().size(), |w| w.size)))
}

/// True when the device runs `matmul_subgroup.wgsl`: subgroup operations
/// enabled, and every subgroup exactly 8 lanes wide.
fn subgroup_kernel_fits(g: &GpuContext) -> bool {
    g.features.contains(wgpu::Features::SUBGROUP)
        && g.info.subgroup_min_size == SUBGROUP_LANES
        && g.info.subgroup_max_size == SUBGROUP_LANES
}

/// The matrix units a product of `cfg` runs on on `g`: for f16 operands,
/// those of the adapter unless the kernel is [`Tiled`](MatmulKernel::Tiled)
/// or [`Subgroup`](MatmulKernel::Subgroup); an error where
/// [`Cooperative`](MatmulKernel::Cooperative) (or `WGRAD_MATMUL_KERNEL=coop`)
/// asks for units the adapter does not offer, or for f32 operands.
fn matrix_units(cfg: MatmulConfig, g: &GpuContext) -> Result<Option<MatrixUnits>> {
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
fn rounds_in_store(cfg: MatmulConfig, device: &crate::Device) -> bool {
    let Some(g) = device.gpu_ctx() else { return true };
    !matches!(Family::of(cfg, g, device, "matmul"), Ok(Family::Subgroup))
}

/// The kernel family one product runs on: the tiled kernel, the subgroup
/// kernel (CPU adapters) or matrix units, one of them by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
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
    fn of(cfg: MatmulConfig, g: &GpuContext, dev: &crate::Device, op: &'static str) -> Result<Family> {
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

    fn subgroup(self) -> bool {
        self == Family::Subgroup
    }

    fn units(self) -> Option<MatrixUnits> {
        match self {
            Family::Coop(units) => Some(units),
            _ => None,
        }
    }
}

/// A matrix-unit tile: rows and columns, the fragments' edge (`FR` in
/// `matmul_coop.wgsl`) and each subgroup's fragments along N (`FN`; two
/// fragments, 2 `FR` rows, along M).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CoopTile {
    m: usize,
    n: usize,
    fragment: usize,
    frags_n: usize,
}

impl CoopTile {
    /// Subgroups along rows and columns.
    fn subgroups(self) -> (usize, usize) {
        (self.m / (2 * self.fragment), self.n / (self.fragment * self.frags_n))
    }
}

/// `WGRAD_COOP_FRAGS` (2 or 4): each subgroup's fragments along N where the
/// tile is wide enough; 2 when unset. Read once per process, like
/// [`tile_override`]: a product is recorded per launch.
fn coop_frags() -> usize {
    static FRAGS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *FRAGS.get_or_init(|| match std::env::var("WGRAD_COOP_FRAGS").as_deref().map(str::trim) {
        Ok("4") => 4,
        _ => 2,
    })
}

/// `WGRAD_COOP_PREFETCH=0` loads each K slice of a matrix-unit product
/// after the barrier that ends the slice before, rather than while the
/// units multiply it (`PREFETCH` in `matmul_coop.wgsl`): for measuring.
/// Read once per process.
fn coop_prefetch() -> bool {
    static PREFETCH: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PREFETCH.get_or_init(|| crate::env::switch("WGRAD_COOP_PREFETCH", true))
}

/// `WGRAD_COOP_TILE=MxN`, read once per process: the tile asked for, or
/// the text when it does not parse as one (an error at the first product).
fn coop_tile_override() -> Option<std::result::Result<(usize, usize), &'static str>> {
    static TILE: std::sync::OnceLock<Option<std::result::Result<(usize, usize), String>>> = std::sync::OnceLock::new();
    let parsed = TILE.get_or_init(|| {
        let v = std::env::var("WGRAD_COOP_TILE").ok()?;
        let tile = v.split_once('x').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
        Some(tile.ok_or(v))
    });
    parsed.as_ref().map(|r| r.as_ref().map(|t| *t).map_err(String::as_str))
}

/// The output tile of a matrix-unit product of `m` x `n` on `g`: 2
/// fragments' rows and [`coop_frags`] fragments' columns per subgroup
/// (32 x 32 with 16 x 16 fragments), as few subgroups as cover the
/// product, up to 128 x 128, within the adapter's workgroup limits;
/// `WGRAD_COOP_TILE=MxN` (M in 32, 64, 128; N in 32, 64, 128, 256: 128 x
/// 256 with `WGRAD_COOP_FRAGS=4` measured fastest on an H200 in an earlier
/// form of the kernel) replaces the choice.
fn coop_tile(g: &GpuContext, units: MatrixUnits, m: usize, n: usize) -> Result<CoopTile> {
    let fragment = units.fragment as usize;
    let tile = |(tm, tn): (usize, usize)| {
        let frags_n = if tn >= fragment * coop_frags() { coop_frags() } else { 2 };
        CoopTile { m: tm, n: tn, fragment, frags_n }
    };
    let fits = |(tm, tn): (usize, usize)| {
        let (sm, sn) = tile((tm, tn)).subgroups();
        let threads = sm * sn * units.subgroup_size as usize;
        // Staged A and B slices as f16, one f32 fragment per subgroup.
        let pad = COOP_A_STRIDE - COOP_DEPTH;
        let bytes = tm * COOP_A_STRIDE * 2 + COOP_DEPTH * (tn + pad) * 2 + sm * sn * fragment * fragment * 4;
        // Each thread's share of a slice, in quads, fits its registers.
        let slots = |elements: usize| (elements / 4).div_ceil(threads) <= COOP_MAX_SLOTS;
        threads <= g.limits.max_compute_invocations_per_workgroup as usize
            && bytes <= g.limits.max_compute_workgroup_storage_size as usize
            && slots(tm * COOP_DEPTH)
            && slots(COOP_DEPTH * tn)
    };
    if let Some(asked) = coop_tile_override() {
        return match asked {
            Ok((tm, tn)) if [32, 64, 128].contains(&tm) && [32, 64, 128, 256].contains(&tn) && fits((tm, tn)) => {
                Ok(tile((tm, tn)))
            }
            _ => Err(Error::invalid(
                "matmul",
                format!(
                    "WGRAD_COOP_TILE={:?}: MxN with M in 32, 64, 128, N in 32 .. 256, within the adapter's workgroup \
                     limits",
                    asked.map_or_else(|v| v.to_string(), |(m, n)| format!("{m}x{n}"))
                ),
            )),
        };
    }
    let side = |len: usize| {
        if len <= 32 {
            32
        } else if len <= 64 {
            64
        } else {
            128
        }
    };
    let mut t = (side(m), side(n));
    while !fits(t) {
        if t.0 >= t.1 && t.0 > 32 {
            t.0 /= 2;
        } else if t.1 > 32 {
            t.1 /= 2;
        } else {
            return Err(Error::invalid("matmul", "the adapter's workgroup limits hold no matrix-unit tile"));
        }
    }
    Ok(tile(t))
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

/// The broadcast batch shape and each operand's batch dims as a view of it,
/// or an error naming both shapes.
fn check_shapes(la: &Layout, lb: &Layout) -> Result<(Dims, Layout, Layout)> {
    let shapes = || format!("{:?} and {:?}", la.shape, lb.shape);
    if la.rank() < 2 || lb.rank() < 2 {
        return Err(Error::invalid(
            "matmul",
            format!("operands must have rank >= 2 ([..batch, M, K] @ [..batch, K, N]), got shapes {}", shapes()),
        ));
    }
    let (ra, rb) = (la.rank() - 2, lb.rank() - 2);
    if la.shape[ra + 1] != lb.shape[rb] {
        return Err(Error::invalid(
            "matmul",
            format!("inner dimensions differ ({} vs {}) for shapes {}", la.shape[ra + 1], lb.shape[rb], shapes()),
        ));
    }
    let batch = broadcast_shapes(&la.shape[..ra], &lb.shape[..rb]).ok_or_else(|| {
        Error::invalid("matmul", format!("batch dimensions cannot be broadcast together for shapes {}", shapes()))
    })?;
    // Stride 0 where an operand broadcasts; the offset is the operand's.
    let view = |l: &Layout, r: usize| {
        Layout { shape: l.shape[..r].into(), strides: l.strides[..r].into(), offset: l.offset }.broadcast_to(&batch)
    };
    let (va, vb) = (view(la, ra)?, view(lb, rb)?);
    Ok((batch, va, vb))
}

/// How `matmul_subgroup.wgsl` reads one operand (its `A_MODE` / `B_MODE`):
/// 1 when the row stride is 1 (vec4 along rows), 2 when the column stride is
/// 1 (vec4 along columns), 0 (element by element) otherwise or when a vec4
/// would straddle a 16-byte boundary. A stride of a size-1 dim never matters,
/// batch dims included: a plain 2-D product is planned with one batch entry
/// of stride 1, which must not send it to element-by-element loads.
fn load_mode(rows: usize, cols: usize, rs: usize, cs: usize, batch: &Layout) -> u32 {
    let aligned = batch.offset.is_multiple_of(4)
        && batch.strides.iter().zip(&batch.shape).all(|(s, &len)| len == 1 || s.is_multiple_of(4));
    let unit = |s: usize, len: usize| s == 1 || len == 1;
    let quad = |s: usize, len: usize| s.is_multiple_of(4) || len == 1;
    if aligned && unit(cs, cols) && quad(rs, rows) {
        1
    } else if aligned && unit(rs, rows) && quad(cs, cols) {
        2
    } else {
        0
    }
}

/// `a @ b` for `a` viewed as `[..batch, M, K]` and `b` as `[..batch, K, N]`
/// (rank ≥ 2 each; batch dims broadcast like NumPy). Returns the result,
/// contiguous, and its shape `[..broadcast batch, M, N]`.
///
/// Either view may be transposed or sliced: both are read through their
/// strides. 1-D operands are the caller's business (promote them to
/// `[1, K]` / `[K, 1]` first).
pub fn matmul(a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Dims)> {
    matmul_with(MatmulKernel::Auto, a, la, b, lb)
}

/// [`matmul`] on a chosen GPU kernel (for tests and benchmarks); an error
/// when the device cannot run it.
pub fn matmul_with(kernel: MatmulKernel, a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Dims)> {
    matmul_config(MatmulConfig { kernel, ..MatmulConfig::default() }, a, la, b, lb)
}

/// [`matmul`] of two f16 operands (packed, [`Buffer::from_f16`]'s layout):
/// f32 products and sums, an f32 result.
pub fn matmul_f16(a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Dims)> {
    matmul_config(MatmulConfig::f16(), a, la, b, lb)
}

/// [`matmul`] with every choice spelled out (tests and benchmarks).
pub fn matmul_config(cfg: MatmulConfig, a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout) -> Result<(Buffer, Dims)> {
    matmul_epilogue(cfg, &Epilogue::default(), a, la, b, lb)
}

/// [`matmul_config`] through an [`Epilogue`]: a bias added to the f32 sums
/// and/or the result stored as f16 (rounded once), in the product's own
/// launch. An f16 result of odd N is stored as f32 and cast (a second
/// launch; packed f16 stores need whole words).
pub fn matmul_epilogue(
    cfg: MatmulConfig,
    epi: &Epilogue,
    a: &Buffer,
    la: &Layout,
    b: &Buffer,
    lb: &Layout,
) -> Result<(Buffer, Dims)> {
    for (buf, l) in [(a, la), (b, lb)] {
        l.check_rank("matmul")?;
        buf.check_len("matmul", "operand", l.span(), cfg.operands.size())?;
        super::check_u32("matmul", l.span())?;
    }
    let (batch, va, vb) = check_shapes(la, lb)?;
    product(cfg, epi, a, la, &va, b, &strided_b(lb, vb), batch)
}

/// `op(a @ b)` through `epi` with the op of the unary table in the store
/// (after the scale and bias, before the residual): the result and the
/// values before the op (the product as `epi` alone would store it, which
/// the op's gradient reads), or `None` for those without `keep_pre`. One
/// launch where it binds its buffers whole and stores f32; otherwise (f16
/// results, products split past the binding limit) the product, then the
/// op as a launch of its own, with the same values.
///
/// # Errors
/// As [`matmul_epilogue`], and for an `epi` that already has a ReLU or an
/// activation.
pub fn matmul_activation(
    cfg: MatmulConfig,
    epi: &Epilogue,
    op: UnaryOp,
    keep_pre: bool,
    (a, la): (&Buffer, &Layout),
    (b, lb): (&Buffer, &Layout),
) -> Result<(Buffer, Option<Buffer>, Dims)> {
    if epi.relu || epi.activation.is_some() {
        return Err(Error::invalid("matmul", "matmul_activation takes an epilogue without an activation"));
    }
    for l in [la, lb] {
        l.check_rank("matmul")?;
    }
    let (batch, _, _) = check_shapes(la, lb)?;
    let total = numel(&batch) * la.shape[la.rank() - 2] * lb.shape[lb.rank() - 1];
    let dev = a.device();
    let fused = epi.output == Operands::F32 && dev.gpu_ctx().is_none_or(|g| binds_whole(g, epi, (a, b), total));
    if !fused {
        // The residual joins after the op: the product stores the values before it.
        let plain = epi.without_residual();
        let (pre, shape) = matmul_epilogue(cfg, &plain, a, la, b, lb)?;
        let wide = match epi.output {
            Operands::F32 => pre.clone(),
            Operands::F16 => super::cast::f16_to_f32(&pre, total)?,
        };
        let mut y = super::unary::unary(op, &wide, total)?;
        if let Some(r) = epi.residual {
            let l = Layout::contiguous(&shape);
            y = super::binary::binary(super::binary::BinaryOp::Add, &y, &l, r, &l)?.0;
        }
        if epi.output == Operands::F16 {
            y = super::cast::f32_to_f16(&y, total)?;
        }
        return Ok((y, keep_pre.then_some(pre), shape));
    }
    super::check_u32("matmul", total)?;
    let pre = if keep_pre { Some(Buffer::alloc(dev, total as u64 * 4)?) } else { None };
    let with_op = Epilogue { activation: Some(op), pre: pre.as_ref(), ..*epi };
    let (y, shape) = matmul_epilogue(cfg, &with_op, a, la, b, lb)?;
    Ok((y, pre, shape))
}

/// B as the strided matrix in `lb`'s last two dims, its batch dims seen
/// as `view` (from [`check_shapes`]).
fn strided_b(lb: &Layout, view: Layout) -> BOperand {
    let rb = lb.rank() - 2;
    BOperand {
        view,
        k: lb.shape[rb],
        n: lb.shape[rb + 1],
        rs: lb.strides[rb],
        cs: lb.strides[rb + 1],
        offset: lb.offset,
        conv: None,
    }
}

/// A convolution's B operand: the matrix `form` of geometry `geo`, `k` x
/// `n` per batch entry, gathered on the fly from the dense tensor `src`,
/// whose batch entry `i` (of the broadcast batch shape) starts at
/// `batch.index_of(i)` (`batch` holds the gathered batch dims, their strides
/// and the offset).
pub(crate) struct ConvOperand<'a> {
    pub src: &'a Buffer,
    pub batch: Layout,
    pub form: ConvGather,
    pub geo: ConvGeometry,
    pub k: usize,
    pub n: usize,
}

/// `a @ g` for `a` `[..batch, M, K]` and the gathered operand `g`. The
/// caller (ops::conv) has checked `g.src`'s length.
pub(crate) fn conv_matmul(
    cfg: MatmulConfig,
    epi: &Epilogue,
    a: &Buffer,
    la: &Layout,
    g: &ConvOperand,
) -> Result<(Buffer, Dims)> {
    la.check_rank("conv2d")?;
    a.check_len("conv2d", "weight", la.span(), cfg.operands.size())?;
    if epi.activation.is_some() {
        // Its values before the op would be stored relative to each piece
        // of a split convolution; ReLU (`relu`) is the convolutions' one.
        return Err(Error::invalid("conv2d", "a convolution's store applies ReLU only, not other activations"));
    }
    let (ra, k, n) = (la.rank() - 2, g.k, g.n);
    let shapes = || format!("{:?} and gathered [{:?}, {k}, {n}]", la.shape, g.batch.shape);
    if la.shape[ra + 1] != k {
        return Err(Error::invalid("conv2d", format!("inner dimensions differ for {}", shapes())));
    }
    let bshape = broadcast_shapes(&la.shape[..ra], &g.batch.shape)
        .ok_or_else(|| Error::invalid("conv2d", format!("batch dims do not broadcast for {}", shapes())))?;
    let va = Layout { shape: la.shape[..ra].into(), strides: la.strides[..ra].into(), offset: la.offset }
        .broadcast_to(&bshape)?;
    let view = g.batch.broadcast_to(&bshape)?;
    let bop = BOperand { view, k, n, rs: 0, cs: 0, offset: g.batch.offset, conv: Some((g.form, g.geo)) };
    product(cfg, epi, a, la, &va, g.src, &bop, bshape)
}

/// Records (or on the CPU backend computes) one batched product: `a` seen
/// through `la` (its batch dims broadcast as `va`), B as `bop`, stored
/// through `epi`.
#[allow(clippy::too_many_arguments)]
fn product(
    cfg: MatmulConfig,
    epi: &Epilogue,
    a: &Buffer,
    la: &Layout,
    va: &Layout,
    b: &Buffer,
    bop: &BOperand,
    batch: Dims,
) -> Result<(Buffer, Dims)> {
    let dev = a.device();
    Buffer::check_same_device("matmul", dev, &[a, b])?;
    let vb = &bop.view;
    let ra = la.rank() - 2;
    let (m, k, n) = (la.shape[ra], bop.k, bop.n);
    let batches = numel(&batch);
    let total = batches * m * n;
    for elems in [total, la.span()] {
        super::check_u32("matmul", elems)?;
    }
    epi.check("matmul", dev, (batches, m, n))?;
    if let Some(slices) = split_k(cfg, epi, (a, b), bop, (batches, m, k, n))? {
        return split_product(cfg, slices, (a, la, va), (b, bop), batch);
    }
    // The subgroup family's f32-then-cast path, unless its f32 sums could
    // not be bound whole by the cast (which does not split): then the
    // fused store, slower on llvmpipe but able to split. An f16 result with
    // a residual takes it too: the residual joins the f32 sums, and the
    // sum is rounded once.
    let cast_fits = dev.gpu_ctx().is_none_or(|g| total as u64 * 4 <= g.binding_limit());
    let f32_first = !rounds_in_store(cfg, dev) || epi.residual.is_some();
    if epi.needs_cast(n) || (epi.stores_f16(n) && f32_first && cast_fits) {
        let (sums, shape) = product(cfg, &epi.as_f32(), a, la, va, b, bop, batch)?;
        return Ok((super::cast::f32_to_f16(&sums, total)?, shape));
    }
    // The store adds a residual where one launch writes the whole f32
    // result; a product split past the binding limit (or an f16 result too
    // large for the cast) adds it after.
    if let Some(r) = epi.residual {
        let whole = dev.gpu_ctx().is_none_or(|g| binds_whole(g, epi, (a, b), total));
        if epi.output != Operands::F32 || !whole {
            let (y, shape) = product(cfg, &epi.without_residual(), a, la, va, b, bop, batch)?;
            let (y_view, r_view) = (Layout::contiguous(&shape), Layout::contiguous(&shape));
            let add = |y: &Buffer| super::binary::binary(super::binary::BinaryOp::Add, y, &y_view, r, &r_view);
            let sum = match epi.output {
                Operands::F32 => add(&y)?.0,
                Operands::F16 => super::cast::f32_to_f16(&add(&super::cast::f16_to_f32(&y, total)?)?.0, total)?,
            };
            return Ok((sum, shape));
        }
    }
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let out = Buffer::alloc_overwritten(dev, total as u64 * epi.output.size())?;
    if total == 0 {
        return Ok((out, shape));
    }
    crate::profiler::annotate_flops(2 * total as u64 * k as u64);
    run_fallible(
        dev,
        |g| {
            let family = Family::of(cfg, g, dev, "matmul")?;
            let (bshape, bstrides) = coalesce(&batch, &[&va.strides, &vb.strides]);
            let job = Job { g, cfg, family, la, bop, m, k, n, a, b, out: &out, bstrides: &bstrides };
            if binds_whole(g, epi, (a, b), total) {
                // Everything fits: one launch binding whole buffers, or the
                // spans of A and B where they go through textures.
                let mut whole = Part { dims: &bshape, level: 0, a_offset: la.offset, b_offset: bop.offset, m, k, n };
                let binds = job.texture_spans(&mut whole);
                return job.launch(epi, &whole, binds);
            }
            if epi.activation.is_some() {
                // Split launches store windows; the values before the op are
                // bound whole (matmul_activation checks first).
                return Err(Error::invalid("matmul", "an activation in the store needs the product bound whole"));
            }
            job.split(epi, &bshape, shape.as_slice())
        },
        || {
            let (ha, hb, mut ho) = (a.host(), b.host(), out.host_mut());
            let (wa, wb) = (host_f32(dev, &ha, cfg.operands)?, host_f32(dev, &hb, cfg.operands)?);
            let mut stored = HostOutput::new(dev, &mut ho, total, epi.output)?;
            let fast = dev.runs_fast_cpu();
            sums_cpu(fast, (&wa[..], la, va), (&wb[..], bop), (batches, m, k, n), stored.values());
            epi.apply_cpu(stored.values(), (m, n), fast);
            stored.finish();
            Ok(())
        },
    )?;
    Ok((out, shape))
}

/// Partial sums [`split_k`] aims a product at: what about 256 workgroups
/// of the tiled kernel's 64 x 128 tile hold (two per compute unit of a
/// large GPU: an H200 has 132), so about 32,768 threads.
const SPLIT_OUTPUTS: usize = 256 * 64 * 128;

/// The fewest values of K a slice of [`split_k`] keeps: eight of the tiled
/// kernel's staged depths.
const SPLIT_DEPTH: usize = 128;

/// How many slices of K a product runs in ([`SplitK`], [`split_product`]),
/// or `None` for one launch of the whole product.
///
/// The tiled kernel gives each thread an 8 x 8 block of outputs summed
/// over all of K, so a product with few outputs and a long K is a few
/// threads each walking that K: a Linear layer's `[256, 256]` weight
/// gradient at 2048 tokens is 8 workgroups whose threads each do what a
/// thread of the 2048^3 product does, which takes 0.63 ms on an H200 with
/// 512 workgroups busy. In slices of at least [`SPLIT_DEPTH`] it gets up to
/// [`SPLIT_OUTPUTS`] partial sums and one reduction launch. Only products
/// without an epilogue (f32 sums stored as they are), whose B is a strided
/// matrix and whose operands and partial sums each bind whole; where
/// [`k_slices`] allows.
fn split_k(
    cfg: MatmulConfig,
    epi: &Epilogue,
    (a, b): (&Buffer, &Buffer),
    bop: &BOperand,
    (batches, m, k, n): (usize, usize, usize, usize),
) -> Result<Option<usize>> {
    let dev = a.device();
    let Some(g) = dev.gpu_ctx() else { return Ok(None) };
    let plain = epi.scale.is_none()
        && epi.bias.is_none()
        && !epi.relu
        && epi.activation.is_none()
        && epi.residual.is_none()
        && epi.output == Operands::F32;
    // One more batch dim must fit the kernel's batch shape.
    let rank_fits = bop.view.rank() < crate::layout::MAX_DIMS;
    if !plain || bop.conv.is_some() || !rank_fits || m * n == 0 {
        return Ok(None);
    }
    let slices = match cfg.split_k {
        SplitK::Slices(s) => largest_divisor(k, s),
        SplitK::Auto => k_slices(cfg, dev, |cap| auto_slices((batches, m, k, n), cap))?,
    };
    let limit = g.binding_limit();
    let fits = (slices * batches * m * n) as u64 * 4 <= limit && [a, b].iter().all(|x| x.wgpu().size() <= limit);
    Ok((slices > 1 && fits).then_some(slices))
}

/// Where products are cut into slices of K, `rule`'s count for the cap
/// `WGRAD_MATMUL_SPLIT_K` sets (`usize::MAX` unset), else 1. Unset: f32
/// products of the tiled kernel on GPUs that are no CPU adapter (whose
/// few cores a whole product already fills). Set (1: never cut): on every
/// adapter and family, so tests and benches take the GPUs' path on a CPU
/// adapter's subgroup kernel. Shared by [`split_k`] and a recurrent
/// layer's per-step products (`recurrent::step_slices`).
pub(crate) fn k_slices(cfg: MatmulConfig, dev: &crate::Device, rule: impl FnOnce(usize) -> usize) -> Result<usize> {
    let Some(g) = dev.gpu_ctx() else { return Ok(1) };
    let cap = super::k_slices::cap().map_err(|e| Error::invalid("matmul", e))?;
    if cfg.operands != Operands::F32 {
        return Ok(1);
    }
    if cap.is_none() && (g.is_cpu_adapter() || Family::of(cfg, g, dev, "matmul")? != Family::Tiled) {
        return Ok(1);
    }
    Ok(rule(cap.unwrap_or(usize::MAX)))
}

/// [`split_k`]'s rule: enough slices for [`SPLIT_OUTPUTS`], each at least
/// [`SPLIT_DEPTH`] deep, at most `cap`.
fn auto_slices((batches, m, k, n): (usize, usize, usize, usize), cap: usize) -> usize {
    slices_for(k, SPLIT_OUTPUTS.div_ceil((batches * m * n).max(1)), SPLIT_DEPTH, cap)
}

/// `a @ b` as `slices` products over consecutive ranges of K, one launch
/// with an outer batch dim (`[slices, ..batch, M, N]`, strided views of
/// the same operands, no copy), then their sum over that dim in slice
/// order, one reduction launch: the same bits on every run.
fn split_product(
    cfg: MatmulConfig,
    slices: usize,
    (a, la, va): (&Buffer, &Layout, &Layout),
    (b, bop): (&Buffer, &BOperand),
    batch: Dims,
) -> Result<(Buffer, Dims)> {
    let ra = la.rank() - 2;
    let (m, n) = (la.shape[ra], bop.n);
    let total = numel(&batch) * m * n;
    let parts = partials(cfg, slices, (a, la, va), (b, bop), &batch)?;
    let (sum, _) = super::reduce::reduce(
        super::reduce::ReduceOp::Sum,
        &parts,
        &Layout::contiguous(&[slices, total]),
        &[0],
        false,
    )?;
    let mut shape = batch;
    shape.extend([m, n]);
    Ok((sum, shape))
}

/// The `[slices, ..batch, M, N]` products of `a @ b` over consecutive
/// ranges of K (`slices` divides K), one launch.
fn partials(
    cfg: MatmulConfig,
    slices: usize,
    (a, la, va): (&Buffer, &Layout, &Layout),
    (b, bop): (&Buffer, &BOperand),
    batch: &Dims,
) -> Result<Buffer> {
    let ra = la.rank() - 2;
    let depth = bop.k / slices;
    let outer = |v: &Layout, step: usize| Layout {
        shape: std::iter::once(slices).chain(v.shape.iter().copied()).collect(),
        strides: std::iter::once(step).chain(v.strides.iter().copied()).collect(),
        offset: v.offset,
    };
    let mut la_s = la.clone();
    la_s.shape[ra + 1] = depth;
    let va_s = outer(va, depth * la.strides[ra + 1]);
    let bop_s = BOperand { view: outer(&bop.view, depth * bop.rs), k: depth, ..bop.clone() };
    let batch_s: Dims = std::iter::once(slices).chain(batch.iter().copied()).collect();
    let whole = MatmulConfig { split_k: SplitK::Slices(1), ..cfg };
    Ok(product(whole, &Epilogue::default(), a, &la_s, &va_s, b, &bop_s, batch_s)?.0)
}

/// [`matmul`] as `slices` products over consecutive ranges of K, unsummed:
/// `[slices, ..batch, M, N]` in one launch (`slices` divides K; 1: the
/// product itself). For a caller that adds the slices where it reads them
/// (a recurrent cell kernel).
pub(crate) fn matmul_partials(a: &Buffer, la: &Layout, b: &Buffer, lb: &Layout, slices: usize) -> Result<Buffer> {
    if slices == 1 {
        return Ok(matmul(a, la, b, lb)?.0);
    }
    let (batch, va, vb) = check_shapes(la, lb)?;
    partials(MatmulConfig::default(), slices, (a, la, &va), (b, &strided_b(lb, vb)), &batch)
}

/// `params` followed by the recurrent cell's members (zeros outside a cell store).
fn cell_members(mut params: Params, values: [usize; 6]) -> Params {
    for (name, v) in CELL_FIELDS.iter().zip(values) {
        params = params.set_u32(name, v);
    }
    params
}

/// A deferred product's launch, rebuilt for the tail the fuser finds
/// (`gpu/tails.rs`): everything [`Job::launch`] chose but the epilogue's
/// tail. Holds no buffer (the deferred launch's handles are its inputs),
/// so the product's result is never held by it.
struct MatmulStore {
    shader: &'static str,
    /// The `_act` variant of `shader`.
    act_shader: &'static str,
    entry: &'static str,
    constants: smallvec::SmallVec<[(&'static str, f64); 32]>,
    /// The parameter block up to the epilogue's members.
    prefix: Params,
    members: Members,
    /// A, B, the bias and the residual (A's window when there is none).
    windows: [Option<Window>; 4],
    workgroups: u32,
    /// A convolution's store: no activation but the ReLU (no `_act`
    /// variant gathers).
    conv: bool,
    /// The store writes f16 (`F16_OUT`).
    f16_out: bool,
}

impl ProductStore for MatmulStore {
    fn recorded(&self) -> (&'static str, &'static str, u32) {
        (self.shader, self.entry, self.workgroups)
    }

    fn takes(&self) -> Takes {
        // A ReLU gradient's y is bound where the bias is: a gradient's
        // product has none.
        let relu_grad = !self.members.has_bias();
        if self.f16_out {
            // Rounding where the casts between the unfused steps do: an f16
            // residual, then the ReLU's gradient at an f16 y. No
            // activation: the `_act` variants store f32.
            return Takes { rounds: true, residual: true, relu_grad, ..Takes::default() };
        }
        Takes { relu: true, activation: !self.conv, residual: true, relu_grad, ..Takes::default() }
    }

    fn constants(&self) -> &[(&'static str, f64)] {
        &self.constants
    }

    fn launch(&self, tail: &Tail) -> ProductLaunch {
        let mut constants = self.constants.clone();
        switch_on(&mut constants, &[("RESIDUAL", tail.residual), ("RELU_GRAD", tail.relu_grad)]);
        let members = self.members.with_tail(tail);
        let act = members.activation();
        if let Some(op) = act {
            constants.push(("OP", op.code() as f64));
        }
        let params = cell_members(members.write(self.prefix.clone()), [0; 6]);
        let mut windows: smallvec::SmallVec<[Option<Window>; 8]> = self.windows.into_iter().collect();
        for (slot, on) in [(2, tail.relu_grad), (3, tail.residual)] {
            if on {
                windows[slot] = None;
            }
        }
        ProductLaunch {
            shader: if act.is_some() { self.act_shader } else { self.shader },
            entry: self.entry,
            constants,
            params: params.finish().into(),
            windows,
            workgroups: self.workgroups,
            inputs: 4,
            residual_slot: Some(3),
            relu_grad_slot: Some(2),
            binds_pre: act.is_some(),
        }
    }
}

/// Whether a [`cell_product`] on `kernel` runs on `dev` binding each of
/// `buffers` (every buffer its launches bind) whole: a GPU whose per-stage
/// limits hold its bindings, 8 storage buffers, or 5 storage textures and
/// 3 buffers where it reads through textures ([`cell_reads_textures`]).
pub(crate) fn cell_product_runs(kernel: MatmulKernel, dev: &crate::Device, buffers: &[&Buffer]) -> bool {
    let Some(g) = dev.gpu_ctx() else { return false };
    let l = &g.limits;
    let fits = if cell_reads_textures(kernel, dev, buffers) {
        l.max_storage_textures_per_shader_stage >= 5 && l.max_storage_buffers_per_shader_stage >= 3
    } else {
        l.max_storage_buffers_per_shader_stage >= 8
    };
    fits && buffers.iter().all(|b| b.wgpu().size() <= g.binding_limit())
}

/// Whether a [`cell_product`] on `kernel` reads its operands and inputs
/// (whole `buffers` or windows of them) through textures: then A may be a
/// view of a buffer the launch writes, and the store need not write the
/// next A ([`CellStore::next`]).
pub(crate) fn cell_reads_textures(kernel: MatmulKernel, dev: &crate::Device, buffers: &[&Buffer]) -> bool {
    dev.gpu_ctx().is_some_and(|g| {
        kernel.resolve(dev) == MatmulKernel::Subgroup
            && subgroup_kernel_fits(g)
            && g.wants_texture_operands(buffers.iter().map(|b| b.wgpu().size()))
    })
}

/// Records `a @ b` (2-D views, f32) on a GPU, on `kernel`, with an LSTM
/// step's cell in its store instead of a result ([`CellStore`]): one
/// launch, nothing allocated. The caller has checked [`cell_product_runs`] for every
/// buffer; an error when the product is not 2-D or `dev` is no GPU.
pub(crate) fn cell_product(
    kernel: MatmulKernel,
    a: &Buffer,
    la: &Layout,
    b: &Buffer,
    lb: &Layout,
    cell: CellStore,
) -> Result<()> {
    const OP: &str = "recurrent_step";
    let dev = a.device();
    let Some(g) = dev.gpu_ctx() else {
        return Err(Error::invalid(OP, "a cell in the product's store runs on a GPU only"));
    };
    let (batch, _, vb) = check_shapes(la, lb)?;
    if !batch.is_empty() {
        return Err(Error::invalid(OP, format!("expects 2-D operands, got {:?} @ {:?}", la.shape, lb.shape)));
    }
    for (buf, l) in [(a, la), (b, lb)] {
        buf.check_len(OP, "operand", l.span(), 4)?;
    }
    let (m, k, n) = (la.shape[0], la.shape[1], lb.shape[1]);
    if m * n == 0 {
        return Ok(());
    }
    crate::profiler::annotate_flops(2 * (m * n * k) as u64);
    let cfg = MatmulConfig { kernel, ..MatmulConfig::default() };
    let family = Family::of(cfg, g, dev, OP)?;
    let bop = strided_b(lb, vb);
    let (bshape, bstrides) = coalesce(&[], &[&[], &[]]);
    let out = cell.outputs[0];
    let job = Job { g, cfg, family, la, bop: &bop, m, k, n, a, b, out, bstrides: &bstrides };
    let mut whole = Part { dims: &bshape, level: 0, a_offset: la.offset, b_offset: lb.offset, m, k, n };
    let binds = Binds { cell: Some(cell), ..job.texture_spans(&mut whole) };
    job.launch(&Epilogue::default(), &whole, binds)
}

/// Whether one launch binds a product's buffers whole: A, B, the
/// epilogue's bias and residual, and an output of `total` elements stored
/// as `epi.output`, each within the binding limit (otherwise the product
/// runs in pieces, `Job::split`). The output is judged by its bytes: the
/// pool never rounds a buffer that fits the limit past it
/// (`GpuContext::backing_size`), so every caller decides the same.
fn binds_whole(g: &GpuContext, epi: &Epilogue, (a, b): (&Buffer, &Buffer), total: usize) -> bool {
    let limit = g.binding_limit();
    let epilogue = epi.bias.map(|bias| bias.values).into_iter().chain(epi.residual);
    total as u64 * epi.output.size() <= limit && [a, b].into_iter().chain(epilogue).all(|x| x.wgpu().size() <= limit)
}

/// One product as recorded on a GPU: everything a launch of it needs
/// besides the share of the work and the windows bound.
struct Job<'a> {
    g: &'a GpuContext,
    cfg: MatmulConfig,
    /// The kernel family: tiled, subgroup or matrix units (`matmul_coop.wgsl`).
    family: Family,
    la: &'a Layout,
    bop: &'a BOperand,
    m: usize,
    k: usize,
    n: usize,
    a: &'a Buffer,
    b: &'a Buffer,
    out: &'a Buffer,
    /// A's and B's strides over the coalesced batch shape.
    bstrides: &'a [Dims],
}

/// One launch's share: batch dims `dims` (the coalesced ones from `level`
/// on), operand offsets relative to their windows, and M, K and N.
struct Part<'a> {
    dims: &'a [usize],
    level: usize,
    a_offset: usize,
    b_offset: usize,
    m: usize,
    k: usize,
    n: usize,
}

/// The buffers and windows one launch binds in place of the job's whole
/// A, B, bias and output (each `None`: the job's own, whole).
#[derive(Default)]
struct Binds<'a> {
    a: Option<Window>,
    b: Option<Window>,
    bias: Option<(&'a Buffer, Option<Window>)>,
    out: Option<(&'a Buffer, Option<Window>)>,
    /// A recurrent cell stored instead of the result (`cell_product`).
    cell: Option<CellStore<'a>>,
}

impl Job<'_> {
    /// Where the operands go through textures, windows of A and B around
    /// the elements their views reach (B's unless it is a convolution's
    /// gathered image), with `part`'s offsets made relative to them; no
    /// windows elsewhere. A texture operand is copied in whole, and a
    /// recurrent layer's per-step product reads one step's rows of a
    /// whole-sequence buffer that every step writes: bound whole, the LSTM
    /// bench copied 800 MB a step (docs/history/performance-issue-11.md).
    fn texture_spans(&self, part: &mut Part) -> Binds<'static> {
        let mut binds = Binds::default();
        if !self.family.subgroup() || self.cfg.operands != Operands::F32 || part.k == 0 {
            return binds;
        }
        let (ra, bop, align) = (self.la.rank() - 2, self.bop, self.g.window_align());
        let span = |strides: &[usize], rows: (usize, usize), cols: (usize, usize)| {
            let batch = part.dims.iter().zip(strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>();
            batch + (rows.0 - 1) * rows.1 + (cols.0 - 1) * cols.1 + 1
        };
        let (la, lb) = (
            span(&self.bstrides[0], (part.m, self.la.strides[ra]), (part.k, self.la.strides[ra + 1])),
            span(&self.bstrides[1], (part.k, bop.rs), (part.n, bop.cs)),
        );
        let (aw, a_shift) = window(part.a_offset, la, 4, align);
        let (bw, b_shift) = window(part.b_offset, lb, 4, align);
        let b_spanned = bop.conv.is_none();
        let sizes = [aw.size, if b_spanned { bw.size } else { self.b.wgpu().size() }];
        if !self.g.wants_texture_operands(sizes) {
            return binds;
        }
        (binds.a, part.a_offset) = (Some(aw), part.a_offset - a_shift);
        if b_spanned {
            (binds.b, part.b_offset) = (Some(bw), part.b_offset - b_shift);
        }
        binds
    }

    /// Records one launch of the kernel over `part`, stored through `epi`.
    fn launch(&self, epi: &Epilogue, part: &Part, binds: Binds) -> Result<()> {
        let cell = binds.cell;
        let (g, bop) = (self.g, self.bop);
        let (m, k, n) = (part.m, part.k, part.n);
        let ra = self.la.rank() - 2;
        let (a_rs, a_cs, b_rs, b_cs) = (self.la.strides[ra], self.la.strides[ra + 1], bop.rs, bop.cs);
        let batches: usize = part.dims.iter().product();
        let strides = |i: usize| &self.bstrides[i][part.level..];
        // f32 operands of the subgroup kernel are read through textures.
        let textures = self.family.subgroup()
            && self.cfg.operands == Operands::F32
            && textured(g, [(self.a, binds.a), (self.b, binds.b)])
            && cell.is_none_or(|c| g.wants_texture_operands(c.inputs.map(|b| b.wgpu().size())));
        let reads = match (textures, bop.conv.is_some()) {
            (false, _) => Reads::Buffers,
            (true, false) => Reads::Textures { small: batches * m * n * k < SMALL_PRODUCT },
            (true, true) => Reads::ConvTextures,
        };
        let coop_tile = self.family.units().map(|units| coop_tile(g, units, m, n)).transpose()?;
        let (tile_m, tile_n) = match coop_tile {
            Some(t) => (t.m, t.n),
            None => tile(self.family.subgroup(), reads, m, n, batches)?,
        };
        let (tiles_m, tiles_n) = (m.div_ceil(tile_m), n.div_ceil(tile_n));
        let workgroups = u32::try_from(batches * tiles_m * tiles_n)
            .map_err(|_| Error::invalid("matmul", format!("too many tiles for one launch: {batches} x {m} x {n}")))?;
        let geo = bop.conv.map(|(_, geo)| geo);
        let conv_dims = geo
            .map_or([0; 8], |g| [g.in_h, g.in_w, g.out_h(), g.out_w(), g.pad_top, g.pad_left, g.stride_h, g.stride_w]);
        let mut params = Params::of(&PARAMS)
            .set_dims("batch_shape", part.dims)
            .set_dims("a_bstrides", strides(0))
            .set_dims("b_bstrides", strides(1))
            .set_u32("m", m)
            .set_u32("n", n)
            .set_u32("k", k)
            .set_u32("brank", part.dims.len())
            .set_u32("a_offset", part.a_offset)
            .set_u32("a_rs", a_rs)
            .set_u32("a_cs", a_cs)
            .set_u32("b_offset", part.b_offset)
            .set_u32("b_rs", b_rs)
            .set_u32("b_cs", b_cs)
            .set_u32("tiles_n", tiles_n)
            .set_u32("tiles_per_batch", tiles_m * tiles_n)
            .set_u32("workgroups", workgroups as usize);
        for (name, d) in CONV_FIELDS.iter().zip(conv_dims) {
            params = params.set_u32(name, d);
        }
        // A plain product bound whole (f32, or f16 rounded in the store)
        // waits in the fuser's run, which may merge its readers into its
        // store (`gpu/tails.rs`): its store keeps the block up to the
        // epilogue's members (`prefix`) and finishes it for the tail the
        // fuser finds.
        let plain = cell.is_none() && epi.residual.is_none() && epi.activation.is_none() && !epi.relu;
        let stores = epi.output == Operands::F32 || epi.stores_f16(n);
        let defer = plain && binds.out.is_none() && stores && g.fusion_enabled();
        let (prefix, params) = match defer {
            true => (Some(params), Params::new()),
            false => (None, cell_members(epi.params(params), cell.map_or([0; 6], |c| c.params))),
        };
        let flag = |f: bool| if f { 1.0 } else { 0.0 };
        // Inline: a product's launch sets up to ~30 constants.
        let mut constants: smallvec::SmallVec<[(&str, f64); 32]> = if self.family.subgroup() {
            let view =
                |offset: usize, strides: &[usize]| Layout { shape: part.dims.into(), strides: strides.into(), offset };
            // Texture operands take mode 3 whatever their strides: a texel
            // is fetched alone either way, and one pipeline per product form
            // instead of one per layout saves llvmpipe a JIT (matmul_subgroup.wgsl).
            let b_mode = match (bop.conv.is_some(), textures) {
                (true, _) => 0,
                (false, true) => 3,
                (false, false) => load_mode(k, n, b_rs, b_cs, &view(part.b_offset, strides(1))),
            };
            let a_mode = if textures { 3 } else { load_mode(m, k, a_rs, a_cs, &view(part.a_offset, strides(0))) };
            smallvec::smallvec![
                ("A_MODE", a_mode as f64),
                ("B_MODE", b_mode as f64),
                // Below 64 rows only the first m.div_ceil(8) row groups hold results.
                ("ROW_GROUPS", m.div_ceil(8).min(subgroup_row_groups(reads, m)) as f64),
            ]
        } else {
            // Tile loads walk the unit-stride index of each operand, so
            // plain and transposed operands both read contiguously. A
            // gathered B is contiguous along its columns for forms 1 and
            // 3 (neighbouring pixels), along its rows for form 2.
            let b_k_fast = match bop.conv {
                Some((form, _)) => form == ConvGather::ColumnsT,
                None => b_rs == 1 && b_cs != 1,
            };
            let a_k_fast = !(a_rs == 1 && a_cs != 1);
            let mut constants: smallvec::SmallVec<[_; 32]> =
                smallvec::smallvec![("A_K_FAST", flag(a_k_fast)), ("B_K_FAST", flag(b_k_fast))];
            if let (Some(units), Some(t)) = (self.family.units(), coop_tile) {
                // Whole aligned vec4 loads along the index the loaders walk
                // (load_mode 1: along rows, 2: along columns).
                let view = |offset: usize, strides: &[usize]| Layout {
                    shape: part.dims.into(),
                    strides: strides.into(),
                    offset,
                };
                let a_mode = load_mode(m, k, a_rs, a_cs, &view(part.a_offset, strides(0)));
                let b_mode = match bop.conv {
                    Some(_) => 0,
                    None => load_mode(k, n, b_rs, b_cs, &view(part.b_offset, strides(1))),
                };
                constants.extend([
                    ("A_VEC", flag(a_mode == if a_k_fast { 1 } else { 2 })),
                    ("B_VEC", flag(b_mode == if b_k_fast { 2 } else { 1 })),
                    ("SG_M", t.subgroups().0 as f64),
                    ("SG_N", t.subgroups().1 as f64),
                    ("FN", t.frags_n as f64),
                    ("SG_SIZE", units.subgroup_size as f64),
                    ("PREFETCH", flag(coop_prefetch())),
                ]);
            }
            constants
        };
        constants.extend([("TILE_M", tile_m as f64), ("TILE_N", tile_n as f64)]);
        constants.extend(epi.constants(n));
        if let Some((form, g)) = bop.conv {
            constants.push(("B_CONV", form.code()));
            constants.extend(g.gather_constants(form == ConvGather::Adjoint));
        }
        let (mut shader, entry) = self.cfg.shader(g, self.family)?;
        if textures {
            shader = "matmul_subgroup_tex";
        }
        let act_shader = crate::kernels::matmul::act_variant(shader);
        if let Some(act) = epi.activation_constants() {
            shader = act_shader;
            constants.push(act);
        }
        if let Some(c) = cell {
            shader = match (self.family.subgroup(), textures) {
                (true, true) => "matmul_subgroup_cell_tex",
                (true, false) => "matmul_subgroup_cell",
                (false, _) => "matmul_cell",
            };
            if !c.next && !textures {
                return Err(Error::invalid(
                    "recurrent_step",
                    "a cell store that does not write the next A needs A read through a texture",
                ));
            }
            constants.extend([
                ("CELL", if c.backward { 2.0 } else { 1.0 }),
                ("NEXT", flag(c.next)),
                ("CELL_BIAS", flag(c.bias)),
            ]);
        }
        let launch = |inputs: &[&wgpu::Buffer], outputs: &[&wgpu::Buffer], windows: &[Option<Window>]| {
            let l =
                Launch { shader, entry, constants: &constants, params: params.finish(), inputs, outputs, workgroups };
            super::launch::dispatch_launch(g, &l, windows)
        };
        if let Some(c) = cell {
            let [i3, i4, i5] = c.inputs.map(Buffer::wgpu);
            let [o6, o7, o8] = c.outputs.map(Buffer::wgpu);
            return launch(&[self.a.wgpu(), self.b.wgpu(), i3, i4, i5], &[o6, o7, o8], &[binds.a, binds.b]);
        }
        // Without a bias the kernel never reads binding 3, nor binding 4
        // without a residual: A (its window) fills them.
        let (bias, bias_window) = match (binds.bias, epi.bias) {
            (Some(b), _) => b,
            (None, Some(b)) => (b.values, None),
            (None, None) => (self.a, binds.a),
        };
        // A residual is indexed like the whole output (product() keeps it
        // away from split launches, which store windows).
        debug_assert!(epi.residual.is_none() || binds.out.is_none());
        let (residual, residual_window) = epi.residual.map_or((self.a, binds.a), |r| (r, None));
        let (out, out_window) = binds.out.unwrap_or((self.out, None));
        let inputs = [self.a.wgpu(), self.b.wgpu(), bias.wgpu(), residual.wgpu()];
        if epi.activation.is_some() {
            // The `_act` variants also write the values before the op
            // (binding 6); without `pre` they never do, and C fills it.
            // Activations run only where one launch binds C whole.
            debug_assert!(binds.out.is_none());
            let pre = epi.pre.unwrap_or(out);
            let windows = [binds.a, binds.b, bias_window, residual_window, None, None];
            return launch(&inputs, &[out.wgpu(), pre.wgpu()], &windows);
        }
        if let Some(prefix) = prefix {
            let store = MatmulStore {
                shader,
                act_shader,
                entry,
                constants,
                prefix,
                members: epi.members(),
                windows: [binds.a, binds.b, bias_window, residual_window],
                workgroups,
                conv: bop.conv.is_some(),
                f16_out: epi.stores_f16(n),
            };
            let elements = batches * m * n;
            return super::launch::dispatch_product(g, &[self.a, self.b, bias], out, elements, Box::new(store));
        }
        let windows = [binds.a, binds.b, bias_window, residual_window, out_window];
        launch(&inputs, &[out.wgpu()], &windows)
    }

    /// Records the product as several launches, each binding at most the
    /// binding limit (see `matmul_split.rs`).
    fn split(&self, epi: &Epilogue, bshape: &[usize], shape: &[usize]) -> Result<()> {
        let (g, n) = (self.g, self.n);
        let too_large = |why: &str| Error::LimitExceeded {
            what: format!("matmul of shape {shape:?}: {why}"),
            needed: self.a.len_bytes().max(self.b.len_bytes()).max(self.out.len_bytes()),
            limit: "max_storage_buffer_binding_size",
            allowed: g.binding_limit(),
        };
        if self.bop.conv.is_some() {
            return Err(Error::LimitExceeded {
                what: format!("conv2d (its implicit-GEMM product of shape {shape:?}; convolutions are not split: lower the batch size)"),
                needed: self.b.len_bytes().max(self.out.len_bytes()),
                limit: "max_storage_buffer_binding_size",
                allowed: g.binding_limit(),
            });
        }
        if epi.bias.is_some_and(|b| b.groups > 1) {
            return Err(too_large("a product with a grouped bias is not split"));
        }
        let ra = self.la.rank() - 2;
        let esize = self.cfg.operands.size();
        let align = g.window_align();
        let planner = Planner {
            dims: bshape.to_vec(),
            a_strides: self.bstrides[0].to_vec(),
            b_strides: self.bstrides[1].to_vec(),
            a_offset: self.la.offset,
            b_offset: self.bop.offset,
            a_rs: self.la.strides[ra],
            a_cs: self.la.strides[ra + 1],
            b_rs: self.bop.rs,
            b_cs: self.bop.cs,
            m: self.m,
            k: self.k,
            n,
            operand_bytes: esize,
            out_bytes: epi.output.size(),
            bias_columns: match epi.bias {
                Some(b) if b.axis == BiasAxis::Columns => 4,
                _ => 0,
            },
            bias_rows: match epi.bias {
                Some(b) if b.axis == BiasAxis::Rows => 4,
                _ => 0,
            },
            limit: g.binding_limit(),
            align,
        };
        for piece in planner.plan(&format!("matmul of shape {shape:?}"))? {
            self.piece(epi, &planner, &piece)?;
        }
        Ok(())
    }

    /// Records one piece of a split product: its launch (one per K range,
    /// their partial sums added), into the output directly when its rows
    /// are whole and start at an aligned byte, else into a scratch buffer
    /// copied there (row by row for a range of columns).
    fn piece(&self, epi: &Epilogue, p: &Planner, q: &Piece) -> Result<()> {
        let (g, n) = (self.g, self.n);
        let dev = self.a.device();
        let entries: usize = q.dims.iter().product::<usize>().max(1);
        let (rows, cols) = (q.rows.len(), q.cols.len());
        let count = entries * rows * cols;
        let first = q.entry * self.m * n + q.rows.start * n + q.cols.start;
        let (obytes, esize) = (epi.output.size(), self.cfg.operands.size());
        let batch_parts = |s: &[usize]| q.dims.iter().zip(&s[q.level..]).map(|(&d, &s)| (d, s)).collect::<Vec<_>>();
        // The bias of this piece's rows or columns: the kernel reads it from
        // the start of its binding, so a piece starting at an unaligned
        // byte gets a copy.
        let bias_part;
        let bias: Option<(&Buffer, Option<Window>)> = match epi.bias {
            Some(b) => {
                let (start, len) = match b.axis {
                    BiasAxis::Rows => (q.rows.start, rows),
                    BiasAxis::Columns => (q.cols.start, cols),
                };
                if (start as u64 * 4).is_multiple_of(p.align) {
                    Some((b.values, Some(window(start, len, 4, p.align).0)))
                } else {
                    bias_part = Buffer::alloc(dev, len as u64 * 4)?;
                    g.copy_range(b.values.wgpu(), start as u64 * 4, bias_part.wgpu(), 0, len as u64 * 4)?;
                    Some((&bias_part, None))
                }
            }
            None => None,
        };
        let split_k = q.ks.len() > 1;
        let whole_rows = cols == n;
        let mut partials = Vec::with_capacity(q.ks.len());
        for (i, ks) in q.ks.iter().enumerate() {
            let a0 = q.a + q.rows.start * p.a_rs + ks.start * p.a_cs;
            let b0 = q.b + ks.start * p.b_rs + q.cols.start * p.b_cs;
            let mut a_parts = batch_parts(&p.a_strides);
            a_parts.extend([(rows, p.a_rs), (ks.len(), p.a_cs)]);
            let mut b_parts = batch_parts(&p.b_strides);
            b_parts.extend([(ks.len(), p.b_rs), (cols, p.b_cs)]);
            let span = |parts: &[(usize, usize)]| parts.iter().map(|&(d, s)| (d - 1) * s).sum::<usize>() + 1;
            let (aw, a_shift) = window(a0, span(&a_parts), esize, p.align);
            let (bw, b_shift) = window(b0, span(&b_parts), esize, p.align);
            // Split-K partials are f32 sums, each scaled (the scale is
            // linear); the bias goes in once, with the first. The ReLU, like
            // the rounding, waits for the whole sum.
            let step_epi = if split_k {
                let bias = if i == 0 { epi.bias } else { None };
                Epilogue { bias, relu: false, output: Operands::F32, ..*epi }
            } else {
                *epi
            };
            let step_bytes = count as u64 * step_epi.output.size();
            let direct = !split_k && whole_rows && (first as u64 * obytes).is_multiple_of(p.align);
            let scratch;
            let out = if direct {
                (self.out, Some(Window { offset: first as u64 * obytes, size: step_bytes.next_multiple_of(16) }))
            } else {
                scratch = Buffer::alloc(dev, step_bytes)?;
                (&scratch, None)
            };
            let binds = Binds {
                a: Some(aw),
                b: Some(bw),
                bias: if step_epi.bias.is_some() { bias } else { None },
                out: Some(out),
                cell: None,
            };
            let part = Part {
                dims: &q.dims,
                level: q.level,
                a_offset: a0 - a_shift,
                b_offset: b0 - b_shift,
                m: rows,
                k: ks.len(),
                n: cols,
            };
            self.launch(&step_epi, &part, binds)?;
            if !direct {
                partials.push(out.0.clone());
            }
        }
        let Some(mut sum) = partials.first().cloned() else { return Ok(()) };
        let flat = Layout::contiguous(&[count]);
        for part in &partials[1..] {
            sum = super::binary::binary(super::binary::BinaryOp::Add, &sum, &flat, part, &flat)?.0;
        }
        if split_k && epi.relu {
            sum = super::unary::unary(super::unary::UnaryOp::Relu, &sum, count)?;
        }
        if split_k && epi.output == Operands::F16 {
            sum = super::cast::f32_to_f16(&sum, count)?;
        }
        if whole_rows {
            return g.copy_range(sum.wgpu(), 0, self.out.wgpu(), first as u64 * obytes, count as u64 * obytes);
        }
        for r in 0..rows {
            let src = (r * cols) as u64 * obytes;
            let dst = (first + r * n) as u64 * obytes;
            g.copy_range(sum.wgpu(), src, self.out.wgpu(), dst, cols as u64 * obytes)?;
        }
        Ok(())
    }
}

/// The kernels' sums on the host: `xo` (`batches` entries of `m x n`) gets
/// `a @ b` for each batch entry, by the reference twin ([`twin::sums`]) or,
/// when `fast`, the fast paths (the same sgemm, with convolution operands
/// gathered into reused scratch or their products batched per core).
fn sums_cpu(
    fast: bool,
    (xa, la, va): (&[f32], &Layout, &Layout),
    (xb, bop): (&[f32], &BOperand),
    (batches, m, k, n): (usize, usize, usize, usize),
    xo: &mut [f32],
) {
    if !fast {
        let mul = |dims, (a, a_rs, a_cs): twin::View, (b, b_rs, b_cs): twin::View, c: &mut [f32]| {
            gemm(dims, 1.0, Mat { data: a, rs: a_rs, cs: a_cs }, Mat { data: b, rs: b_rs, cs: b_cs }, 0.0, c, n)
        };
        return twin::sums((xa, la, va), (xb, bop), (m, k, n), xo, mul);
    }
    let vb = &bop.view;
    let ra = la.rank() - 2;
    let (a_rs, a_cs, b_rs, b_cs) = (la.strides[ra], la.strides[ra + 1], bop.rs, bop.cs);
    if k == 0 {
        // An empty sum; the operands may hold no elements at all.
        xo.fill(0.0);
        return;
    }
    let shared_a = va.shape.iter().zip(&va.strides).all(|(&d, &st)| st == 0 || d == 1);
    // A stride-1 convolution reads its source in place (no gather).
    let implicit = match bop.conv {
        Some((form, geo)) if shared_a && batches > 0 => crate::cpu::conv::Implicit::new(form, &geo, (m, k, n)),
        _ => None,
    };
    if let Some(imp) = implicit {
        let a = crate::cpu::gemm_packed_a::PackedA::new((m, k), (&xa[va.offset..], a_rs, a_cs));
        return crate::cpu::conv::product_implicit(&imp, &a, xb, |i| vb.index_of(i), xo);
    }
    match bop.conv {
        // Only when at least two entries fit side by side in the
        // scratch; larger products are wide enough on their own.
        // Small products (ResNet-20's: 2.4M multiply-adds each) run
        // one entry per core; a single one is too small to thread.
        Some((form, geo)) if batches > 1 && m * k * n <= crate::cpu::conv::PER_ENTRY_MAX_MACS => {
            let (a_at, b_at) = (|i| va.index_of(i), |i| vb.index_of(i));
            let a_view = (xa, a_rs, a_cs);
            return crate::cpu::conv::product_per_entry(form, &geo, a_view, a_at, (m, k, n), xb, b_at, xo);
        }
        Some((form, geo))
            if shared_a
                && batches > 1
                && form != ConvGather::ColumnsT
                && 2 * k * n <= crate::cpu::conv::SIDE_BY_SIDE_FLOATS =>
        {
            let a_view = (&xa[va.offset..], a_rs, a_cs);
            let entry = |i| vb.index_of(i);
            return crate::cpu::conv::product_shared_a(form, &geo, a_view, (m, k, n), xb, entry, xo);
        }
        _ => {}
    }
    // A gathered B is materialised per batch entry into one reused scratch.
    let mut scratch = Vec::new();
    for (i, c) in xo.chunks_exact_mut(m * n).enumerate() {
        let (oa, ob) = (va.index_of(i), vb.index_of(i));
        // A gathered B is k x n in the scratch; a plain one is read in place.
        let b = match bop.conv {
            Some((form, geo)) => {
                scratch.resize(k * n, 0.0);
                let (rs, cs) = crate::cpu::conv::gather(form, &geo, &xb[ob..], k, n, &mut scratch);
                Mat { data: &scratch, rs, cs }
            }
            None => Mat { data: &xb[ob..], rs: b_rs, cs: b_cs },
        };
        gemm((m, k, n), 1.0, Mat { data: &xa[oa..], rs: a_rs, cs: a_cs }, b, 0.0, c, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tiled kernel's products with few outputs and a long K take
    /// slices (the weight gradients of the sequence benches' Linear layers
    /// and of the LSTM's W_hh at 2048 tokens), products with enough
    /// outputs or a short K none, and a cap bounds the count. Fails when
    /// the rule changes (the docs quote its counts).
    #[test]
    fn the_rule_splits_products_with_few_outputs_and_a_long_k() {
        let cases = [
            // (batches, m, k, n), cap -> slices
            (((1, 256, 2048, 256), usize::MAX), 16),
            (((1, 768, 2048, 256), usize::MAX), 16),
            (((1, 1024, 2048, 256), usize::MAX), 8),
            (((1, 256, 2048, 1024), usize::MAX), 8),
            (((1, 768, 2048, 2304), usize::MAX), 2),
            (((1, 2048, 2048, 2048), usize::MAX), 1),
            (((1, 256, 96, 256), usize::MAX), 1),
            (((16, 256, 128, 256), usize::MAX), 1),
            (((1, 256, 2048, 256), 4), 4),
            (((1, 256, 2048, 256), 1), 1),
        ];
        for (((b, m, k, n), cap), want) in cases {
            assert_eq!(auto_slices((b, m, k, n), cap), want, "{b} x {m} x {k} x {n}, cap {cap}");
        }
    }

    /// The matrix-unit kernel's staging constants, which the host's tile
    /// check (`coop_tile`) counts with, are the shader's.
    #[test]
    fn host_coop_constants_are_the_shaders() {
        for coop in ["matmul_coop", "matmul_coop8"] {
            let constant = |c: &str| crate::shaders::u32_constant(coop, c);
            assert_eq!(
                (constant("CK"), constant("A_STRIDE"), constant("MAX_SLOTS")),
                (COOP_DEPTH, COOP_A_STRIDE, COOP_MAX_SLOTS),
                "{coop}"
            );
        }
    }

    /// The shaders' default tiles are 64 x 64, and every tile the host picks
    /// fits the kernels: whole register blocks, loads that divide among the
    /// threads, workgroup memory within WebGPU's 16 KiB, and for the subgroup
    /// kernel its 64-column (32 for narrow products), 8-rows-per-group shape.
    #[test]
    fn host_tiles_fit_the_shaders() {
        for name in ["matmul", "matmul_subgroup"] {
            let src = crate::shaders::source(name);
            let module = naga::front::wgsl::parse_str(&src).expect("matmul shaders parse");
            let default = |c: &str| {
                let (_, o) = module.overrides.iter().find(|(_, o)| o.name.as_deref() == Some(c)).expect(c);
                match module.global_expressions[o.init.expect("a default")] {
                    naga::Expression::Literal(naga::Literal::U32(v)) => v as usize,
                    ref e => panic!("{c} is not a u32 literal: {e:?}"),
                }
            };
            assert_eq!((default("TILE_M"), default("TILE_N")), (64, 64), "{name}");
            let constant = |c: &str| crate::shaders::u32_constant(name, c);
            if name == "matmul_subgroup" {
                assert_eq!(constant("LANES"), SUBGROUP_LANES as usize);
            }
            if name == "matmul" {
                assert_eq!((constant("TM"), constant("TN"), constant("BK")), (TILED_BLOCK, TILED_BLOCK, TILED_BK));
            }
            for (m, n) in [1, 16, 17, 32, 33, 64, 1000].into_iter().flat_map(|m| [(m, 1), (m, 64), (m, 65), (m, 4096)])
            {
                let sub = name == "matmul_subgroup";
                let textures = [Reads::Textures { small: false }, Reads::Textures { small: true }];
                for reads in [Reads::Buffers, Reads::ConvTextures].into_iter().chain(textures) {
                    let (tile_m, tile_n) = tile(sub, reads, m, n, 1).unwrap();
                    if sub {
                        let groups = subgroup_row_groups(reads, m);
                        let width = if n <= 32 && reads == Reads::Buffers { 32 } else { 64 };
                        assert!(tile_n == width && tile_m % 8 == 0 && tile_m / 8 <= groups, "{m} x {n}");
                        assert!(groups <= 8, "the shader has 8 row groups at most");
                    } else {
                        assert!(tiled_fits(tile_m, tile_n), "{m} x {n}: {tile_m} x {tile_n}");
                    }
                }
                let (tile_m, tile_n) = tile(sub, Reads::Buffers, m, n, 1).unwrap();
                if sub {
                    assert_eq!(tile_n, if n <= 32 { 32 } else { 64 }, "{m} x {n}");
                } else {
                    assert!(tiled_fits(tile_m, tile_n), "{m} x {n}: {tile_m} x {tile_n}");
                }
            }
        }
        // The tiles worth trying on big GPUs fit; odd ones do not.
        for (m, n) in [(128, 128), (64, 128), (128, 64), (16, 128)] {
            assert!(tiled_fits(m, n), "{m} x {n}");
        }
        for (m, n) in [(256, 128), (8, 8), (48, 64), (64, 20)] {
            assert!(!tiled_fits(m, n), "{m} x {n}");
        }
    }

    /// Launches with few workgroups take smaller tiles down to 32 x 64,
    /// each one the kernel can run; with no minimum the shape rule stands.
    #[test]
    fn few_workgroups_shrink_the_tile() {
        for (m, n) in [(16, 1024), (32, 1024), (64, 64), (256, 1024), (2048, 2048)] {
            let by_shape = tiled_tile(m, n, 1, 0);
            assert_eq!(tiled_tile(m, n, 1 << 20, 4096), by_shape, "{m} x {n}: enough workgroups");
            let small = tiled_tile(m, n, 1, usize::MAX);
            assert_eq!(small, (32, 64), "{m} x {n}");
            for min in [0, 64, 512, 4096] {
                let t = tiled_tile(m, n, 4, min);
                assert!(tiled_fits(t.0, t.1), "{m} x {n}, min {min}: {t:?}");
                let count = |t: (usize, usize)| 4 * m.div_ceil(t.0) * n.div_ceil(t.1);
                assert!(count(t) >= min || t == small, "{m} x {n}, min {min}: {t:?} stopped early");
            }
        }
        // An LSTM step's [32 x 1024] gate product: 8 workgroups on 32 x 128
        // tiles, 16 on 32 x 64.
        assert_eq!(tiled_tile(32, 1024, 1, 0), (32, 128));
        assert_eq!(tiled_tile(32, 1024, 1, 16), (32, 64));
        assert_eq!(tiled_tile(2048, 2048, 1, 512), (64, 128));
        assert_eq!(tiled_tile(2048, 2048, 1, 1024), (64, 64));
    }

    /// With texture operands (CPU adapters) a model's convolutions with
    /// 16, 32 and 64 output channels take the same tile, so they share
    /// pipelines (a cold first step is their compile time), as do narrow
    /// and wide products; large plain products keep 32-row tiles.
    #[test]
    fn texture_products_share_tiles_across_channel_counts() {
        let rows = |reads, m: usize| 8 * m.div_ceil(8).min(subgroup_row_groups(reads, m));
        for m in [16, 32, 64] {
            assert_eq!(rows(Reads::ConvTextures, m), 16, "{m} output channels");
            assert_eq!(rows(Reads::Textures { small: true }, m), 16, "{m} rows");
        }
        assert_eq!(rows(Reads::Textures { small: false }, 32), 32);
        for reads in [Reads::ConvTextures, Reads::Textures { small: true }, Reads::Textures { small: false }] {
            assert_eq!(tile(true, reads, 16, 9, 1).unwrap().1, 64, "{reads:?}");
        }
        assert_eq!(tile(true, Reads::Buffers, 16, 9, 1).unwrap().1, 32);
    }

    #[test]
    fn load_modes_follow_strides_and_alignment() {
        let batch = |offset, strides: &[usize]| Layout {
            shape: Dims::filled(2, strides.len()),
            strides: strides.into(),
            offset,
        };
        let plain = batch(0, &[]);
        assert_eq!(load_mode(5, 8, 8, 1, &plain), 1); // row-major, rows 32 bytes apart
        assert_eq!(load_mode(8, 5, 1, 8, &plain), 2); // transposed
        assert_eq!(load_mode(5, 7, 7, 1, &plain), 0); // rows 28 bytes apart
        assert_eq!(load_mode(1, 7, 7, 1, &plain), 1); // one row: its stride is irrelevant
        assert_eq!(load_mode(5, 8, 8, 1, &batch(2, &[])), 0); // misaligned offset
        assert_eq!(load_mode(5, 8, 8, 1, &batch(0, &[40, 0])), 1);
        assert_eq!(load_mode(5, 8, 8, 1, &batch(0, &[42])), 0); // misaligned batch stride
                                                                // One batch entry: its stride is irrelevant (a plain 2-D product).
        let single = Layout { shape: Dims::from([1]), strides: Dims::from([1]), offset: 0 };
        assert_eq!(load_mode(5, 8, 8, 1, &single), 1);
        assert_eq!(load_mode(8, 5, 1, 8, &single), 2);
        assert_eq!(load_mode(5, 8, 16, 2, &plain), 0); // no unit stride
    }

    #[test]
    fn shape_errors_name_both_shapes() {
        let c = crate::Device::cpu();
        let x = Buffer::from_f32(&c, &[0.0; 24]).unwrap();
        let l = Layout::contiguous;
        for (sa, sb) in [(&[2, 3][..], &[4, 2][..]), (&[3][..], &[3, 1][..]), (&[2, 1, 3][..], &[3, 3, 1][..])] {
            let msg = matmul(&x, &l(sa), &x, &l(sb)).unwrap_err().to_string();
            assert!(msg.contains(&format!("{sa:?}")) && msg.contains(&format!("{sb:?}")), "{msg}");
        }
    }
}

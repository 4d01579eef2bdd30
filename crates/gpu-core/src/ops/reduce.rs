//! Reductions over any set of axes of a strided view (`shaders/reduce.wgsl`):
//! sum, mean, max, min, argmax, argmin and variance, with PyTorch's semantics.
//!
//! The GPU kernel gives each output element one workgroup whose threads
//! combine their partial results with a fixed tree, so results are
//! deterministic run to run. The CPU twin accumulates sums in f64, making it
//! the more exact of the two and a fair oracle for the kernel.

pub use super::operands::Operands;
use super::operands::{host_f32, load_x_shader};
use super::{dispatch_fusable, groups, run_fallible, Kind, Params, ParamsDecl};
use crate::gpu::fusion::{Access, Fusable, Node};
use crate::gpu::Launch;
use crate::kernels::reduce::reduce_blocks;
pub use crate::kernels::reduce::ReduceOp;
use crate::layout::Dims;
use crate::layout::{coalesce, numel, Layout};
use crate::{Buffer, Error, Result};

/// `reduce.wgsl`'s uniform block.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "reduce",
    fields: &[
        ("kept_shape", Kind::Dims),
        ("kept_strides", Kind::Dims),
        ("red_shape", Kind::Dims),
        ("red_strides", Kind::Dims),
        ("n_out", Kind::U32),
        ("m", Kind::U32),
        ("offset", Kind::U32),
        ("dof", Kind::F32),
        ("chunk", Kind::U32),
        ("chunks", Kind::U32),
    ],
};

/// Threads per workgroup of the reduce kernel (its `WG` override; a power of
/// two) when each output folds more than this many elements.
const LARGE_WG: usize = 256;
/// Reductions this short always run one thread per output (`serial` entry).
const SERIAL_MAX_SHORT: usize = 16;
/// With at least this many outputs, reductions up to `SERIAL_MAX_LONG`
/// elements also run one thread per output: enough threads to fill a device.
const SERIAL_MIN_OUTPUTS: usize = 4096;
/// See `SERIAL_MIN_OUTPUTS`.
const SERIAL_MAX_LONG: usize = 4096;
/// Outputs along the unit-stride axis run one thread each from this many
/// outputs on (enough threads for a CPU adapter or a GPU's few SMs).
const SERIAL_MIN_COLUMNS: usize = 128;
/// Rows one thread sums in the first level of a long column sum (a bias
/// gradient over thousands of rows): the partial sums of each 64-row chunk
/// are summed by a second, short reduction, so a `[2048, 256]` column sum
/// runs on 8,192 threads instead of 256 walking 2,048 rows each.
const COLUMN_CHUNK: usize = 64;
/// Elements one workgroup folds in the first launch of a long sum or mean
/// over fewer than `FEW_OUTPUTS` outputs (a loss's mean over a whole
/// tensor): a `[64, 32, 256]` mean runs on 64 workgroups instead of one,
/// and a second launch adds their partial sums.
const ROW_CHUNK: usize = 8192;
/// See `ROW_CHUNK`.
const FEW_OUTPUTS: usize = 64;
/// Threads per workgroup for short reductions: one warp/wavefront, the
/// smallest group that keeps hardware lanes busy. Only two sizes, so only two
/// pipelines per op get compiled.
const SMALL_WG: usize = 32;

/// Reduces the view `layout` of `x` over `axes` (any set, in any order; empty
/// means all axes, like PyTorch's `dim=None`). Returns a contiguous buffer —
/// f32, or u32 for ArgMax/ArgMin — and its shape: the kept dims in order, with
/// the reduced ones left in place as size 1 when `keepdim`.
///
/// ArgMax/ArgMin index the reduced block flattened row-major over the reduced
/// axes in increasing axis order; for one axis that is the index along it, as
/// `torch.argmax(x, dim)`.
///
/// Over a zero-size reduction Sum gives 0, Mean and Var NaN, and the
/// selecting ops an error, as in PyTorch.
pub fn reduce(op: ReduceOp, x: &Buffer, layout: &Layout, axes: &[usize], keepdim: bool) -> Result<(Buffer, Dims)> {
    reduce_io(op, x, Operands::F32, layout, axes, keepdim)
}

/// [`reduce`] of a view of `x` stored as `io`: with [`Operands::F16`] `x`
/// is packed f16 ([`Buffer::from_f16`](crate::Buffer::from_f16)'s layout;
/// `layout` counts elements, i.e. halves), widened exactly as it is loaded.
/// The arithmetic and the result stay f32 (u32 for ArgMax/ArgMin), so the
/// result equals [`reduce`] of the widened values.
pub fn reduce_io(
    op: ReduceOp,
    x: &Buffer,
    io: Operands,
    layout: &Layout,
    axes: &[usize],
    keepdim: bool,
) -> Result<(Buffer, Dims)> {
    let name = op.name();
    let rank = layout.rank();
    let mut reduced = vec![axes.is_empty(); rank];
    for &a in axes {
        if a >= rank || reduced[a] {
            return Err(Error::invalid(
                name,
                format!("axes {axes:?} must be distinct and below the rank of shape {:?}", layout.shape),
            ));
        }
        reduced[a] = true;
    }
    layout.check_rank(name)?;
    x.check_len(name, "input", layout.span(), io.size())?;

    let pick = |want: bool| -> (Dims, Dims) {
        (0..rank).filter(|&d| reduced[d] == want).map(|d| (layout.shape[d], layout.strides[d])).unzip()
    };
    let (kept_shape, kept_strides) = pick(false);
    let (red_shape, red_strides) = pick(true);
    let out_shape: Dims = if keepdim {
        (0..rank).map(|d| if reduced[d] { 1 } else { layout.shape[d] }).collect()
    } else {
        kept_shape.clone()
    };
    let (n_out, m) = (numel(&kept_shape), numel(&red_shape));
    let dev = x.device();

    if m == 0 {
        if op.selects() {
            return Err(Error::invalid(
                name,
                format!("cannot reduce over zero-size axes {axes:?} of shape {:?} (no element to pick)", layout.shape),
            ));
        }
        let value = if op == ReduceOp::Sum { 0.0 } else { f32::NAN };
        return Ok((super::fill::fill(dev, n_out, value)?, out_shape));
    }
    // A view past the binding limit: sums split into sub-views that fit;
    // other reductions bind a window of the view, or fail naming the op.
    let window = match dev.gpu_ctx() {
        Some(g) if x.len_bytes() > g.binding_limit() => {
            let (limit, align) = (g.binding_limit(), g.window_align());
            if op == ReduceOp::Sum {
                let piece = |view: &Layout, axes: &[usize]| reduce_io(ReduceOp::Sum, x, io, view, axes, true);
                if let Some(sum) = super::reduce_split::split_sum(x, io, layout, &reduced, (limit, align), piece) {
                    return Ok((sum?, out_shape));
                }
            }
            if super::reduce_split::view_bytes(layout, io, align) > limit {
                return Err(Error::LimitExceeded {
                    what: format!(
                        "{name} over a view of shape {:?} (only sums over a reduced axis split)",
                        layout.shape
                    ),
                    needed: (layout.span() - layout.offset) as u64 * io.size(),
                    limit: "max_storage_buffer_binding_size",
                    allowed: limit,
                });
            }
            let (w, shift) = crate::gpu::window::window(layout.offset, layout.span() - layout.offset, io.size(), align);
            Some((w, shift))
        }
        _ => None,
    };
    // Small reductions get small workgroups: with one workgroup per output,
    // 256 threads for 7 elements would leave 249 of them idle.
    let wg = if m > LARGE_WG { LARGE_WG } else { SMALL_WG };
    // Many outputs of few elements each: one thread per output instead.
    // Also when the outputs run along the input's unit-stride axis (a bias
    // gradient: summing [rows, C] over rows): neighbouring threads then read
    // neighbouring addresses, while a workgroup per output would read one
    // element per row at a stride of C (about 10x slower on lavapipe).
    let columns = kept_strides.last() == Some(&1) && n_out >= SERIAL_MIN_COLUMNS;
    // On CPU adapters a workgroup per output is slow whatever its length,
    // as for the row kernels: from as many outputs as they need, each output
    // takes a thread however long it is (`[1024, 676]` summed over rows:
    // 5.9 -> 0.5 ms, a 64-channel bias gradient 0.6 -> 0.4 ms;
    // docs/performance.md). Fewer outputs keep the workgroups, which spread
    // over the host's cores.
    let serial = m <= SERIAL_MAX_SHORT
        || ((n_out >= SERIAL_MIN_OUTPUTS || columns) && m <= SERIAL_MAX_LONG)
        || dev.gpu_ctx().is_some_and(|g| super::rows::thread_per_row(g, n_out));
    // The kernel's loop index j steps by wg past m, and offsets are u32.
    super::check_u32(name, layout.span().max(m + wg))?;

    // Long column sums, and long sums and means over few outputs, on a GPU:
    // chunk partials here (a mean's each divided by m), their sum below.
    let sums = matches!(op, ReduceOp::Sum | ReduceOp::Mean) && dev.is_gpu();
    let chunk = if serial && columns && op == ReduceOp::Sum && m > 2 * COLUMN_CHUNK && dev.is_gpu() {
        COLUMN_CHUNK
    } else if !serial && sums && n_out < FEW_OUTPUTS && m > 2 * ROW_CHUNK {
        ROW_CHUNK
    } else {
        m
    };
    let chunks = m.div_ceil(chunk);
    let out = Buffer::alloc(dev, (chunks * n_out) as u64 * 4)?;
    run_fallible(
        dev,
        |g| {
            let (ks, kst) = coalesce(&kept_shape, &[&kept_strides]);
            let (rs, rst) = coalesce(&red_shape, &[&red_strides]);
            let dof = m.saturating_sub(match op {
                ReduceOp::Var { correction } => correction,
                _ => 0,
            });
            let params = Params::of(&PARAMS)
                .set_dims("kept_shape", &ks)
                .set_dims("kept_strides", &kst[0])
                .set_dims("red_shape", &rs)
                .set_dims("red_strides", &rst[0])
                .set_u32("n_out", n_out)
                .set_u32("m", m)
                .set_u32("offset", layout.offset - window.map_or(0, |(_, shift)| shift))
                .set_f32("dof", dof as f32)
                .set_u32("chunk", chunk)
                .set_u32("chunks", chunks);
            let shader = load_x_shader(g, ["reduce", "reduce_f16", "reduce_f16_native"], io, name, x)?;
            let constants = [
                ("OP", op.code() as f64),
                // The serial entry has no workgroup of WG threads: one key for it.
                ("WG", if serial { SMALL_WG } else { wg } as f64),
                ("KEPT_RANK", ks.len() as f64),
                ("RED_RANK", rs.len() as f64),
            ];
            let (entry, workgroups) =
                if serial { ("serial", groups(chunks * n_out, 64)) } else { ("main", groups(chunks * n_out, 1)) };
            // A sum or mean over the trailing dims of a dense f32 tensor (a
            // loss's mean, a row sum) in 256-thread workgroups goes through
            // the fuser, which can evaluate the elementwise tree producing x
            // inside it (a prologue; `gpu/fusion.rs`). Alone it is this same
            // launch.
            let trailing = layout.is_contiguous()
                && rst[0][..] == [1][..]
                && (n_out == 1 || (kst[0][..] == [m][..] && rs.len() == 1));
            let sum_or_mean = matches!(op, ReduceOp::Sum | ReduceOp::Mean);
            if !serial && wg == LARGE_WG && sum_or_mean && io == Operands::F32 && window.is_none() && trailing {
                let node = Node::Reduce { mean: op == ReduceOp::Mean, rows: n_out, m, chunk, chunks };
                let what = Fusable { node, n: n_out * m, access: smallvec::smallvec![Access::Dense] };
                return dispatch_fusable(g, shader, entry, &constants, &params, &[x], &out, workgroups, what);
            }
            super::launch::dispatch_launch(
                g,
                &Launch {
                    shader,
                    entry,
                    constants: &constants,
                    params: params.finish(),
                    inputs: &[x.wgpu()],
                    outputs: &[out.wgpu()],
                    workgroups,
                },
                &[window.map(|(w, _)| w)],
            )
        },
        || {
            let (xs, mut ys) = (x.host(), out.host_mut());
            // The input is read in place; only f16 storage is widened first.
            let xs = host_f32(dev, &xs, io)?;
            let xs = &xs[..];
            let kept = Layout { shape: kept_shape.clone(), strides: kept_strides.clone(), offset: layout.offset };
            let block = Layout { shape: red_shape.clone(), strides: red_strides.clone(), offset: 0 };
            if dev.runs_fast_cpu() {
                crate::cpu::reduce::reduce(op, xs, &kept, &block, m, &mut ys[..n_out]);
                return Ok(());
            }
            reduce_blocks(op, xs, &kept, &block, m, &mut ys[..n_out]);
            Ok(())
        },
    )?;
    if chunks > 1 {
        // A chunked mean's partials are each divided by m already.
        let (total, _) = reduce(ReduceOp::Sum, &out, &Layout::contiguous(&[chunks, n_out]), &[0], false)?;
        return Ok((total, out_shape));
    }
    Ok((out, out_shape))
}

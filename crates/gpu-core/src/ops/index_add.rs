//! torch.Tensor.index_add_ (`shaders/index_add.wgsl`): the rows of `src`
//! added into a dense destination at `ids` along one dim, deterministically.
//! It is the backward of index_select and of the embedding built on it.
//!
//! Every destination element adds its source rows in increasing position,
//! starting from its own value, on every device: a GPU gives the CPU
//! twin's bits, run after run. (`index::scatter_add`, which takes an index
//! per element, adds a repeated destination with float atomics in thread
//! order instead.) On a GPU one workgroup sorts the ids with their
//! positions, then a thread per destination element that a run of equal
//! ids reaches sums the run in order.
//!
//! Past the binding limit, and past 65,536 ids, the op runs ranges of
//! positions one after another (each sorted by itself, so the order across
//! ranges holds); past the limit also groups of the outer dims, binding
//! windows; a destination row block (`dim_size` rows of the inner dims)
//! must fit one binding. (A GPU that flushes subnormal values to zero
//! differs from the twin there, as in every kernel.)

use super::{check_u32, groups, run, Kind, Params, ParamsDecl};
use crate::gpu::window::{window, Window};
use crate::gpu::{GpuContext, Launch};
use crate::index_check::{check_host, site};
use crate::kernels::index_add as twin;
use crate::layout::numel;
use crate::{Buffer, Error, Result};

/// `index_add.wgsl`'s `Params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "index_add",
    fields: &[
        ("k", Kind::U32),
        ("pow2", Kind::U32),
        ("t0", Kind::U32),
        ("ids_at", Kind::U32),
        ("k_total", Kind::U32),
        ("inner", Kind::U32),
        ("dim_size", Kind::U32),
        ("o0", Kind::U32),
        ("n", Kind::U32),
        ("src_shift", Kind::U32),
        ("dst_shift", Kind::U32),
        ("site", Kind::U32),
    ],
};

/// torch.Tensor.index_add_ in place on the dense buffer `dst` of
/// `dst_shape`: `dst[.., ids[t], ..] += src[.., t, ..]` along `dim` for
/// every position `t < k`, where `src` is dense with `dst_shape`'s shape
/// but `k` along `dim` and `ids` holds `k` u32.
///
/// Each destination element adds its rows in increasing `t` on every
/// device (deterministic; a GPU equals the CPU twin bit for bit). An id ≥
/// `dst_shape[dim]` is an [`Error::IndexOutOfRange`] (on a GPU its rows
/// are skipped and the next readback reports it). `dst` must not share
/// memory with `ids` or `src`.
pub fn index_add(dst: &Buffer, dst_shape: &[usize], dim: usize, ids: &Buffer, k: usize, src: &Buffer) -> Result<()> {
    const OP: &str = "index_add";
    super::index::check_dim(OP, dim, dst_shape)?;
    let (outer, dim_size): (usize, usize) = (dst_shape[..dim].iter().product(), dst_shape[dim]);
    let inner: usize = dst_shape[dim + 1..].iter().product();
    let src_len = outer.checked_mul(k).and_then(|v| v.checked_mul(inner));
    let src_len = src_len.ok_or_else(|| Error::invalid(OP, format!("{k} rows of {dst_shape:?} overflow")))?;
    check_u32(OP, src_len)?;
    check_u32(OP, numel(dst_shape))?;
    dst.check_len(OP, "destination", numel(dst_shape), 4)?;
    ids.check_len(OP, "ids", k, 4)?;
    src.check_len(OP, "source", src_len, 4)?;
    Buffer::check_same_device(OP, dst.device(), &[ids, src])?;
    if dst.same_as(src) || dst.same_as(ids) {
        return Err(Error::invalid(OP, "the destination must not share memory with the ids or the source"));
    }
    if src_len == 0 {
        return Ok(());
    }
    if dst.device().gpu_ctx().is_none() {
        check_host(OP, ids.host()[..k].iter().copied(), dim_size)?;
    }
    let rows = Extents { outer, k, dim_size, inner };
    run(
        dst.device(),
        |g| launch(g, &rows, ids, src, dst),
        || {
            let (hi, hs, mut hd) = (ids.host(), src.host(), dst.host_mut());
            let (s, d) = (super::f32s(&hs), super::f32s_mut(&mut hd));
            twin::index_add((outer, dim_size, inner), &hi[..k], &s[..src_len], &mut d[..numel(dst_shape)]);
        },
    )
}

/// The op's extents: `dst` is `[outer, dim_size, inner]`, `src` `[outer, k, inner]`.
struct Extents {
    outer: usize,
    k: usize,
    dim_size: usize,
    inner: usize,
}

/// Records the sort and the sums, in ranges of positions and groups of
/// outer indices when a binding would pass the limit.
fn launch(g: &GpuContext, r: &Extents, ids: &Buffer, src: &Buffer, dst: &Buffer) -> Result<()> {
    let limit = g.binding_limit();
    let align = g.window_align();
    let row = r.inner as u64 * 4;
    // What a window may hold besides its data: rounding down to the
    // alignment and up to 16 bytes.
    let room = limit.saturating_sub(align + 16);
    let whole = [ids, src, dst].iter().all(|b| b.len_bytes() <= limit) && scratch_bytes(r.k) <= limit;
    let (chunk, group) = if whole {
        (r.k.min(MAX_SORTED), r.outer)
    } else {
        let chunk = (room / row.max(1)).min(room / 16) as usize;
        let group = (room / (row * r.k.max(r.dim_size) as u64).max(1)) as usize;
        if chunk == 0 || room < row * r.dim_size as u64 {
            return Err(Error::LimitExceeded {
                what: format!("index_add's destination rows ({} of {} bytes)", r.dim_size, row),
                needed: row * r.dim_size as u64,
                limit: "max_storage_buffer_binding_size",
                allowed: limit,
            });
        }
        let chunk = chunk.min(r.k).min(MAX_SORTED);
        (chunk, if chunk < r.k { 1 } else { group.clamp(1, r.outer) })
    };
    let scratch = Buffer::alloc_overwritten(dst.device(), scratch_bytes(chunk))?;
    let windowed = |start: usize, len: usize| if whole { (None, 0) } else { some(window(start, len, 4, align)) };
    for t0 in (0..r.k).step_by(chunk) {
        let k = chunk.min(r.k - t0);
        let pow2 = k.next_power_of_two();
        let params = |ids_at: usize, (o0, n): (usize, usize), (src_shift, dst_shift): (usize, usize)| {
            Params::of(&PARAMS)
                .set_u32("k", k)
                .set_u32("pow2", pow2)
                .set_u32("t0", t0)
                .set_u32("ids_at", ids_at)
                .set_u32("k_total", r.k)
                .set_u32("inner", r.inner)
                .set_u32("dim_size", r.dim_size)
                .set_u32("o0", o0)
                .set_u32("n", n)
                .set_u32("src_shift", src_shift)
                .set_u32("dst_shift", dst_shift)
                .set_u32("site", site("index_add"))
        };
        let (ids_window, ids_shift) = windowed(t0, k);
        let sort = params(t0 - ids_shift, (0, 0), (0, 0));
        let launch = Launch {
            shader: "index_add",
            entry: "sort_rows",
            constants: &[],
            params: sort.finish(),
            inputs: &[ids.wgpu()],
            outputs: &[scratch.wgpu()],
            workgroups: 1,
        };
        super::launch::dispatch_launch(g, &launch, &[ids_window, None])?;
        for o0 in (0..r.outer).step_by(group) {
            let count = group.min(r.outer - o0);
            let n = count * k * r.inner;
            let src_first = (o0 * r.k + t0) * r.inner;
            let (src_window, src_shift) = windowed(src_first, ((count - 1) * r.k + k) * r.inner);
            let (dst_window, dst_shift) = windowed(o0 * r.dim_size * r.inner, count * r.dim_size * r.inner);
            let add = params(0, (o0, n), (src_shift, dst_shift));
            let launch = Launch {
                shader: "index_add",
                entry: "add_rows",
                constants: &[],
                params: add.finish(),
                inputs: &[scratch.wgpu(), src.wgpu()],
                outputs: &[dst.wgpu(), g.index_errors_for_launch()],
                workgroups: groups(n, 256),
            };
            super::launch::dispatch_launch(g, &launch, &[None, src_window, dst_window, None])?;
        }
    }
    Ok(())
}

/// The most ids one workgroup sorts in one launch (larger ranges run one
/// after another, like ranges past the binding limit): a single
/// workgroup's serial work grows as k·log²k, and drivers and browsers stop
/// a launch that runs for seconds.
const MAX_SORTED: usize = 1 << 16;

/// The sort's keys for `k` ids: ids and positions, `k` rounded up to a power of two.
fn scratch_bytes(k: usize) -> u64 {
    8 * k.next_power_of_two() as u64
}

fn some((w, shift): (Window, usize)) -> (Option<Window>, usize) {
    (Some(w), shift)
}

//! Indexing with u32 index buffers (`shaders/index.wgsl`): index_select,
//! gather, scatter_add and one_hot, with PyTorch's semantics.
//!
//! An index past the end of its dim is an error ([`Error::IndexOutOfRange`],
//! PyTorch's device-side assert): on the CPU backend the op returns it; on a
//! GPU the kernel records it and the next readback returns it (see
//! `index_check.rs`), while the kernel carries on with a fixed meaning:
//! gather and index_select read 0.0, scatter_add skips the element. one_hot
//! does not check: an out-of-range label gives an all-zero row on both.
//! (Indices are u32, so a negative index cast from i32 is a large one.)

use super::{dispatch_indexed, f32s, f32s_mut, groups, run, Kind, Params, ParamsDecl};
use crate::gpu::fusion::Access;
use crate::gpu::split::{self, LeafRead};
use crate::gpu::window::Window;
use crate::gpu::{GpuContext, Launch};
use crate::index_check::{check_host, site};
use crate::kernels::index::{self as twin, Walk};
use crate::layout::Dims;
use crate::layout::{coalesce, contiguous_strides, numel, Layout, MAX_DIMS};
use crate::{Buffer, Error, Result};

/// `dim` names a dim of `shape`, whose rank the kernels take.
pub(super) fn check_dim(op: &'static str, dim: usize, shape: &[usize]) -> Result<()> {
    if dim >= shape.len() {
        return Err(Error::invalid(
            op,
            format!("dim {dim} is out of range for shape {shape:?} of rank {}", shape.len()),
        ));
    }
    if shape.len() > MAX_DIMS {
        return Err(Error::invalid(op, format!("rank {} exceeds the maximum of {MAX_DIMS}", shape.len())));
    }
    Ok(())
}

/// torch.gather / scatter_add's rule: the index has the tensor's rank and no
/// larger size except along `dim`.
fn check_index_shape(op: &'static str, dim: usize, shape: &[usize], index_shape: &[usize]) -> Result<()> {
    let fits = index_shape.len() == shape.len()
        && index_shape.iter().zip(shape).enumerate().all(|(d, (&i, &s))| d == dim || i <= s);
    if !fits {
        return Err(Error::invalid(
            op,
            format!(
                "index shape {index_shape:?} must have the rank of {shape:?} and no larger size except along dim {dim}"
            ),
        ));
    }
    Ok(())
}

/// `index.wgsl`'s `Params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "index",
    fields: &[
        ("shape", Kind::Dims),
        ("x_strides", Kind::Dims),
        ("i_strides", Kind::Dims),
        ("n", Kind::U32),
        ("x_offset", Kind::U32),
        ("dim_stride", Kind::U32),
        ("dim_size", Kind::U32),
        ("site", Kind::U32),
        ("has_ignore", Kind::U32),
        ("ignore", Kind::U32),
        ("base", Kind::U32),
        ("i_shift", Kind::U32),
    ],
};

/// Records one `index.wgsl` launch of `n` threads; `op` names the site that
/// reports bad indices (`None` for one_hot, which does not check).
fn launch(
    g: &GpuContext,
    (entry, op): (&'static str, Option<&'static str>),
    w: &Walk,
    n: usize,
    inputs: &[&Buffer],
    outputs: &[&Buffer],
) -> Result<()> {
    let params = |n, base, i_shift| {
        Params::of(&PARAMS)
            .set_dims("shape", w.shape)
            .set_dims("x_strides", w.x_strides)
            .set_dims("i_strides", w.i_strides)
            .set_u32("n", n)
            .set_u32("x_offset", w.x_offset)
            .set_u32("dim_stride", w.dim_stride)
            .set_u32("dim_size", w.dim_size)
            .set_u32("site", op.map_or(0, site))
            .set_u32("has_ignore", w.ignore.is_some() as usize)
            .set_u32("ignore", w.ignore.unwrap_or(0) as usize)
            .set_u32("base", base)
            .set_u32("i_shift", i_shift)
    };
    let constants = [("RANK", w.shape.len() as f64)];
    let limit = g.binding_limit();
    if inputs.iter().chain(outputs).all(|b| b.len_bytes() <= limit) {
        let params = params(n, 0, 0);
        let workgroups = groups(n, 256);
        return dispatch_indexed(g, ("index", entry), &constants, &params, inputs, outputs, workgroups, op.is_some());
    }
    // Past the binding limit: ranges of the threads, each binding the
    // windows of what it reads and writes at its own index (starting at the
    // range, which is aligned) and of the indices it reads through a map
    // (a gather's view, one_hot's row); the tensor the indices address (a
    // gather's x, a scatter's destination) stays whole and must fit.
    let dense = || LeafRead { maps: vec![Access::Dense], half: false };
    let mapped = |a: Access| LeafRead { maps: vec![a], half: false };
    // What each binding (inputs, outputs) reads or writes: the window of
    // that read, or the whole buffer.
    let (reads, slots) = match entry {
        "gather" => (vec![mapped(Access::of(w.shape, w.i_strides, 0)), dense()], vec![Some(0), None, Some(1)]),
        "scatter_add" => (vec![dense(), dense()], vec![Some(0), Some(1), None]),
        "one_hot" => {
            let rows = Access::Strided {
                shape: Dims::from([n / w.dim_size, w.dim_size]),
                strides: Dims::from([1, 0]),
                offset: 0,
            };
            (vec![mapped(rows), dense()], vec![Some(0), Some(1)])
        }
        _ => (vec![dense(), dense(), dense()], vec![Some(0), Some(1), Some(2)]),
    };
    let align = g.window_align();
    let ranges =
        split::ranges_reading(n, &reads, limit, align, (align / 4) as usize).ok_or_else(|| Error::LimitExceeded {
            what: format!("kernel `index:{entry}` ({}) with indices too far apart to split", op.unwrap_or(entry)),
            needed: inputs.iter().chain(outputs).map(|b| b.len_bytes()).max().unwrap_or(0),
            limit: "max_storage_buffer_binding_size",
            allowed: limit,
        })?;
    let ins: Vec<&wgpu::Buffer> = inputs.iter().map(|b| b.wgpu()).collect();
    let mut outs: Vec<&wgpu::Buffer> = outputs.iter().map(|b| b.wgpu()).collect();
    if op.is_some() {
        outs.push(g.index_errors_for_launch());
    }
    for split::Cut { start, len, windows } in ranges {
        // The index window's start matters only where it is read through a map.
        let params = params(len, start, windows[0].1);
        let launch = Launch {
            shader: "index",
            entry,
            constants: &constants,
            params: params.finish(),
            inputs: &ins,
            outputs: &outs,
            workgroups: groups(len, 256),
        };
        let mut bind: Vec<Option<Window>> = slots.iter().map(|s| s.map(|k: usize| windows[k].0)).collect();
        bind.resize(ins.len() + outs.len(), None);
        super::launch::dispatch_launch(g, &launch, &bind)?;
    }
    Ok(())
}

/// The core of gather and index_select: output element with coordinates `c`
/// (over `out_shape`) reads its index at `index[c · index_strides]` and then
/// `x` at `c` with `c[dim]` replaced by that index.
fn gather_along(
    op: &'static str,
    x: &Buffer,
    layout: &Layout,
    dim: usize,
    (index, n_index): (&Buffer, usize),
    index_strides: &[usize],
    out_shape: &[usize],
) -> Result<Buffer> {
    let n = numel(out_shape);
    super::check_u32(op, n)?;
    let dev = x.device();
    if dev.gpu_ctx().is_none() {
        check_host(op, index.host()[..n_index].iter().copied(), layout.shape[dim])?;
    }
    let out = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    let dim_size = layout.shape[dim];
    // A size-1 dim may carry any stride; only index 0 is in range there.
    let dim_stride = if dim_size > 1 { layout.strides[dim] } else { 0 };
    // x's position = strided offset with dim zeroed + index · stride[dim].
    let mut xs = layout.strides.clone();
    xs[dim] = 0;
    let (shape, st) = coalesce(out_shape, &[&xs, index_strides]);
    let walk = Walk {
        shape: &shape,
        x_strides: &st[0],
        i_strides: &st[1],
        x_offset: layout.offset,
        dim_stride,
        dim_size,
        ignore: None,
    };
    run(
        dev,
        |g| launch(g, ("gather", Some(op)), &walk, n, &[index, x], &[&out]),
        || {
            let (hx, hi, mut ho) = (x.host(), index.host(), out.host_mut());
            let xs = f32s(&hx);
            if dev.runs_fast_cpu() {
                return crate::cpu::index::gather(&walk, xs, &hi, &mut f32s_mut(&mut ho)[..n]);
            }
            twin::gather(xs, layout, dim, (&hi, index_strides), (out_shape, &mut f32s_mut(&mut ho)[..n]));
        },
    )?;
    Ok(out)
}

/// torch.index_select: the entries `indices[0..n_indices]` of `x` (any view)
/// along `dim`. Returns a dense buffer and its shape, which is `x`'s with
/// `dim` replaced by `n_indices`.
///
/// Indices may repeat. An index ≥ `layout.shape[dim]` is an
/// [`Error::IndexOutOfRange`] (see the module docs).
pub fn index_select(
    x: &Buffer,
    layout: &Layout,
    dim: usize,
    indices: &Buffer,
    n_indices: usize,
) -> Result<(Buffer, Dims)> {
    const OP: &str = "index_select";
    check_dim(OP, dim, &layout.shape)?;
    x.check_len(OP, "input", layout.span(), 4)?;
    indices.check_len(OP, "indices", n_indices, 4)?;
    Buffer::check_same_device(OP, x.device(), &[indices])?;
    let mut shape = layout.shape.clone();
    shape[dim] = n_indices;
    let mut index_strides = vec![0; shape.len()];
    index_strides[dim] = 1;
    let out = gather_along(OP, x, layout, dim, (indices, n_indices), &index_strides, &shape)?;
    Ok((out, shape))
}

/// torch.gather: a dense tensor of shape `index_shape` with
/// `out[c] = x[c with c[dim] = index[c]]` (for dim 0 of a 3-D tensor,
/// `out[i][j][k] = x[index[i][j][k]][j][k]`).
///
/// `index` is a dense u32 buffer of `index_shape`, which has `x`'s rank and
/// sizes no larger than `x`'s except along `dim`. An index ≥
/// `layout.shape[dim]` is an [`Error::IndexOutOfRange`].
pub fn gather(x: &Buffer, layout: &Layout, dim: usize, index: &Buffer, index_shape: &[usize]) -> Result<Buffer> {
    const OP: &str = "gather";
    check_dim(OP, dim, &layout.shape)?;
    check_index_shape(OP, dim, &layout.shape, index_shape)?;
    x.check_len(OP, "input", layout.span(), 4)?;
    index.check_len(OP, "index", numel(index_shape), 4)?;
    Buffer::check_same_device(OP, x.device(), &[index])?;
    gather_along(OP, x, layout, dim, (index, numel(index_shape)), &contiguous_strides(index_shape), index_shape)
}

/// torch.Tensor.scatter_add_, in place on the dense buffer `dst` of
/// `dst_shape`: `dst[c with c[dim] = index[c]] += src[c]` for every
/// coordinate `c` of `index_shape` (for dim 0 of a 2-D tensor,
/// `dst[index[i][j]][j] += src[i][j]`).
///
/// `index` (u32) and `src` (f32) are dense buffers of `index_shape`, which
/// has `dst`'s rank and sizes no larger than `dst_shape`'s except along
/// `dim`; neither may share memory with `dst`. An index ≥ `dst_shape[dim]`
/// is an [`Error::IndexOutOfRange`] (on a GPU the element is skipped and
/// the next readback reports it).
///
/// On a GPU, elements that hit the same destination are added by atomics in
/// whatever order the threads run, so results can differ from the CPU twin
/// (which adds in index order) and from run to run by float rounding.
pub fn scatter_add(
    dst: &Buffer,
    dst_shape: &[usize],
    dim: usize,
    index: &Buffer,
    src: &Buffer,
    index_shape: &[usize],
) -> Result<()> {
    const OP: &str = "scatter_add";
    check_dim(OP, dim, dst_shape)?;
    check_index_shape(OP, dim, dst_shape, index_shape)?;
    let n = numel(index_shape);
    super::check_u32(OP, n)?;
    super::check_u32(OP, numel(dst_shape))?;
    dst.check_len(OP, "destination", numel(dst_shape), 4)?;
    index.check_len(OP, "index", n, 4)?;
    src.check_len(OP, "source", n, 4)?;
    Buffer::check_same_device(OP, dst.device(), &[index, src])?;
    if dst.same_as(src) || dst.same_as(index) {
        return Err(Error::invalid(OP, "the destination must not share memory with the index or the source"));
    }
    let strides = contiguous_strides(dst_shape);
    let dim_size = dst_shape[dim];
    let mut ds = strides.clone();
    ds[dim] = 0;
    let (shape, st) = coalesce(index_shape, &[&ds]);
    let walk = Walk { shape: &shape, x_strides: &st[0], dim_stride: strides[dim], dim_size, ..Walk::default() };
    if dst.device().gpu_ctx().is_none() {
        check_host(OP, index.host()[..n].iter().copied(), dim_size)?;
    }
    run(
        dst.device(),
        |g| launch(g, ("scatter_add", Some(OP)), &walk, n, &[index, src], &[dst]),
        || {
            let (hi, hs, mut hd) = (index.host(), src.host(), dst.host_mut());
            let (s, d) = (f32s(&hs), f32s_mut(&mut hd));
            if dst.device().runs_fast_cpu() {
                return crate::cpu::index::scatter_add(&walk, d, &hi[..n], &s[..n]);
            }
            twin::scatter_add((d, dst_shape), dim, &hi[..n], (&s[..n], index_shape));
        },
    )
}

/// One-hot rows: a dense f32 `[n, classes]` buffer with
/// `out[r][c] = 1.0 if indices[r] == c else 0.0`, for the first `n` u32 of
/// `indices`. An index ≥ `classes` gives an all-zero row.
pub fn one_hot(indices: &Buffer, n: usize, classes: usize) -> Result<Buffer> {
    const OP: &str = "one_hot";
    indices.check_len(OP, "indices", n, 4)?;
    let total = n.checked_mul(classes).ok_or_else(|| Error::invalid(OP, format!("{n} × {classes} overflows")))?;
    super::check_u32(OP, total)?;
    let dev = indices.device();
    let out = Buffer::alloc(dev, total as u64 * 4)?;
    run(
        dev,
        |g| launch(g, ("one_hot", None), &Walk { dim_size: classes, ..Walk::default() }, total, &[indices], &[&out]),
        || {
            let (hi, mut ho) = (indices.host(), out.host_mut());
            twin::one_hot(&hi[..n], classes, &mut f32s_mut(&mut ho)[..total]);
        },
    )?;
    Ok(out)
}

/// nll_loss's class targets made safe to look up: for the first `n` u32
/// of `targets`, a u32 buffer holding each target (0 where it is out of
/// range) and an f32 buffer holding 1.0 where the row counts (in range and
/// not `ignore`) and 0.0 elsewhere. A target ≥ `classes` that is not
/// `ignore` is an [`Error::IndexOutOfRange`] of `nll_loss` (PyTorch's -100
/// ignore index, past every class, is not).
pub fn class_targets(targets: &Buffer, n: usize, classes: usize, ignore: Option<u32>) -> Result<(Buffer, Buffer)> {
    const OP: &str = "nll_loss";
    targets.check_len(OP, "targets", n, 4)?;
    super::check_u32(OP, n)?;
    let dev = targets.device();
    let (safe, keep) = (Buffer::alloc(dev, n as u64 * 4)?, Buffer::alloc(dev, n as u64 * 4)?);
    if n == 0 {
        return Ok((safe, keep));
    }
    if dev.gpu_ctx().is_none() {
        check_host(OP, targets.host()[..n].iter().copied().filter(|&t| Some(t) != ignore), classes)?;
    }
    let walk = Walk { dim_size: classes, ignore, ..Walk::default() };
    run(
        dev,
        |g| launch(g, ("class_targets", Some(OP)), &walk, n, &[targets], &[&safe, &keep]),
        || {
            let (ht, mut hs, mut hk) = (targets.host(), safe.host_mut(), keep.host_mut());
            twin::class_targets(&ht[..n], (classes, ignore), &mut hs[..n], &mut f32s_mut(&mut hk)[..n]);
        },
    )?;
    Ok((safe, keep))
}

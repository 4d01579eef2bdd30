//! Row normalisation (`shaders/norm.wgsl`): the fused kernel pair behind
//! layer, group and instance norm.
//!
//! Each contiguous row of `cols` values is centred and scaled by the inverse
//! of its *biased* standard deviation, as all of PyTorch's norms do. The
//! callers choose the rows: layer norm's rows are the leading dims, group
//! norm views `[N, C, *]` as `[N·G, C/G·*]`. Batch norm, whose groups are not
//! contiguous rows, has its own kernels (`batch_norm.rs`), which also apply
//! the affine weight and bias of all the norms.
//!
//! The GPU gives each row one workgroup with a fixed reduction tree, or on
//! CPU adapters one thread that walks the row in order (`rows.rs`,
//! `thread_per_row`); either way results are deterministic. The CPU twin
//! accumulates in f64, the more exact of them and so a fair oracle; the
//! CPU backend's fast path (`cpu/norm_rows.rs`) too, in lanes.

use crate::cpu::{per_row, per_row2};
use crate::kernels::rows::{affine_row, normalize_backward_row, normalize_row};

pub use super::operands::Operands;
use super::operands::{host_f32, load_x_shader};
use super::rows::{launch_rows, Bind, RowLaunch};
use super::{f32s, f32s_mut, run, run_fallible, Kind, Params, ParamsDecl};
use crate::gpu::GpuContext;
use crate::{Buffer, Error, Result};

/// `norm.wgsl`'s uniform block (the last four members written by `rows::launch_rows`).
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "norm",
    fields: &[
        ("rows", Kind::U32),
        ("cols", Kind::U32),
        ("eps", Kind::F32),
        ("row0", Kind::U32),
        ("mat_shift", Kind::U32),
        ("x_shift", Kind::U32),
        ("vec_shift", Kind::U32),
    ],
};

/// Threads per workgroup for rows longer than this (the kernel's `WG`).
const LARGE_WG: usize = 256;
/// Threads per workgroup for short rows: one warp, so a row of 7 does not
/// leave 249 threads idle. Two sizes keep the pipeline count at two per entry.
const SMALL_WG: usize = 32;

fn check_sizes(op: &'static str, rows: usize, cols: usize) -> Result<usize> {
    if cols == 0 {
        return Err(Error::invalid(op, format!("rows of 0 columns ({rows} × 0) have no mean to normalise by")));
    }
    let n = rows.checked_mul(cols).ok_or_else(|| Error::invalid(op, format!("{rows} × {cols} overflows")))?;
    // The kernel's index j steps by WG past the row end.
    super::check_u32(op, n + LARGE_WG)?;
    Ok(n)
}

/// Records `entry` of `shader` (`norm.wgsl` or an f16-input variant) over
/// `rows` rows (in ranges of rows past the binding limit, see `rows.rs`),
/// or its thread-per-row twin `serial` where `rows.rs` picks that, with
/// the kernel's `AFFINE` level (0: none, 1: a weight, 2: and a bias).
fn launch(
    g: &GpuContext,
    (shader, [entry, serial]): (&'static str, [&'static str; 2]),
    (rows, cols, eps): (usize, usize, f32),
    affine: usize,
    inputs: &[(&Buffer, Bind)],
    outputs: &[(&Buffer, Bind)],
) -> Result<()> {
    let wg = if cols > LARGE_WG { LARGE_WG } else { SMALL_WG };
    let params = Params::of(&PARAMS).set_u32("rows", rows).set_u32("cols", cols).set_f32("eps", eps);
    let level = ("AFFINE", affine as f64);
    let l = RowLaunch {
        kernel: (shader, entry),
        constants: &[("WG", wg as f64), level],
        params,
        rows,
        cols,
        check_indices: false,
        serial_entry: Some((serial, &[level])),
    };
    launch_rows(g, l, inputs, outputs)
}

/// Normalises each of the `rows` contiguous rows of `cols` f32 in `x`:
/// `y = (x − mean) · rstd` with `rstd = 1 / sqrt(var + eps)` and the biased
/// (population) variance. Returns `y` (`rows × cols`), `mean` (`rows`) and
/// `rstd` (`rows`); keep `y` and `rstd` for [`normalize_rows_backward`].
///
/// The variance is computed in a second pass over the deviations from the
/// first-pass mean, whose own mean also corrects that mean's rounding (the
/// corrected two-pass algorithm): rows with a large mean and a small spread
/// keep their precision in f32.
pub fn normalize_rows(x: &Buffer, rows: usize, cols: usize, eps: f32) -> Result<(Buffer, Buffer, Buffer)> {
    normalize_rows_io(x, Operands::F32, rows, cols, eps)
}

/// [`normalize_rows`] of `x` stored as `io`: with [`Operands::F16`] the
/// input is packed f16 ([`Buffer::from_f16`](crate::Buffer::from_f16)'s layout), widened exactly as
/// it is loaded; the arithmetic and the three results stay f32, so the
/// results equal [`normalize_rows`] of the widened values and
/// [`normalize_rows_backward`] applies unchanged.
pub fn normalize_rows_io(
    x: &Buffer,
    io: Operands,
    rows: usize,
    cols: usize,
    eps: f32,
) -> Result<(Buffer, Buffer, Buffer)> {
    let (y, _, mean, rstd) = normalize("normalize_rows", x, io, (rows, cols, eps), None)?;
    Ok((y, mean, rstd))
}

/// [`normalize_rows_io`] with layer norm's affine in the same launch:
/// besides `y`, `mean` and `rstd` it writes `z = y · weight + bias`, one
/// weight and bias per column (f32, `cols` each; the bias optional).
/// Returns `(y, z, mean, rstd)`; keep `y` and `rstd` for
/// [`normalize_rows_affine_backward`] (and `y` for the weight's gradient).
pub fn normalize_rows_affine_io(
    x: &Buffer,
    io: Operands,
    (rows, cols, eps): (usize, usize, f32),
    weight: &Buffer,
    bias: Option<&Buffer>,
) -> Result<(Buffer, Buffer, Buffer, Buffer)> {
    let (y, z, mean, rstd) = normalize("layer_norm", x, io, (rows, cols, eps), Some((weight, bias)))?;
    Ok((y, z.expect("an affine normalisation writes z"), mean, rstd))
}

/// The forward of both: `y`, `z` with an affine, `mean`, `rstd`.
fn normalize(
    op: &'static str,
    x: &Buffer,
    io: Operands,
    (rows, cols, eps): (usize, usize, f32),
    affine: Option<(&Buffer, Option<&Buffer>)>,
) -> Result<(Buffer, Option<Buffer>, Buffer, Buffer)> {
    let n = check_sizes(op, rows, cols)?;
    x.check_len(op, "input", n, io.size())?;
    let dev = x.device();
    if let Some((w, b)) = affine {
        w.check_len(op, "weight", cols, 4)?;
        Buffer::check_same_device(op, dev, &[w])?;
        if let Some(b) = b {
            b.check_len(op, "bias", cols, 4)?;
            Buffer::check_same_device(op, dev, &[b])?;
        }
    }
    let y = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    let z = affine.map(|_| Buffer::alloc_overwritten(dev, n as u64 * 4)).transpose()?;
    let mean = Buffer::alloc_overwritten(dev, rows as u64 * 4)?;
    let rstd = Buffer::alloc_overwritten(dev, rows as u64 * 4)?;
    run_fallible(
        dev,
        |g| {
            let shader = load_x_shader(g, ["norm", "norm_f16", "norm_f16_native"], io, op, x)?;
            // What the kernel does not read (a weight, a bias) x fills, and
            // y the z it does not write.
            let (w, b) = affine.map_or((None, None), |(w, b)| (Some(w), b));
            let level = usize::from(w.is_some()) + usize::from(b.is_some());
            let xb = (x, Bind::X(io));
            let inputs = [xb, w.map_or(xb, |w| (w, Bind::Whole)), b.map_or(xb, |b| (b, Bind::Whole))];
            let outputs = [
                (&y, Bind::Rows),
                (z.as_ref().unwrap_or(&y), Bind::Rows),
                (&mean, Bind::PerRow),
                (&rstd, Bind::PerRow),
            ];
            let entries = ["normalize_rows", "normalize_rows_serial"];
            launch(g, (shader, entries), (rows, cols, eps), level, &inputs, &outputs)
        },
        || {
            let xs = x.host();
            let xs = host_f32(dev, &xs, io)?;
            let (mut ys, mut ms, mut rs) = (y.host_mut(), mean.host_mut(), rstd.host_mut());
            let (ys, ms, rs) = (f32s_mut(&mut ys), f32s_mut(&mut ms), f32s_mut(&mut rs));
            // Each row's (mean, rstd), stored below.
            let mut stats = vec![(0.0f32, 0.0f32); rows];
            let params = affine.map(|(w, b)| (w.host(), b.map(Buffer::host)));
            let mut zs = z.as_ref().map(Buffer::host_mut);
            let affine = params.as_ref().zip(zs.as_mut()).map(|((ws, bs), zs)| {
                (&f32s(ws)[..cols], bs.as_ref().map(|b| &f32s(b)[..cols]), &mut f32s_mut(zs)[..n])
            });
            if dev.runs_fast_cpu() {
                crate::cpu::norm_rows::normalize(&xs[..n], cols, eps, &mut ys[..n], &mut stats, affine);
            } else {
                per_row2(false, (&mut ys[..n], cols), (&mut stats, 1), |r, out, st| {
                    st[0] = normalize_row(&xs[r * cols..(r + 1) * cols], eps, out);
                });
                if let Some((ws, bs, zs)) = affine {
                    for (zr, yr) in zs.chunks_exact_mut(cols).zip(ys[..n].chunks_exact(cols)) {
                        affine_row(yr, ws, bs, zr);
                    }
                }
            }
            for (r, (m, s)) in stats.into_iter().enumerate() {
                (ms[r], rs[r]) = (m, s);
            }
            Ok(())
        },
    )?;
    Ok((y, z, mean, rstd))
}

/// Backward of [`normalize_rows`] in one fused pass: per row,
/// `dx = rstd · (dy − mean(dy) − y · mean(dy · y))`, from the output
/// gradient `dy`, the forward output `y` and its `rstd`.
pub fn normalize_rows_backward(dy: &Buffer, y: &Buffer, rstd: &Buffer, rows: usize, cols: usize) -> Result<Buffer> {
    normalize_backward("normalize_rows_backward", dy, y, rstd, None, (rows, cols))
}

/// Backward of [`normalize_rows_affine_io`]'s `z` with respect to `x`, in
/// one pass: [`normalize_rows_backward`] of `dz · weight`. (The weight's
/// and bias's gradients are per-column sums of `dz · y` and `dz`.)
pub fn normalize_rows_affine_backward(
    dz: &Buffer,
    y: &Buffer,
    rstd: &Buffer,
    weight: &Buffer,
    (rows, cols): (usize, usize),
) -> Result<Buffer> {
    normalize_backward("layer_norm backward", dz, y, rstd, Some(weight), (rows, cols))
}

/// The backward of both: the gradient `g` of `y` is `dy`, or `dy · weight`.
fn normalize_backward(
    op: &'static str,
    dy: &Buffer,
    y: &Buffer,
    rstd: &Buffer,
    weight: Option<&Buffer>,
    (rows, cols): (usize, usize),
) -> Result<Buffer> {
    let n = check_sizes(op, rows, cols)?;
    dy.check_len(op, "output gradient", n, 4)?;
    y.check_len(op, "output", n, 4)?;
    rstd.check_len(op, "rstd", rows, 4)?;
    let dev = dy.device();
    Buffer::check_same_device(op, dev, &[y, rstd])?;
    if let Some(w) = weight {
        w.check_len(op, "weight", cols, 4)?;
        Buffer::check_same_device(op, dev, &[w])?;
    }
    let dx = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    run(
        dev,
        |g| {
            // Without a weight rstd fills its binding, unread.
            let w = weight.map_or((rstd, Bind::PerRow), |w| (w, Bind::Whole));
            let inputs = [(dy, Bind::Rows), (y, Bind::Rows), (rstd, Bind::PerRow), w];
            let shader = g.texture_variant("norm", [n as u64 * 4; 2]);
            let entries = ["normalize_rows_backward", "normalize_rows_backward_serial"];
            let level = usize::from(weight.is_some());
            launch(g, (shader, entries), (rows, cols, 0.0), level, &inputs, &[(&dx, Bind::Rows)])
        },
        || {
            let (gs, ys, rs, mut ds) = (dy.host(), y.host(), rstd.host(), dx.host_mut());
            let (gs, ys, rs) = (&f32s(&gs)[..n], &f32s(&ys)[..n], f32s(&rs));
            let ws = weight.map(Buffer::host);
            let ws = ws.as_ref().map(|w| &f32s(w)[..cols]);
            let ds = &mut f32s_mut(&mut ds)[..n];
            if dev.runs_fast_cpu() {
                return crate::cpu::norm_rows::backward(gs, ws, ys, rs, cols, ds);
            }
            per_row(false, (ds, cols), |r, out| {
                normalize_backward_row(&gs[r * cols..][..cols], ws, &ys[r * cols..][..cols], rs[r], out);
            });
        },
    )?;
    Ok(dx)
}

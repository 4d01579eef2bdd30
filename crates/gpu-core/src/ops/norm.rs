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
//! accumulates in f64, the more exact of them and so a fair oracle.

use crate::cpu::{self, per_row, per_row2};

pub use super::operands::Operands;
use super::operands::{host_f32, load_x_shader};
use super::rows::{launch_rows, Bind, RowLaunch};
use super::{f32s, f32s_mut, run, Params};
use crate::gpu::GpuContext;
use crate::{Buffer, Error, Result};

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
/// or its thread-per-row twin `serial` where `rows.rs` picks that.
/// `bias`: the affine entries' `BIAS` constant (`None` for the others).
fn launch(
    g: &GpuContext,
    (shader, [entry, serial]): (&'static str, [&'static str; 2]),
    (rows, cols): (usize, usize),
    (eps, bias): (f32, Option<bool>),
    inputs: &[(&Buffer, Bind)],
    outputs: &[(&Buffer, Bind)],
) -> Result<()> {
    let wg = if cols > LARGE_WG { LARGE_WG } else { SMALL_WG };
    let params = Params::new().u32(rows).u32(cols).f32(eps);
    let bias: Vec<(&str, f64)> = bias.map(|b| ("BIAS", if b { 1.0 } else { 0.0 })).into_iter().collect();
    let constants: Vec<(&str, f64)> = [("WG", wg as f64)].into_iter().chain(bias.iter().copied()).collect();
    let l = RowLaunch {
        kernel: (shader, entry),
        constants: &constants,
        params,
        rows,
        cols,
        check_indices: false,
        serial_entry: Some((serial, &bias)),
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
    const OP: &str = "normalize_rows";
    let n = check_sizes(OP, rows, cols)?;
    x.check_len(OP, "input", n, io.size())?;
    let dev = x.device();
    let y = Buffer::alloc(dev, n as u64 * 4)?;
    let mean = Buffer::alloc(dev, rows as u64 * 4)?;
    let rstd = Buffer::alloc(dev, rows as u64 * 4)?;
    run(
        dev,
        |g| {
            let shader = load_x_shader(g, ["norm", "norm_f16", "norm_f16_native"], io, OP, x)?;
            let outputs = [(&y, Bind::Rows), (&mean, Bind::PerRow), (&rstd, Bind::PerRow)];
            launch(
                g,
                (shader, ["normalize_rows", "normalize_rows_serial"]),
                (rows, cols),
                (eps, None),
                &[(x, Bind::X(io))],
                &outputs,
            )
        },
        || {
            let (xs, mut ys, mut ms, mut rs) = (x.host(), y.host_mut(), mean.host_mut(), rstd.host_mut());
            let (ys, ms, rs) = (f32s_mut(&mut ys), f32s_mut(&mut ms), f32s_mut(&mut rs));
            let xs = host_f32(&xs, io);
            // Each row's (mean, rstd), stored below.
            let mut stats = vec![(0.0f32, 0.0f32); rows];
            per_row2(cpu::fast(dev), (&mut ys[..n], cols), (&mut stats, 1), |r, out, st| {
                st[0] = normalize_row_cpu(&xs[r * cols..(r + 1) * cols], eps, out);
            });
            for (r, (m, s)) in stats.into_iter().enumerate() {
                (ms[r], rs[r]) = (m, s);
            }
        },
    )?;
    Ok((y, mean, rstd))
}

/// Backward of [`normalize_rows`] in one fused pass: per row,
/// `dx = rstd · (dy − mean(dy) − y · mean(dy · y))`, from the output
/// gradient `dy`, the forward output `y` and its `rstd`.
pub fn normalize_rows_backward(dy: &Buffer, y: &Buffer, rstd: &Buffer, rows: usize, cols: usize) -> Result<Buffer> {
    const OP: &str = "normalize_rows_backward";
    let n = check_sizes(OP, rows, cols)?;
    dy.check_len(OP, "output gradient", n, 4)?;
    y.check_len(OP, "output", n, 4)?;
    rstd.check_len(OP, "rstd", rows, 4)?;
    let dev = dy.device();
    Buffer::check_same_device(OP, dev, &[y, rstd])?;
    let dx = Buffer::alloc(dev, n as u64 * 4)?;
    run(
        dev,
        |g| {
            let inputs = [(dy, Bind::Rows), (y, Bind::Rows), (rstd, Bind::PerRow)];
            let shader = crate::gpu::texture_operands::variant_for(g, "norm", [n as u64 * 4; 2]);
            let entries = ["normalize_rows_backward", "normalize_rows_backward_serial"];
            launch(g, (shader, entries), (rows, cols), (0.0, None), &inputs, &[(&dx, Bind::Rows)])
        },
        || {
            let (gs, ys, rs, mut ds) = (dy.host(), y.host(), rstd.host(), dx.host_mut());
            let (gs, ys, rs) = (&f32s(&gs)[..n], &f32s(&ys)[..n], f32s(&rs));
            per_row(cpu::fast(dev), (&mut f32s_mut(&mut ds)[..n], cols), |r, out| {
                norm_grad_row_cpu(&gs[r * cols..][..cols], &ys[r * cols..][..cols], rs[r], out);
            });
        },
    )?;
    Ok(dx)
}

/// The twin of one row: writes `y` and returns (mean, rstd), in f64.
fn normalize_row_cpu(row: &[f32], eps: f32, y: &mut [f32]) -> (f32, f32) {
    let cols = row.len() as f64;
    let m = row.iter().map(|&v| v as f64).sum::<f64>() / cols;
    let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / cols;
    let s = 1.0 / (var + eps as f64).sqrt();
    for (o, &v) in y.iter_mut().zip(row) {
        *o = ((v as f64 - m) * s) as f32;
    }
    (m as f32, s as f32)
}

/// The twin of one row's backward, `dx` from `g` (the gradient of `y`).
fn norm_grad_row_cpu(g: &[f32], y: &[f32], rstd: f32, dx: &mut [f32]) {
    let cols = g.len() as f64;
    let mg = g.iter().map(|&v| v as f64).sum::<f64>() / cols;
    let mgy = g.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() / cols;
    for ((d, &gv), &yv) in dx.iter_mut().zip(g).zip(y) {
        *d = (rstd as f64 * (gv as f64 - mg - yv as f64 * mgy)) as f32;
    }
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
    const OP: &str = "layer_norm";
    let n = check_sizes(OP, rows, cols)?;
    x.check_len(OP, "input", n, io.size())?;
    weight.check_len(OP, "weight", cols, 4)?;
    if let Some(b) = bias {
        b.check_len(OP, "bias", cols, 4)?;
    }
    let dev = x.device();
    Buffer::check_same_device(OP, dev, &[weight])?;
    Buffer::check_same_device(OP, dev, bias.as_slice())?;
    let y = Buffer::alloc(dev, n as u64 * 4)?;
    let z = Buffer::alloc(dev, n as u64 * 4)?;
    let mean = Buffer::alloc(dev, rows as u64 * 4)?;
    let rstd = Buffer::alloc(dev, rows as u64 * 4)?;
    run(
        dev,
        |g| {
            let shader = load_x_shader(g, ["norm", "norm_f16", "norm_f16_native"], io, OP, x)?;
            // Without a bias the kernel never reads it: the weight fills its binding.
            let inputs = [(x, Bind::X(io)), (weight, Bind::Whole), (bias.unwrap_or(weight), Bind::Whole)];
            let outputs = [(&y, Bind::Rows), (&z, Bind::Rows), (&mean, Bind::PerRow), (&rstd, Bind::PerRow)];
            let entries = ["normalize_rows_affine", "normalize_rows_affine_serial"];
            launch(g, (shader, entries), (rows, cols), (eps, Some(bias.is_some())), &inputs, &outputs)
        },
        || {
            let (xs, ws) = (x.host(), weight.host());
            let bs = bias.map(|b| b.host());
            let (mut ys, mut zs, mut ms, mut rs) = (y.host_mut(), z.host_mut(), mean.host_mut(), rstd.host_mut());
            let (ys, zs, ms, rs) = (f32s_mut(&mut ys), f32s_mut(&mut zs), f32s_mut(&mut ms), f32s_mut(&mut rs));
            let (xs, ws) = (host_f32(&xs, io), f32s(&ws));
            let bs = bs.as_ref().map(|b| f32s(b));
            let mut stats = vec![(0.0f32, 0.0f32); rows];
            per_row2(cpu::fast(dev), (&mut ys[..n], cols), (&mut stats, 1), |r, out, st| {
                st[0] = normalize_row_cpu(&xs[r * cols..(r + 1) * cols], eps, out);
            });
            for (zr, yr) in zs[..n].chunks_exact_mut(cols).zip(ys[..n].chunks_exact(cols)) {
                for (j, (zv, &yv)) in zr.iter_mut().zip(yr).enumerate() {
                    *zv = yv * ws[j] + bs.map_or(0.0, |b| b[j]);
                }
            }
            for (r, (m, s)) in stats.into_iter().enumerate() {
                (ms[r], rs[r]) = (m, s);
            }
        },
    )?;
    Ok((y, z, mean, rstd))
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
    const OP: &str = "layer_norm backward";
    let n = check_sizes(OP, rows, cols)?;
    dz.check_len(OP, "output gradient", n, 4)?;
    y.check_len(OP, "normalised input", n, 4)?;
    rstd.check_len(OP, "rstd", rows, 4)?;
    weight.check_len(OP, "weight", cols, 4)?;
    let dev = dz.device();
    Buffer::check_same_device(OP, dev, &[y, rstd, weight])?;
    let dx = Buffer::alloc(dev, n as u64 * 4)?;
    run(
        dev,
        |g| {
            let inputs = [(dz, Bind::Rows), (y, Bind::Rows), (rstd, Bind::PerRow), (weight, Bind::Whole)];
            let shader = crate::gpu::texture_operands::variant_for(g, "norm", [n as u64 * 4; 2]);
            let entries = ["normalize_rows_affine_backward", "normalize_rows_affine_backward_serial"];
            launch(g, (shader, entries), (rows, cols), (0.0, None), &inputs, &[(&dx, Bind::Rows)])
        },
        || {
            let (gs, ys, rs, ws, mut ds) = (dz.host(), y.host(), rstd.host(), weight.host(), dx.host_mut());
            let (gs, ys, rs, ws) = (&f32s(&gs)[..n], &f32s(&ys)[..n], f32s(&rs), f32s(&ws));
            per_row(cpu::fast(dev), (&mut f32s_mut(&mut ds)[..n], cols), |r, out| {
                let g: Vec<f32> = gs[r * cols..][..cols].iter().zip(ws).map(|(&a, &w)| a * w).collect();
                norm_grad_row_cpu(&g, &ys[r * cols..][..cols], rs[r], out);
            });
        },
    )?;
    Ok(dx)
}

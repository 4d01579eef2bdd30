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
fn launch(
    g: &GpuContext,
    (shader, [entry, serial]): (&'static str, [&'static str; 2]),
    (rows, cols): (usize, usize),
    eps: f32,
    inputs: &[(&Buffer, Bind)],
    outputs: &[(&Buffer, Bind)],
) -> Result<()> {
    let wg = if cols > LARGE_WG { LARGE_WG } else { SMALL_WG };
    let params = Params::new().u32(rows).u32(cols).f32(eps);
    let l = RowLaunch {
        kernel: (shader, entry),
        constants: &[("WG", wg as f64)],
        params,
        rows,
        cols,
        check_indices: false,
        serial_entry: Some((serial, &[])),
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
                eps,
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
                let row = &xs[r * cols..(r + 1) * cols];
                let m = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
                let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / cols as f64;
                let s = 1.0 / (var + eps as f64).sqrt();
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = ((v as f64 - m) * s) as f32;
                }
                st[0] = (m as f32, s as f32);
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
            launch(g, (shader, entries), (rows, cols), 0.0, &inputs, &[(&dx, Bind::Rows)])
        },
        || {
            let (gs, ys, rs, mut ds) = (dy.host(), y.host(), rstd.host(), dx.host_mut());
            let (gs, ys, rs) = (&f32s(&gs)[..n], &f32s(&ys)[..n], f32s(&rs));
            per_row(cpu::fast(dev), (&mut f32s_mut(&mut ds)[..n], cols), |r, out| {
                let (g, yr) = (&gs[r * cols..][..cols], &ys[r * cols..][..cols]);
                let mg = g.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
                let mgy = g.iter().zip(yr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() / cols as f64;
                for ((d, &gv), &yv) in out.iter_mut().zip(g).zip(yr) {
                    *d = (rs[r] as f64 * (gv as f64 - mg - yv as f64 * mgy)) as f32;
                }
            });
        },
    )?;
    Ok(dx)
}

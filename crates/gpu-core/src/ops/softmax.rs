//! Row-wise softmax, log-softmax and fused cross-entropy over contiguous
//! `[rows, cols]` data (`shaders/softmax.wgsl`), with their backward kernels.
//!
//! The GPU kernels give each row one workgroup whose threads combine partial
//! results with a fixed tree (deterministic run to run); on CPU adapters
//! softmax, cross-entropy and their backward passes give each row one
//! thread instead (`rows.rs`, `thread_per_row`). Both sides subtract
//! the row maximum before exponentiating, so `[1000, 1001, 1002]` is as
//! harmless as `[0, 1, 2]`. The CPU twins accumulate sums in f64, making them
//! the more exact of the two and a fair oracle for the kernels.
//!
//! Cross-entropy follows `torch.nn.functional.cross_entropy`. With class
//! weights `w` (all 1 when absent), label smoothing `e` and `C = cols`, each
//! row gets a target distribution `q`:
//!
//! * class targets `t`: `q_c = (1 − e)·w_t·[c = t] + (e / C)·w_c`;
//! * probability targets `y`: `q_c = w_c·((1 − e)·y_c + e / C)`;
//!
//! and `loss = −Σ_c q_c·log softmax(x)_c`, `dloss/dx_c = softmax(x)_c·Σq − q_c`.
//! Each row also reports the weight PyTorch's `'mean'` reduction divides by:
//! `w_t` for a class target (0 when ignored), 1 for a probability row; the
//! mean is `Σ loss / Σ weight` in both cases.

use crate::cpu::{per_row, per_row2};
use crate::kernels::rows::{softmax_backward_row, softmax_row, CrossEntropy};

pub use super::operands::Operands;
use super::operands::{host_f32, load_x_shader};
use super::rows::{launch_rows, Bind, RowLaunch};
use super::{f32s, f32s_mut, run, run_fallible, Kind, Params, ParamsDecl};
use crate::gpu::GpuContext;
use crate::{Buffer, Error, Result};

/// Threads per workgroup (the kernels' `WG` override) for rows longer than this.
const LARGE_WG: usize = 256;
/// Threads per workgroup for short rows: one warp/wavefront, so a row of 7
/// does not leave 249 threads idle. Only two sizes, so few pipelines compile.
const SMALL_WG: usize = 32;

fn workgroup_size(cols: usize) -> usize {
    if cols > LARGE_WG {
        LARGE_WG
    } else {
        SMALL_WG
    }
}

/// Validates `rows × cols` against u32 kernel arithmetic (the column loop
/// steps past `cols` by up to one workgroup).
fn check_rows(op: &'static str, rows: usize, cols: usize) -> Result<usize> {
    let n = rows.checked_mul(cols).ok_or_else(|| Error::invalid(op, format!("{rows} × {cols} overflows")))?;
    super::check_u32(op, n + LARGE_WG)?;
    super::check_u32(op, rows)?;
    Ok(n)
}

/// `softmax.wgsl`'s `Params`; the `ce_*` members are zero for softmax itself.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "softmax",
    fields: &[
        ("rows", Kind::U32),
        ("cols", Kind::U32),
        ("has_ignore", Kind::U32),
        ("ignore", Kind::U32),
        ("smoothing", Kind::F32),
        ("site", Kind::U32),
        // Appended by `rows::launch_rows`.
        ("row0", Kind::U32),
        ("mat_shift", Kind::U32),
        ("x_shift", Kind::U32),
        ("vec_shift", Kind::U32),
    ],
};

/// The block of `softmax_fwd` / `softmax_bwd`: the shape, no cross-entropy options.
fn row_params(rows: usize, cols: usize) -> Params {
    Params::of(&PARAMS)
        .set_u32("rows", rows)
        .set_u32("cols", cols)
        .set_u32("has_ignore", 0)
        .set_u32("ignore", 0)
        .set_f32("smoothing", 0.0)
        .set_u32("site", 0)
}

/// `softmax.wgsl` or its f16-input variant (the logits `x` of `softmax_fwd`
/// and `ce_fwd` in f16 storage).
fn shader(g: &GpuContext, io: Operands, op: &'static str, x: &Buffer) -> Result<&'static str> {
    load_x_shader(g, ["softmax", "softmax_f16", "softmax_f16_native"], io, op, x)
}

/// One `softmax_fwd` / `softmax_bwd` launch over `rows` rows (in ranges of
/// rows past the binding limit, see `rows.rs`); `entries` are the
/// workgroup-per-row and the thread-per-row entry points.
fn launch_softmax(
    g: &GpuContext,
    (shader, [entry, serial]): (&'static str, [&'static str; 2]),
    (rows, cols, log): (usize, usize, bool),
    inputs: &[(&Buffer, Bind)],
    outputs: &[(&Buffer, Bind)],
) -> Result<()> {
    let log = ("LOG", log as u32 as f64);
    let (constants, serial_constants) = ([("WG", workgroup_size(cols) as f64), log], [log]);
    let params = row_params(rows, cols);
    let l = RowLaunch {
        kernel: (shader, entry),
        constants: &constants,
        params,
        rows,
        cols,
        check_indices: false,
        serial_entry: Some((serial, &serial_constants)),
    };
    launch_rows(g, l, inputs, outputs)
}

/// Softmax (or log-softmax when `log`) of each row of the contiguous
/// `[rows, cols]` f32 buffer `x`: `exp(x − max) / Σ exp(x − max)`, or
/// `(x − max) − ln Σ exp(x − max)`. Returns a new `[rows, cols]` buffer.
///
/// As in PyTorch, a row holding +∞ or only −∞ gives NaN.
pub fn softmax_rows(x: &Buffer, rows: usize, cols: usize, log: bool) -> Result<Buffer> {
    softmax_rows_io(x, Operands::F32, rows, cols, log)
}

/// [`softmax_rows`] of `x` stored as `io`: with [`Operands::F16`] the input
/// is packed f16 ([`Buffer::from_f16`](crate::Buffer::from_f16)'s layout), widened exactly as it is
/// loaded; the arithmetic and the output stay f32, so the result equals
/// [`softmax_rows`] of the widened values.
pub fn softmax_rows_io(x: &Buffer, io: Operands, rows: usize, cols: usize, log: bool) -> Result<Buffer> {
    const OP: &str = "softmax";
    let n = check_rows(OP, rows, cols)?;
    x.check_len(OP, "input", n, io.size())?;
    let dev = x.device();
    let out = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    if n == 0 {
        return Ok(out);
    }
    run_fallible(
        dev,
        |g| {
            let kernel = (shader(g, io, OP, x)?, ["softmax_fwd", "softmax_fwd_serial"]);
            launch_softmax(g, kernel, (rows, cols, log), &[(x, Bind::X(io))], &[(&out, Bind::Rows)])
        },
        || {
            let (hx, mut hy) = (x.host(), out.host_mut());
            let xs = host_f32(dev, &hx, io)?;
            per_row(dev.runs_fast_cpu(), (&mut f32s_mut(&mut hy)[..n], cols), |r, yr| {
                softmax_row(&xs[r * cols..(r + 1) * cols], yr, log)
            });
            Ok(())
        },
    )?;
    Ok(out)
}

/// Backward of [`softmax_rows`]: given its output `y` and the output
/// gradient `dy` (both contiguous `[rows, cols]`), returns
/// `dx = y·(dy − Σ dy·y)` for softmax or `dx = dy − exp(y)·Σ dy` for
/// log-softmax, the sums running over each row.
pub fn softmax_rows_backward(y: &Buffer, dy: &Buffer, rows: usize, cols: usize, log: bool) -> Result<Buffer> {
    const OP: &str = "softmax backward";
    let n = check_rows(OP, rows, cols)?;
    y.check_len(OP, "output", n, 4)?;
    dy.check_len(OP, "gradient", n, 4)?;
    let dev = y.device();
    Buffer::check_same_device(OP, dev, &[dy])?;
    let out = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    if n == 0 {
        return Ok(out);
    }
    run(
        dev,
        |g| {
            let inputs = [(dy, Bind::Rows), (y, Bind::Rows)];
            let shader = g.texture_variant("softmax", [n as u64 * 4; 2]);
            let kernel = (shader, ["softmax_bwd", "softmax_bwd_serial"]);
            launch_softmax(g, kernel, (rows, cols, log), &inputs, &[(&out, Bind::Rows)])
        },
        || {
            let (hy, hg, mut hd) = (y.host(), dy.host(), out.host_mut());
            let (ys, gs) = (f32s(&hy), f32s(&hg));
            per_row(dev.runs_fast_cpu(), (&mut f32s_mut(&mut hd)[..n], cols), |r, dr| {
                let (yr, gr) = (&ys[r * cols..(r + 1) * cols], &gs[r * cols..(r + 1) * cols]);
                softmax_backward_row(yr, gr, dr, log)
            });
        },
    )?;
    Ok(out)
}

/// The targets of a cross-entropy, as in PyTorch's two target forms.
#[derive(Clone, Copy, Debug)]
pub enum CeTarget<'a> {
    /// One u32 class index per row (`[rows]`).
    Classes(&'a Buffer),
    /// A probability distribution per row (f32 `[rows, cols]`).
    Probs(&'a Buffer),
}

impl CeTarget<'_> {
    fn buffer(&self) -> &Buffer {
        match self {
            CeTarget::Classes(b) | CeTarget::Probs(b) => b,
        }
    }

    fn code(&self) -> u32 {
        match self {
            CeTarget::Classes(_) => 0,
            CeTarget::Probs(_) => 1,
        }
    }
}

/// A cross-entropy problem over `rows` rows of `cols` class logits, shared by
/// [`cross_entropy_rows`] and [`cross_entropy_rows_backward`].
#[derive(Clone, Copy, Debug)]
pub struct CeArgs<'a> {
    /// Samples (rows of the logits).
    pub rows: usize,
    /// Classes (columns of the logits); at least 1.
    pub cols: usize,
    /// Class indices or probability rows.
    pub target: CeTarget<'a>,
    /// Optional class weights, f32 `[cols]`.
    pub weight: Option<&'a Buffer>,
    /// A class index whose rows contribute nothing (class targets only, as in PyTorch).
    pub ignore_index: Option<u32>,
    /// Label smoothing in `[0, 1]`.
    pub label_smoothing: f32,
}

impl CeArgs<'_> {
    fn check(&self, op: &'static str) -> Result<usize> {
        let n = check_rows(op, self.rows, self.cols)?;
        if self.cols == 0 && self.rows > 0 {
            return Err(Error::invalid(op, format!("logits [{}, 0] have no classes", self.rows)));
        }
        if !(0.0..=1.0).contains(&self.label_smoothing) {
            return Err(Error::invalid(op, format!("label_smoothing {} must be in [0, 1]", self.label_smoothing)));
        }
        match self.target {
            CeTarget::Classes(t) => t.check_len(op, "class target", self.rows, 4)?,
            CeTarget::Probs(t) => {
                if let Some(i) = self.ignore_index {
                    return Err(Error::invalid(
                        op,
                        format!("ignore_index {i} is not supported with probability targets"),
                    ));
                }
                t.check_len(op, "probability target", n, 4)?
            }
        }
        if let Some(w) = self.weight {
            w.check_len(op, "class weight", self.cols, 4)?;
        }
        Ok(n)
    }

    fn params(&self) -> Params {
        Params::of(&PARAMS)
            .set_u32("rows", self.rows)
            .set_u32("cols", self.cols)
            .set_u32("has_ignore", self.ignore_index.is_some() as usize)
            .set_u32("ignore", self.ignore_index.unwrap_or(0) as usize)
            .set_f32("smoothing", self.label_smoothing)
            .set_u32("site", crate::index_check::site("cross_entropy"))
    }

    /// The constants both entries of a kernel take (the workgroup entry
    /// adds its `WG`).
    fn constants(&self) -> [(&'static str, f64); 2] {
        [("TARGET", self.target.code() as f64), ("HAS_WEIGHT", self.weight.is_some() as u32 as f64)]
    }

    /// The kernel's bindings 1 to 3: `first` (bound as `bind`), the target,
    /// and the weights (or `first` again as a placeholder the kernel never reads).
    fn inputs<'b>(&'b self, first: &'b Buffer, bind: Bind) -> [(&'b Buffer, Bind); 3] {
        let target = match self.target {
            CeTarget::Classes(t) => (t, Bind::PerRow),
            CeTarget::Probs(t) => (t, Bind::Rows),
        };
        let weight = match self.weight {
            Some(w) => (w, Bind::Whole),
            None => (first, bind),
        };
        [(first, bind), target, weight]
    }

    /// One `ce_fwd` / `ce_bwd` launch over the rows (in ranges of rows past
    /// the binding limit, see `rows.rs`); `entries` are the workgroup-per-row
    /// and the thread-per-row entry points. The forward checks its class
    /// indices.
    fn launch(
        &self,
        g: &GpuContext,
        (shader, [entry, serial]): (&'static str, [&'static str; 2]),
        inputs: &[(&Buffer, Bind)],
        outputs: &[(&Buffer, Bind)],
    ) -> Result<()> {
        let shared = self.constants();
        let [target, weight] = shared;
        let constants = [("WG", workgroup_size(self.cols) as f64), target, weight];
        let (rows, cols, check_indices) = (self.rows, self.cols, entry == "ce_fwd");
        let l = RowLaunch {
            kernel: (shader, entry),
            constants: &constants,
            params: self.params(),
            rows,
            cols,
            check_indices,
            serial_entry: Some((serial, &shared)),
        };
        launch_rows(g, l, inputs, outputs)
    }

    /// The options as the twins read them.
    fn twin(&self) -> CrossEntropy {
        CrossEntropy {
            cols: self.cols,
            probs: matches!(self.target, CeTarget::Probs(_)),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
        }
    }
}

/// Fused softmax cross-entropy of the contiguous `[rows, cols]` f32 `logits`
/// (see the module docs for the formulas). Returns
///
/// * the per-row loss `[rows]` (0 for an ignored row),
/// * the per-row weight `[rows]` that `'mean'` divides by (0 for an ignored row),
/// * the softmax probabilities `[rows, cols]`, which the backward needs.
///
/// `'sum'` is `Σ loss`, `'mean'` is `Σ loss / Σ weight` and `'none'` the loss
/// itself. A class target ≥ `cols` that is not the ignore index is an
/// [`Error::IndexOutOfRange`]: returned here on the CPU backend; on a GPU
/// the kernel makes that row's loss and weight NaN and the next readback
/// returns the error (see `index_check.rs`).
pub fn cross_entropy_rows(logits: &Buffer, args: &CeArgs) -> Result<(Buffer, Buffer, Buffer)> {
    cross_entropy_rows_io(logits, Operands::F32, args)
}

/// [`cross_entropy_rows`] of `logits` stored as `io`: with
/// [`Operands::F16`] the logits are packed f16 ([`Buffer::from_f16`](crate::Buffer::from_f16)'s
/// layout), widened exactly as they are loaded; targets, weights, the
/// arithmetic and all three results stay f32, so [`cross_entropy_rows_backward`]
/// applies unchanged.
pub fn cross_entropy_rows_io(logits: &Buffer, io: Operands, args: &CeArgs) -> Result<(Buffer, Buffer, Buffer)> {
    const OP: &str = "cross_entropy";
    let n = args.check(OP)?;
    logits.check_len(OP, "logits", n, io.size())?;
    let dev = logits.device();
    let mut others = vec![args.target.buffer()];
    others.extend(args.weight);
    Buffer::check_same_device(OP, dev, &others)?;
    let rows = args.rows;
    let loss = Buffer::alloc_overwritten(dev, rows as u64 * 4)?;
    let weight = Buffer::alloc_overwritten(dev, rows as u64 * 4)?;
    let probs = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    if rows == 0 {
        return Ok((loss, weight, probs));
    }
    if let (CeTarget::Classes(t), None) = (args.target, dev.gpu_ctx()) {
        let targets = t.host();
        let counted = targets[..rows].iter().copied().filter(|&t| args.ignore_index != Some(t));
        crate::index_check::check_host(OP, counted, args.cols)?;
    }
    run_fallible(
        dev,
        |g| {
            let outputs = [(&loss, Bind::PerRow), (&weight, Bind::PerRow), (&probs, Bind::Rows)];
            args.launch(
                g,
                (shader(g, io, OP, logits)?, ["ce_fwd", "ce_fwd_serial"]),
                &args.inputs(logits, Bind::X(io)),
                &outputs,
            )
        },
        || {
            let (hx, ht) = (logits.host(), args.target.buffer().host());
            let hw = args.weight.map(|w| w.host());
            let weights = hw.as_ref().map(|w| f32s(w));
            let (mut hl, mut hr, mut hp) = (loss.host_mut(), weight.host_mut(), probs.host_mut());
            let (xs, ps) = (host_f32(dev, &hx, io)?, &mut f32s_mut(&mut hp)[..n]);
            let (cols, ht) = (args.cols, &ht[..]);
            // Each row's (loss, weight), stored below.
            let mut lw = vec![(0.0f32, 0.0f32); rows];
            let ce = args.twin();
            per_row2(dev.runs_fast_cpu(), (ps, cols), (&mut lw, 1), |r, pr, lw| {
                lw[0] = ce.forward_row(r, &xs[r * cols..(r + 1) * cols], ht, weights, pr);
            });
            let (ls, ws) = (f32s_mut(&mut hl), f32s_mut(&mut hr));
            for (r, (l, w)) in lw.into_iter().enumerate() {
                (ls[r], ws[r]) = (l, w);
            }
            Ok(())
        },
    )?;
    Ok((loss, weight, probs))
}

/// Backward of [`cross_entropy_rows`]: given the saved `probs` and the
/// gradient of each row's loss `grad` (`[rows]`; for `'mean'` that is the
/// output gradient divided by `Σ weight`), returns
/// `dlogits[r, c] = grad[r]·(probs[r, c]·Σ_c q − q_c)`: zero rows where the
/// target is ignored, NaN rows where it is out of range.
pub fn cross_entropy_rows_backward(probs: &Buffer, args: &CeArgs, grad: &Buffer) -> Result<Buffer> {
    const OP: &str = "cross_entropy backward";
    let n = args.check(OP)?;
    probs.check_len(OP, "probabilities", n, 4)?;
    grad.check_len(OP, "gradient", args.rows, 4)?;
    let dev = probs.device();
    let mut others = vec![args.target.buffer(), grad];
    others.extend(args.weight);
    Buffer::check_same_device(OP, dev, &others)?;
    let out = Buffer::alloc_overwritten(dev, n as u64 * 4)?;
    if n == 0 {
        return Ok(out);
    }
    run(
        dev,
        |g| {
            let [a, b, c] = args.inputs(probs, Bind::Rows);
            args.launch(
                g,
                ("softmax", ["ce_bwd", "ce_bwd_serial"]),
                &[a, b, c, (grad, Bind::PerRow)],
                &[(&out, Bind::Rows)],
            )
        },
        || {
            let (hp, ht, hg) = (probs.host(), args.target.buffer().host(), grad.host());
            let hw = args.weight.map(|w| w.host());
            let weights = hw.as_ref().map(|w| f32s(w));
            let (ps, gs) = (f32s(&hp), f32s(&hg));
            let mut hd = out.host_mut();
            let (cols, ht, ce) = (args.cols, &ht[..], args.twin());
            per_row(dev.runs_fast_cpu(), (&mut f32s_mut(&mut hd)[..n], cols), |r, dr| {
                ce.backward_row(r, &ps[r * cols..(r + 1) * cols], gs[r], ht, weights, dr)
            });
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    #[test]
    fn large_magnitudes_are_stable_on_the_twin() {
        let c = Device::cpu();
        let x = Buffer::from_f32(&c, &[1000.0, 1001.0, 1002.0]).unwrap();
        let y = softmax_rows(&x, 1, 3, false).unwrap().to_f32().unwrap();
        let want = [0.090_030_57, 0.244_728_47, 0.665_240_94];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }
}

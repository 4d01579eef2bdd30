//! 2-D pooling over dense NCHW data (`shaders/pool.wgsl`): max pooling with
//! argmax, average pooling, adaptive average pooling, and their backward
//! passes, with PyTorch's semantics (`ceil_mode` included: [`PoolWindow`]).
//!
//! Every backward is a *gather*: one thread per input pixel sums the output
//! gradients of the few windows that reach it, in a fixed order. That needs
//! the window geometry (which is why the backward functions take it) but no
//! atomics, so gradients are deterministic and equal the CPU twin's bit for
//! bit in summation order. (Max pooling's backward could instead be
//! `index::scatter_add` of the gradient at the argmax, but its float atomics
//! add in thread order: results would vary run to run.)
//!
//! Values may be stored as f16 (mixed precision: the `*_io` functions with
//! [`Operands::F16`]): the input (or output gradient) is widened exactly,
//! the arithmetic is f32 (an average sums in f32 and rounds once, a maximum
//! is exact), and the output (or input gradient) is f16, rounded to nearest
//! even. The argmax stays u32. The GPU kernels are `pool.wgsl` with its
//! storage include swapped (`pool_f16`, `pool_f16_native`, see
//! [`HalfLoads`](super::operands::HalfLoads) and
//! [`with_half_loads`](super::operands::with_half_loads)); each thread owns a
//! whole packed word (two elements, each from its own window).

use super::chunks::by_rows;
pub use super::operands::Operands;
use super::operands::{host_f32, thread_half_loads, HostOutput};
use super::{dispatch, groups, run_fallible, Kind, Params, ParamsDecl};
use crate::cpu::{self, per_row, per_row2};
use crate::gpu::product_store::{ProductLaunch, ProductStore, Tail, Takes};
use crate::gpu::GpuContext;
use crate::kernels::pool::{Axis, Pool};
use crate::layout::Dims;
use crate::{Buffer, Error, Result};

/// A pooling launch's shader, override constants (`ADAPTIVE`, the window,
/// the plane sizes), parameters and elements per thread.
type LaunchParts = (&'static str, [(&'static str, f64); 11], Params, usize);

/// A deferred pooling backward pass, rebuilt for the tail the fuser finds:
/// the `pool_relu_grad` variants, with the ReLU's output bound third (the
/// launch's first input pads an average pooling's unused argmax slot).
struct BackwardStore {
    /// The shader without a tail (`pool`, `pool_tex`, `pool_f16`,
    /// `pool_f16_native`) and its `pool_relu_grad` variant.
    shader: &'static str,
    tail_shader: &'static str,
    /// It stores f16 (its readers widen it and narrow their results).
    f16: bool,
    entry: &'static str,
    constants: smallvec::SmallVec<[(&'static str, f64); 32]>,
    params: smallvec::SmallVec<[u32; 64]>,
    workgroups: u32,
    /// Inputs of the launch without a tail.
    inputs: usize,
}

impl ProductStore for BackwardStore {
    fn recorded(&self) -> (&'static str, &'static str, u32) {
        (self.shader, self.entry, self.workgroups)
    }

    fn takes(&self) -> Takes {
        Takes { relu_grad: true, rounds: self.f16, ..Takes::default() }
    }

    fn constants(&self) -> &[(&'static str, f64)] {
        &self.constants
    }

    fn launch(&self, tail: &Tail) -> ProductLaunch {
        let (shader, inputs) = if tail.relu_grad { (self.tail_shader, 3) } else { (self.shader, self.inputs) };
        let mut constants = self.constants.clone();
        if tail.relu_grad && tail.rounds {
            constants.push(("ROUND_TAIL", 1.0));
        }
        ProductLaunch {
            shader,
            entry: self.entry,
            constants,
            params: self.params.clone(),
            windows: smallvec::SmallVec::new(),
            workgroups: self.workgroups,
            inputs,
            residual_slot: None,
            relu_grad_slot: Some(2),
            binds_pre: false,
        }
    }
}

impl Pool {
    fn out_shape(&self, shape: &[usize]) -> Dims {
        [shape[0], shape[1], self.rows.out, self.cols.out].into()
    }

    /// Checks sizes against the u32 kernel arithmetic (adaptive windows
    /// multiply an index by a size).
    fn check(&self, op: &'static str) -> Result<Self> {
        super::check_u32(op, self.in_len().max(self.out_len()))?;
        for a in [self.rows, self.cols] {
            super::check_u32(op, (a.size + 1) * a.out + a.size + 2 * a.pad + a.kernel * a.dilation)?;
        }
        Ok(*self)
    }

    /// Records one `pool.wgsl` launch over `n` elements with values stored
    /// as `io` (one thread per element, or per word of two for f16).
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        g: &GpuContext,
        op: &'static str,
        io: Operands,
        entry: &'static str,
        inputs: &[&Buffer],
        outputs: &[&Buffer],
        n: usize,
    ) -> Result<()> {
        if super::past_limit(g, inputs.iter().chain(outputs).copied()) {
            return self.launch_chunks(g, (op, io, entry), inputs, outputs, n);
        }
        let (shader, constants, params, lanes) = self.parts(g, op, io, inputs, n)?;
        dispatch(g, shader, entry, &constants, &params, inputs, outputs, groups(n.div_ceil(lanes), 256))
    }

    /// A backward pass (`max_backward`, `avg_backward`) into `out`: one
    /// that one launch binds whole waits in the fuser's run as a product,
    /// so that a ReLU's gradient reading its result merges into its store
    /// (`gpu/tails.rs`: `max_pool(relu(x))`'s backward, or a global average
    /// pool's after a ResNet block, on f32 or f16 values); others launch at once.
    #[allow(clippy::too_many_arguments)]
    fn launch_backward(
        &self,
        g: &GpuContext,
        op: &'static str,
        io: Operands,
        entry: &'static str,
        inputs: &[&Buffer],
        out: &Buffer,
        n: usize,
    ) -> Result<()> {
        let whole = !super::past_limit(g, inputs.iter().copied().chain([out]));
        if !whole || !g.fusion_enabled() {
            return self.launch(g, op, io, entry, inputs, &[out], n);
        }
        let (shader, constants, params, lanes) = self.parts(g, op, io, inputs, n)?;
        let store = BackwardStore {
            shader,
            tail_shader: crate::kernels::pool::relu_grad_variant(shader),
            f16: io == Operands::F16,
            entry,
            constants: constants.into_iter().collect(),
            params: params.finish().into(),
            workgroups: groups(n.div_ceil(lanes), 256),
            inputs: inputs.len(),
        };
        super::launch::dispatch_product(g, inputs, out, n, Box::new(store))
    }

    /// A launch's shader (by `io`, and for f32 by whether the device reads
    /// `inputs` through textures), constants, parameters and lanes per thread.
    fn parts(
        &self,
        g: &GpuContext,
        op: &'static str,
        io: Operands,
        inputs: &[&Buffer],
        n: usize,
    ) -> Result<LaunchParts> {
        let (r, c) = (self.rows, self.cols);
        let params = Params::of(&PARAMS)
            .set_u32("n", n)
            .set_u32("ph", r.pad)
            .set_u32("pw", c.pad)
            .set_u32("count_include_pad", self.count_include_pad as usize)
            .set_u32("relu", self.relu as usize);
        // Adaptive windows have no kernel (0): 1 keeps the shader's
        // `KH - 1` override expressions from wrapping at pipeline creation.
        let [kh, kw, sh, sw, dh, dw] =
            super::window_constants((r.kernel.max(1), c.kernel.max(1)), (r.stride, c.stride), (r.dilation, c.dilation));
        let [h, w, oh, ow] = [("H", r.size), ("W", c.size), ("OH", r.out), ("OW", c.out)].map(|(k, v)| (k, v as f64));
        let constants = [("ADAPTIVE", if r.adaptive { 1.0 } else { 0.0 }), kh, kw, sh, sw, dh, dw, h, w, oh, ow];
        let (shader, lanes) = match io {
            Operands::F32 => {
                let bytes = inputs.iter().map(|b| b.len_bytes());
                (g.texture_variant("pool", bytes), 1)
            }
            Operands::F16 if thread_half_loads().native(g, op)? => ("pool_f16_native", 2),
            Operands::F16 => ("pool_f16", 2),
        };
        Ok((shader, constants, params, lanes))
    }

    /// [`launch`](Self::launch) past the binding limit: planes are
    /// independent and every buffer holds the same number of bytes per
    /// plane, so the launch runs on chunks of planes (`chunks.rs`).
    fn launch_chunks(
        &self,
        g: &GpuContext,
        (op, io, entry): (&'static str, Operands, &'static str),
        inputs: &[&Buffer],
        outputs: &[&Buffer],
        n: usize,
    ) -> Result<()> {
        let planes = self.planes;
        by_rows(g, &format!("{op}: one plane"), planes, inputs, outputs, |count, ins, outs| {
            Pool { planes: count, ..*self }.launch(g, op, io, entry, ins, outs, n / planes * count)
        })
    }

    /// The fast max pooling's window taps (rows, cols): each window's
    /// in-bounds input indices in kernel order, as the reference scans them.
    pub(crate) fn max_taps(&self) -> (cpu::pooling::Taps, cpu::pooling::Taps) {
        let taps = |a: Axis| {
            cpu::pooling::Taps::new(a.out, move |i| {
                (0..a.kernel)
                    .map(move |k| i * a.stride + k * a.dilation)
                    .filter(move |&p| p >= a.pad && p < a.size + a.pad)
                    .map(move |p| p - a.pad)
            })
        };
        (taps(self.rows), taps(self.cols))
    }
}

/// Splits an NCHW shape into (planes, H, W).
fn nchw(op: &'static str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    match *shape {
        [n, c, h, w] => Ok((n * c, h, w)),
        _ => Err(Error::invalid(op, format!("expects an [N, C, H, W] shape, got {shape:?}"))),
    }
}

/// A fixed pooling window over (height, width): PyTorch's `kernel_size`,
/// `stride`, `padding`, `dilation` and `ceil_mode`, each pair (h, w).
///
/// [`PoolWindow::new`] takes PyTorch's defaults (stride = kernel, no
/// padding, no dilation, output sizes rounded down); the setters change
/// one at a time:
///
/// ```
/// use wgrad_gpu_core::ops::pool::PoolWindow;
/// // nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
/// let w = PoolWindow::new((3, 3)).stride((2, 2)).padding((1, 1)).ceil_mode(true);
/// assert_eq!(w.output_size((8, 7)).unwrap(), (5, 4));
/// ```
///
/// The padding may be at most half the kernel (PyTorch's rule). With
/// `ceil_mode` an output size is rounded up, so the last window may run
/// past the padded input, but a window never starts in the right padding.
/// Average pooling has no dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolWindow {
    /// The window's size.
    pub kernel: (usize, usize),
    /// How far it moves between outputs.
    pub stride: (usize, usize),
    /// Implicit padding on both sides (−∞ for max pooling, zeros for average).
    pub padding: (usize, usize),
    /// Spacing between the window's elements (max pooling only).
    pub dilation: (usize, usize),
    /// Output sizes rounded up instead of down.
    pub ceil_mode: bool,
}

impl PoolWindow {
    /// A `kernel` window with PyTorch's defaults: stride = kernel, no
    /// padding, dilation 1, `ceil_mode` off.
    pub fn new(kernel: (usize, usize)) -> PoolWindow {
        PoolWindow { kernel, stride: kernel, padding: (0, 0), dilation: (1, 1), ceil_mode: false }
    }

    /// With this stride.
    pub fn stride(self, stride: (usize, usize)) -> PoolWindow {
        PoolWindow { stride, ..self }
    }

    /// With this padding on both sides.
    pub fn padding(self, padding: (usize, usize)) -> PoolWindow {
        PoolWindow { padding, ..self }
    }

    /// With this dilation.
    pub fn dilation(self, dilation: (usize, usize)) -> PoolWindow {
        PoolWindow { dilation, ..self }
    }

    /// With output sizes rounded up (`true`) or down.
    pub fn ceil_mode(self, ceil_mode: bool) -> PoolWindow {
        PoolWindow { ceil_mode, ..self }
    }

    /// The output (height, width) for an input of `(h, w)`, or the error a
    /// pooling would report.
    pub fn output_size(&self, (h, w): (usize, usize)) -> Result<(usize, usize)> {
        let (rows, cols) = self.axes("PoolWindow::output_size", &[1, 1, h, w])?;
        Ok((rows.out, cols.out))
    }

    /// The window along rows and columns for an NCHW `shape`, checked.
    fn axes(&self, op: &'static str, shape: &[usize]) -> Result<(Axis, Axis)> {
        let (_, h, w) = nchw(op, shape)?;
        let on = |what: &str, size, (k, s, p, d): (usize, usize, usize, usize)| {
            Axis::fixed(op, &format!("{what} of {shape:?}"), size, [k, s, p, d], self.ceil_mode)
        };
        let (k, s, p, d) = (self.kernel, self.stride, self.padding, self.dilation);
        Ok((on("height", h, (k.0, s.0, p.0, d.0))?, on("width", w, (k.1, s.1, p.1, d.1))?))
    }
}

fn fixed_pool(op: &'static str, shape: &[usize], window: PoolWindow, count_include_pad: bool) -> Result<Pool> {
    let (planes, _, _) = nchw(op, shape)?;
    let (rows, cols) = window.axes(op, shape)?;
    Pool { planes, rows, cols, count_include_pad, relu: false }.check(op)
}

/// An average pooling's window: [`fixed_pool`]'s, without dilation.
fn avg_pool(op: &'static str, shape: &[usize], window: PoolWindow, count_include_pad: bool) -> Result<Pool> {
    if window.dilation != (1, 1) {
        return Err(Error::invalid(op, format!("average pooling has no dilation, got {:?}", window.dilation)));
    }
    fixed_pool(op, shape, window, count_include_pad)
}

fn adaptive_pool(op: &'static str, shape: &[usize], out: (usize, usize)) -> Result<Pool> {
    let (planes, h, w) = nchw(op, shape)?;
    let rows = Axis::adaptive(op, &format!("height of {shape:?}"), h, out.0)?;
    let cols = Axis::adaptive(op, &format!("width of {shape:?}"), w, out.1)?;
    Pool { planes, rows, cols, count_include_pad: true, relu: false }.check(op)
}

/// `pool.wgsl`'s `Params`: the threads, then the (rows, cols) padding (the
/// rest of the window and the plane sizes are override constants), the
/// average's divisor rule and max pooling's fused ReLU.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "pool",
    fields: &[
        ("n", Kind::U32),
        ("ph", Kind::U32),
        ("pw", Kind::U32),
        ("count_include_pad", Kind::U32),
        ("relu", Kind::U32),
    ],
};

/// torch.nn.functional.max_pool2d with `return_indices=True` on the dense
/// NCHW buffer `x` of `shape`: returns the pooled values, the u32 argmax of
/// each window (flat index `y·W + x` into its H×W image, like PyTorch's
/// indices) and the output shape `[N, C, OH, OW]` with
/// `OH = (H + 2·ph − dh·(kh − 1) − 1) / sh + 1` (rounded up with
/// `ceil_mode`, see [`PoolWindow`]).
///
/// Padding reads as −∞. Ties pick the first element in row-major window
/// order; a NaN takes over from any value (PyTorch's rule).
pub fn max_pool2d(x: &Buffer, shape: &[usize], window: PoolWindow) -> Result<(Buffer, Buffer, Dims)> {
    max_pool2d_io(x, shape, window, Operands::F32)
}

/// [`max_pool2d`] with `x` and the returned values stored as `io` (for
/// [`Operands::F16`] both f16: the maximum of f16 values is exact).
pub fn max_pool2d_io(x: &Buffer, shape: &[usize], window: PoolWindow, io: Operands) -> Result<(Buffer, Buffer, Dims)> {
    max_forward("max_pool2d", x, shape, window, io, false)
}

/// `relu(max_pool2d(x))`, which equals `max_pool2d(relu(x))` bit for bit
/// (the maximum of ReLUs is the ReLU of the maximum, ties and NaNs
/// included), in one launch: the window maxima of `relu(x)`, stored as
/// `io`, and an argmax that is `u32::MAX` (no element) wherever that maximum is not
/// positive. [`max_pool2d_backward_io`] with that argmax is then ReLU's
/// backward and the pooling's in one launch, where the two ops would take a
/// pass over the four times larger input gradient to mask it.
pub fn max_pool2d_relu_io(
    x: &Buffer,
    shape: &[usize],
    window: PoolWindow,
    io: Operands,
) -> Result<(Buffer, Buffer, Dims)> {
    max_forward("max_pool2d_relu", x, shape, window, io, true)
}

fn max_forward(
    op: &'static str,
    x: &Buffer,
    shape: &[usize],
    window: PoolWindow,
    io: Operands,
    relu: bool,
) -> Result<(Buffer, Buffer, Dims)> {
    let pool = Pool { relu, ..fixed_pool(op, shape, window, false)? };
    x.check_len(op, "input", pool.in_len(), io.size())?;
    let n = pool.out_len();
    let dev = x.device();
    let (out, arg) = (Buffer::alloc(dev, n as u64 * io.size())?, Buffer::alloc(dev, n as u64 * 4)?);
    run_fallible(
        dev,
        |g| pool.launch(g, op, io, "max_forward", &[x], &[&out, &arg], n),
        || {
            let (xs, mut ys, mut is) = (x.host(), out.host_mut(), arg.host_mut());
            let (xs, (il, ol)) = (host_f32(dev, &xs, io)?, pool.plane_lens());
            let mut y = HostOutput::new(dev, &mut ys, n, io)?;
            let fast = dev.runs_fast_cpu();
            let taps = fast.then(|| pool.max_taps());
            per_row2(fast, (y.values(), ol), (&mut is[..n], ol), |p, y, arg| match &taps {
                Some((rows, cols)) => {
                    cpu::pooling::max_forward_plane(rows, cols, pool.cols.size, relu, &xs[p * il..][..il], y, arg)
                }
                None => pool.max_forward_plane(&xs[p * il..][..il], y, arg),
            });
            y.finish();
            Ok(())
        },
    )?;
    Ok((out, arg, pool.out_shape(shape)))
}

/// Backward of [`max_pool2d`]: the input gradient (dense, `in_shape`), where
/// each pixel gets the sum of the output gradients of the windows whose
/// argmax it is. Takes the forward's window to find those windows.
pub fn max_pool2d_backward(
    grad_out: &Buffer,
    argmax: &Buffer,
    in_shape: &[usize],
    window: PoolWindow,
) -> Result<Buffer> {
    max_pool2d_backward_io(grad_out, argmax, in_shape, window, Operands::F32)
}

/// [`max_pool2d_backward`] with the output gradient and the returned input
/// gradient stored as `io` (for [`Operands::F16`]: summed in f32, rounded once).
pub fn max_pool2d_backward_io(
    grad_out: &Buffer,
    argmax: &Buffer,
    in_shape: &[usize],
    window: PoolWindow,
    io: Operands,
) -> Result<Buffer> {
    const OP: &str = "max_pool2d_backward";
    let pool = fixed_pool(OP, in_shape, window, false)?;
    grad_out.check_len(OP, "output gradient", pool.out_len(), io.size())?;
    argmax.check_len(OP, "argmax", pool.out_len(), 4)?;
    let dev = grad_out.device();
    Buffer::check_same_device(OP, dev, &[argmax])?;
    let n = pool.in_len();
    let dx = Buffer::alloc(dev, n as u64 * io.size())?;
    run_fallible(
        dev,
        |g| pool.launch_backward(g, OP, io, "max_backward", &[grad_out, argmax], &dx, n),
        || {
            let (gs, is, mut ds) = (grad_out.host(), argmax.host(), dx.host_mut());
            let (gs, (il, ol)) = (host_f32(dev, &gs, io)?, pool.plane_lens());
            let mut d = HostOutput::new(dev, &mut ds, n, io)?;
            let fast = dev.runs_fast_cpu();
            per_row(fast, (d.values(), il), |p, d| {
                let (g, arg) = (&gs[p * ol..][..ol], &is[p * ol..][..ol]);
                match fast {
                    true => cpu::pooling::max_backward_scatter(g, arg, d),
                    false => pool.max_backward_plane(g, arg, d),
                }
            });
            d.finish();
            Ok(())
        },
    )?;
    Ok(dx)
}

fn avg_forward(op: &'static str, pool: Pool, x: &Buffer, shape: &[usize], io: Operands) -> Result<(Buffer, Dims)> {
    x.check_len(op, "input", pool.in_len(), io.size())?;
    let n = pool.out_len();
    let dev = x.device();
    let out = Buffer::alloc(dev, n as u64 * io.size())?;
    run_fallible(
        dev,
        |g| pool.launch(g, op, io, "avg_forward", &[x], &[&out], n),
        || {
            let (xs, mut ys) = (x.host(), out.host_mut());
            let (xs, (il, ol)) = (host_f32(dev, &xs, io)?, pool.plane_lens());
            let mut y = HostOutput::new(dev, &mut ys, n, io)?;
            per_row(dev.runs_fast_cpu(), (y.values(), ol), |p, y| pool.avg_forward_plane(&xs[p * il..][..il], y));
            y.finish();
            Ok(())
        },
    )?;
    Ok((out, pool.out_shape(shape)))
}

fn avg_backward(op: &'static str, pool: Pool, grad_out: &Buffer, io: Operands) -> Result<Buffer> {
    grad_out.check_len(op, "output gradient", pool.out_len(), io.size())?;
    let n = pool.in_len();
    let dev = grad_out.device();
    let dx = Buffer::alloc(dev, n as u64 * io.size())?;
    run_fallible(
        dev,
        |g| pool.launch_backward(g, op, io, "avg_backward", &[grad_out], &dx, n),
        || {
            let (gs, mut ds) = (grad_out.host(), dx.host_mut());
            let (gs, (il, ol)) = (host_f32(dev, &gs, io)?, pool.plane_lens());
            let mut d = HostOutput::new(dev, &mut ds, n, io)?;
            per_row(dev.runs_fast_cpu(), (d.values(), il), |p, d| pool.avg_backward_plane(&gs[p * ol..][..ol], d));
            d.finish();
            Ok(())
        },
    )?;
    Ok(dx)
}

/// torch.nn.functional.avg_pool2d on the dense NCHW buffer `x` of
/// `shape` over `window` (no dilation); returns the pooled values and
/// `[N, C, OH, OW]`.
///
/// Each window's sum is divided by the kernel area when
/// `count_include_pad` (PyTorch's default, true), else by the number of
/// in-bounds elements; with `ceil_mode`, a last window that runs past the
/// padded input counts only up to its end, as in PyTorch.
pub fn avg_pool2d(x: &Buffer, shape: &[usize], window: PoolWindow, count_include_pad: bool) -> Result<(Buffer, Dims)> {
    avg_pool2d_io(x, shape, window, count_include_pad, Operands::F32)
}

/// [`avg_pool2d`] with `x` and the returned values stored as `io` (for
/// [`Operands::F16`]: each window summed and divided in f32, rounded once).
pub fn avg_pool2d_io(
    x: &Buffer,
    shape: &[usize],
    window: PoolWindow,
    count_include_pad: bool,
    io: Operands,
) -> Result<(Buffer, Dims)> {
    const OP: &str = "avg_pool2d";
    avg_forward(OP, avg_pool(OP, shape, window, count_include_pad)?, x, shape, io)
}

/// Backward of [`avg_pool2d`]: the dense input gradient of `in_shape`, each
/// pixel summing `grad / divisor` over the windows that hold it.
pub fn avg_pool2d_backward(
    grad_out: &Buffer,
    in_shape: &[usize],
    window: PoolWindow,
    count_include_pad: bool,
) -> Result<Buffer> {
    avg_pool2d_backward_io(grad_out, in_shape, window, count_include_pad, Operands::F32)
}

/// [`avg_pool2d_backward`] with the output gradient and the returned input
/// gradient stored as `io` (f32 sums, rounded once for f16).
pub fn avg_pool2d_backward_io(
    grad_out: &Buffer,
    in_shape: &[usize],
    window: PoolWindow,
    count_include_pad: bool,
    io: Operands,
) -> Result<Buffer> {
    const OP: &str = "avg_pool2d_backward";
    avg_backward(OP, avg_pool(OP, in_shape, window, count_include_pad)?, grad_out, io)
}

/// torch.nn.functional.adaptive_avg_pool2d on the dense NCHW buffer `x` of
/// `shape`: output cell `(i, j)` averages rows `floor(i·H/OH) ..
/// ceil((i+1)·H/OH)` and the same for columns (windows overlap when the
/// sizes do not divide). Returns the values and `[N, C, OH, OW]`. Global
/// average pooling is `out_size = (1, 1)`.
pub fn adaptive_avg_pool2d(x: &Buffer, shape: &[usize], out_size: (usize, usize)) -> Result<(Buffer, Dims)> {
    adaptive_avg_pool2d_io(x, shape, out_size, Operands::F32)
}

/// [`adaptive_avg_pool2d`] with `x` and the returned values stored as `io`
/// (f32 sums, rounded once for f16).
pub fn adaptive_avg_pool2d_io(
    x: &Buffer,
    shape: &[usize],
    out_size: (usize, usize),
    io: Operands,
) -> Result<(Buffer, Dims)> {
    const OP: &str = "adaptive_avg_pool2d";
    avg_forward(OP, adaptive_pool(OP, shape, out_size)?, x, shape, io)
}

/// Backward of [`adaptive_avg_pool2d`]: the dense input gradient of `in_shape`.
pub fn adaptive_avg_pool2d_backward(grad_out: &Buffer, in_shape: &[usize], out_size: (usize, usize)) -> Result<Buffer> {
    adaptive_avg_pool2d_backward_io(grad_out, in_shape, out_size, Operands::F32)
}

/// [`adaptive_avg_pool2d_backward`] with the output gradient and the returned
/// input gradient stored as `io`.
pub fn adaptive_avg_pool2d_backward_io(
    grad_out: &Buffer,
    in_shape: &[usize],
    out_size: (usize, usize),
    io: Operands,
) -> Result<Buffer> {
    const OP: &str = "adaptive_avg_pool2d_backward";
    avg_backward(OP, adaptive_pool(OP, in_shape, out_size)?, grad_out, io)
}

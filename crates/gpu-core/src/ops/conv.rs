//! Convolutions over NCHW tensors with PyTorch's conv2d semantics (stride,
//! asymmetric zero padding, dilation, groups): the forward pass and both
//! gradients as *implicit GEMM* on the matmul kernels, and the explicit
//! lowering `im2col` / `col2im` (`shaders/conv.wgsl`) that defines it.
//!
//! # Implicit GEMM
//!
//! A convolution is a matrix product once every receptive field is laid out
//! as a column: `y[n, g] = W[g] @ cols[n, g]`. Writing those columns out
//! costs `kernel_h * kernel_w` times the input in memory and traffic, so the
//! three products are run on the batched matmul kernels (both families) with
//! a B operand that their loaders *gather* from the NCHW tensor on the fly
//! (`B_CONV` in `shaders/matmul.wgsl`); no column buffer exists:
//!
//! | op | A | gathered B | output |
//! |---|---|---|---|
//! | [`conv2d`] | `W[g]` `[OC/G, K]` | columns of `x[n, g]` `[K, OH·OW]` | `y` `[N, OC, OH, OW]` |
//! | [`conv2d_weight_grad`] | `dY[n, g]` `[OC/G, OH·OW]` | columns transposed `[OH·OW, K]` | `dW` (summed over n) |
//! | [`conv2d_input_grad`] | `W[g]ᵀ` `[C/G, OC/G·kh·kw]` | `dY[n, g]` seen from each input pixel | `dx` `[N, C, H, W]` |
//!
//! (`K = C/G · kh · kw`.) The input gradient gathers, for input pixel
//! `(ih, iw)` and tap `(ki, kj)`, the output position with
//! `oh·stride + ki·dilation = ih + pad` when that has an integer solution
//! inside the output, else 0; for stride > 1 most taps are zeros (the
//! product does `stride_h·stride_w` times the needed multiply-adds) but no
//! case needs a column buffer. Groups (depthwise included) are batch
//! dims of the products; the transposed convolution is
//! [`conv2d_input_grad`] forward and [`conv2d`] / [`conv2d_weight_grad`]
//! backward. `im2col` / `col2im` stay as the explicit definition the tests
//! compare against; the autograd ops no longer launch them.
//!
//! # Why a matrix product at all
//!
//! Lowering to products lets all convolutions run on the one tuned batched
//! [`matmul`](super::matmul::matmul) kernel family instead of a family of
//! direct-convolution kernels, each of which would need its own tiling work
//! per shape.
//!
//! # Column layout
//!
//! `cols` is dense `[N, groups, (C/groups) * kernel_h * kernel_w, OH * OW]`:
//! row `(c * kernel_h + ki) * kernel_w + kj` (with `c` the channel within its
//! group) holds, for every output position `(oh, ow)` in column
//! `oh * OW + ow`, the input pixel under kernel tap `(ki, kj)`:
//! `x[n, g * C/groups + c, oh * stride_h - pad_top + ki * dilation_h,
//! ow * stride_w - pad_left + kj * dilation_w]`, or 0 where that lies in the
//! padding. This is the same memory as `[N, C, kernel_h, kernel_w, OH, OW]`,
//! so the kernels are oblivious to groups; a weight `[OC, C/groups, kh, kw]`
//! viewed as `[1, groups, OC/groups, (C/groups) * kh * kw]` multiplies it
//! directly (batch dims broadcast), and the product `[N, groups, OC/groups,
//! OH * OW]` *is* the NCHW output.

use super::matmul::{conv_matmul, ConvGather, ConvOperand, Epilogue, MatmulConfig, MatmulKernel, Operands};
use super::operands::{host_f32, HostOutput};
use super::reduce::{reduce, ReduceOp};
use super::{f32s, f32s_mut, run, run_fallible, Kind, Params, ParamsDecl};
use crate::gpu::{GpuContext, Launch};
use crate::kernels::conv as twin;
pub use crate::kernels::conv::ConvGeometry;
use crate::layout::Layout;
use crate::{Buffer, Error, Result};

/// `conv.wgsl`'s uniform block.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "conv",
    fields: &[
        ("n", Kind::U32),
        ("in_h", Kind::U32),
        ("in_w", Kind::U32),
        ("out_h", Kind::U32),
        ("out_w", Kind::U32),
        ("pad_top", Kind::U32),
        ("pad_left", Kind::U32),
    ],
};

// The launch half of the geometry: its uniform block and override
// constants belong with the kernels they feed, not in `kernels/`, which
// knows no parameter blocks.
impl ConvGeometry {
    /// The `conv.wgsl` uniform block for `threads` threads.
    fn params(&self, threads: usize) -> Params {
        Params::of(&PARAMS)
            .set_u32("n", threads)
            .set_u32("in_h", self.in_h)
            .set_u32("in_w", self.in_w)
            .set_u32("out_h", self.out_h())
            .set_u32("out_w", self.out_w())
            .set_u32("pad_top", self.pad_top)
            .set_u32("pad_left", self.pad_left)
    }

    /// The `conv.wgsl` override constants: the kernel geometry, and whether
    /// threads take whole rows (`rows`).
    fn constants(&self, rows: bool) -> [(&'static str, f64); 7] {
        let [kh, kw, sh, sw, dh, dw] = self.kernel_constants();
        [kh, kw, sh, sw, dh, dw, ("ROWS", if rows { 1.0 } else { 0.0 })]
    }

    /// The kernel geometry as the `window.wgsl` override constants of
    /// `conv.wgsl` (the implicit-GEMM matmul takes [`gather_constants`](Self::gather_constants)).
    fn kernel_constants(&self) -> [(&'static str, f64); 6] {
        super::window_constants(
            (self.kernel_h, self.kernel_w),
            (self.stride_h, self.stride_w),
            (self.dilation_h, self.dilation_w),
        )
    }

    /// The window constants of the implicit-GEMM matmul's gathered B: the
    /// stride is a parameter of the forward and weight-gradient gathers
    /// (left at 1 here, so strided layers share their pipelines) and a
    /// constant of the input gradient's `adjoint` gather, which divides by it
    /// (matmul.wgsl, `B_CONV`).
    pub(crate) fn gather_constants(&self, adjoint: bool) -> [(&'static str, f64); 6] {
        let stride = if adjoint { (self.stride_h, self.stride_w) } else { (1, 1) };
        super::window_constants((self.kernel_h, self.kernel_w), stride, (self.dilation_h, self.dilation_w))
    }
}

/// Checks shared by the implicit-GEMM ops: a valid geometry, `out_channels`
/// divisible by the groups, and dense buffers of the expected sizes.
fn check_conv(
    op: &'static str,
    g: &ConvGeometry,
    out_channels: usize,
    operands: Operands,
    bufs: &[(&Buffer, &str, usize)],
) -> Result<()> {
    g.validate()?;
    if out_channels == 0 || !out_channels.is_multiple_of(g.groups) {
        return Err(Error::invalid(
            op,
            format!("{out_channels} output channels are not divisible by groups = {}", g.groups),
        ));
    }
    for &(b, what, n) in bufs {
        b.check_len(op, what, n, operands.size())?;
        super::check_u32(op, n)?;
    }
    Ok(())
}

/// Elements of the output `[N, OC, OH, OW]` and of the weight `[OC, C/G, kh, kw]`.
fn conv_sizes(g: &ConvGeometry, out_channels: usize) -> (usize, usize) {
    (g.batch * out_channels * g.out_h() * g.out_w(), out_channels * g.col_rows())
}

/// The batch entries `[N, G]` of a dense NCHW tensor with `channels`
/// channels of `plane` elements each: image `n`, group `g` starts at
/// `n * channels * plane + g * channels / G * plane`.
fn group_batches(g: &ConvGeometry, channels: usize, plane: usize) -> Layout {
    let per_group = channels / g.groups * plane;
    Layout { shape: [g.batch, g.groups].into(), strides: [channels * plane, per_group].into(), offset: 0 }
}

/// How a convolution runs: the product's configuration (kernel family,
/// operand storage, f16 loads) and what its store does (an [`Epilogue`]:
/// a bias per output channel, an f16 result rounded once). The default is
/// the automatic kernel, f32 operands and a plain f32 store.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConvOptions<'a> {
    /// The product's configuration.
    pub cfg: MatmulConfig,
    /// What the product's store does; for a weight gradient only the
    /// result's storage (`output`) applies.
    pub epilogue: Epilogue<'a>,
}

impl<'a> ConvOptions<'a> {
    /// The default options on a chosen matmul kernel family.
    pub fn kernel(kernel: MatmulKernel) -> Self {
        Self::config(MatmulConfig { kernel, ..MatmulConfig::default() })
    }

    /// f16 operands (packed, [`Buffer::from_f16`]'s layout): f32 products
    /// and sums, an f32 result.
    pub fn f16() -> Self {
        Self::config(MatmulConfig::f16())
    }

    /// Every choice of the product spelled out, a plain store.
    pub fn config(cfg: MatmulConfig) -> Self {
        ConvOptions { cfg, epilogue: Epilogue::default() }
    }

    /// `cfg` with the store `epilogue`.
    pub fn with_epilogue(cfg: MatmulConfig, epilogue: &Epilogue<'a>) -> Self {
        ConvOptions { cfg, epilogue: *epilogue }
    }

    /// These options with the result stored as `output` (f16: rounded once).
    pub fn stored_as(self, output: Operands) -> Self {
        ConvOptions { epilogue: Epilogue { output, ..self.epilogue }, ..self }
    }
}

/// The convolution `y = conv2d(x, w)` of a dense input `x` `[N, C, H, W]`
/// with a dense weight `w` `[OC, C/groups, kh, kw]`: a dense `[N, OC, OH,
/// OW]`, computed as an implicit GEMM (no column buffer). `opts` chooses
/// the product and its store: the bias (one value per output channel:
/// [`BiasAxis::Rows`](super::matmul::BiasAxis::Rows) with `groups` slices)
/// added to the f32 sums and/or the output stored as f16 (rounded once),
/// all in the one launch. An odd `OH·OW` with an f16 output takes a cast
/// afterwards (see [`matmul_epilogue`](super::matmul::matmul_epilogue)).
pub fn conv2d(x: &Buffer, w: &Buffer, out_channels: usize, g: &ConvGeometry, opts: &ConvOptions) -> Result<Buffer> {
    let (cfg, epi) = (opts.cfg, &opts.epilogue);
    let (_, n_w) = conv_sizes(g, out_channels);
    let n_x = g.input_shape().iter().product();
    check_conv("conv2d", g, out_channels, cfg.operands, &[(x, "input", n_x), (w, "weight", n_w)])?;
    let (groups, k, l) = (g.groups, g.col_rows(), g.out_h() * g.out_w());
    if let Some(gpu) = x.device().gpu_ctx() {
        let y_bytes = (g.batch * out_channels * l) as u64 * epi.output.size();
        if super::past_limit(gpu, [x]) || y_bytes > gpu.binding_limit() {
            let io = (cfg.operands, epi.output);
            return super::conv_split::forward(gpu, io, x, out_channels, g, |xc, sub| {
                conv2d(xc, w, out_channels, sub, opts)
            });
        }
    }
    let wl = Layout::contiguous(&[1, groups, out_channels / groups, k]);
    let batch = group_batches(g, g.channels, g.in_h * g.in_w);
    let cols = ConvOperand { src: x, batch, form: ConvGather::Columns, geo: *g, k, n: l };
    Ok(conv_matmul(cfg, epi, w, &wl, &cols)?.0)
}

/// Images per weight-gradient product: the per-image products of one launch
/// are summed afterwards, so their buffer is bounded to this many bytes
/// (at least one image).
const WGRAD_CHUNK_BYTES: usize = 64 << 20;

/// The weight gradient of [`conv2d`]: `dW[oc, c, ki, kj] = Σ_n Σ_(oh, ow)
/// dY[n, oc, oh, ow] · x[n, c, oh·sh − pad_top + ki·dh, ow·sw − pad_left + kj·dw]`
/// for dense `gy` `[N, OC, OH, OW]` and `x` `[N, C, H, W]`; returns a dense
/// `[OC, C/groups, kh, kw]`.
///
/// One product per image and group, the columns gathered from `x` (no
/// column buffer), then a sum over the images in a fixed order: the result
/// is deterministic. Batches whose per-image products would exceed 64 MiB
/// run in chunks whose sums are summed.
///
/// With `opts.cfg.operands` F16, `gy` and `x` are packed f16 (an f16
/// activation and its f16 gradient, as mixed precision records them), read
/// with f32 sums. The result is stored as `opts.epilogue.output` (f16: the
/// f32 sum rounded once): with one image (and an even `C/G·kh·kw`) the
/// product's epilogue rounds it; otherwise the per-image products are
/// summed in f32 first and the sum is cast (rounding before the sum would
/// round every image's term). Any other epilogue member is an error.
pub fn conv2d_weight_grad(
    gy: &Buffer,
    x: &Buffer,
    out_channels: usize,
    g: &ConvGeometry,
    opts: &ConvOptions,
) -> Result<Buffer> {
    let e = &opts.epilogue;
    if e.scale.is_some() || e.bias.is_some() || e.relu || e.activation.is_some() || e.residual.is_some() {
        return Err(Error::invalid(
            "conv2d_weight_grad",
            "a weight gradient's options take only the result's storage (epilogue.output), no other epilogue",
        ));
    }
    let (cfg, output) = (opts.cfg, e.output);
    let f32_sums = &ConvOptions::config(cfg);
    let (_, n_w) = conv_sizes(g, out_channels);
    if output == Operands::F16 && g.batch != 1 {
        let sum = conv2d_weight_grad(gy, x, out_channels, g, f32_sums)?;
        return super::cast::f32_to_f16(&sum, n_w);
    }
    let epi = Epilogue { output, ..Epilogue::default() };
    let (n_y, n_w) = conv_sizes(g, out_channels);
    let n_x = g.input_shape().iter().product();
    check_conv(
        "conv2d_weight_grad",
        g,
        out_channels,
        cfg.operands,
        &[(gy, "output gradient", n_y), (x, "input", n_x)],
    )?;
    let (groups, k, l) = (g.groups, g.col_rows(), g.out_h() * g.out_w());
    let ocg = out_channels / groups;
    let dev = x.device();
    if g.batch == 0 {
        return super::fill::fill(dev, n_w, 0.0);
    }
    if let Some(gpu) = dev.gpu_ctx() {
        // The per-image products are summed afterwards: n_w values an image.
        if super::past_limit(gpu, [gy, x]) || (g.batch * n_w) as u64 * 4 > gpu.binding_limit() {
            return super::conv_split::weight_grad(
                gpu,
                cfg.operands,
                (gy, x),
                out_channels,
                (g, n_w),
                |gc, xc, sub| conv2d_weight_grad(gc, xc, out_channels, sub, f32_sums),
            );
        }
    }
    if dev.runs_fast_cpu() {
        // The fast CPU path: one sgemm per group over all images, no
        // per-image partials to sum (see `cpu::conv::weight_grad`).
        let out = Buffer::alloc(dev, n_w as u64 * output.size())?;
        crate::profiler::annotate_flops(2 * (n_w * g.batch * l) as u64);
        run_fallible(
            dev,
            |_| unreachable!("the fast CPU path runs on the CPU backend only"),
            || {
                let (ys, xs, mut ws) = (gy.host(), x.host(), out.host_mut());
                let mut dw = HostOutput::new(dev, &mut ws, n_w, output)?;
                let (ys, xs) = (host_f32(dev, &ys, cfg.operands)?, host_f32(dev, &xs, cfg.operands)?);
                crate::cpu::conv::weight_grad(g, out_channels, &ys[..n_y], &xs[..n_x], dw.values());
                dw.finish();
                Ok(())
            },
        )?;
        return Ok(out);
    }
    let chunk = (WGRAD_CHUNK_BYTES / (n_w * 4).max(1)).clamp(1, g.batch);
    let mut partials = Vec::new();
    for n0 in (0..g.batch).step_by(chunk) {
        let sub = ConvGeometry { batch: chunk.min(g.batch - n0), ..*g };
        // dY[n, g] as [OC/G, L] row-major, starting at image n0.
        let la = Layout {
            shape: [sub.batch, groups, ocg, l].into(),
            strides: [out_channels * l, ocg * l, l, 1].into(),
            offset: n0 * out_channels * l,
        };
        let mut batch = group_batches(&sub, g.channels, g.in_h * g.in_w);
        batch.offset = n0 * g.channels * g.in_h * g.in_w;
        let cols_t = ConvOperand { src: x, batch, form: ConvGather::ColumnsT, geo: *g, k: l, n: k };
        let (per_image, _) = conv_matmul(cfg, &epi, gy, &la, &cols_t)?;
        partials.push(if sub.batch == 1 {
            per_image
        } else {
            reduce(ReduceOp::Sum, &per_image, &Layout::contiguous(&[sub.batch, n_w]), &[0], false)?.0
        });
    }
    if partials.len() == 1 {
        return Ok(partials.pop().expect("one partial"));
    }
    let parts: Vec<(&Buffer, Layout)> = partials.iter().map(|p| (p, Layout::contiguous(&[1, n_w]))).collect();
    let refs: Vec<(&Buffer, &Layout)> = parts.iter().map(|(b, l)| (*b, l)).collect();
    let (stacked, shape) = super::copy::concat(&refs, 0)?;
    Ok(reduce(ReduceOp::Sum, &stacked, &Layout::contiguous(&shape), &[0], false)?.0)
}

/// The input gradient of [`conv2d`] (and the forward pass of a transposed
/// convolution): `dx[n, c, ih, iw] = Σ dY[n, oc, oh, ow] · w[oc, c, ki, kj]`
/// over the taps and output positions with `oh·sh + ki·dh = ih + pad_top`
/// (likewise for w), for dense `gy` `[N, OC, OH, OW]` and `w` `[OC,
/// C/groups, kh, kw]`; returns a dense `[N, C, H, W]`.
///
/// One implicit GEMM per image and group, `Wᵀ @ gather(dY)`, after a copy
/// of the (small) weight into `[G, C/G, OC/G, kh, kw]` order; no column
/// buffer and no col2im.
///
/// With `opts.cfg.operands` F16, `gy` and `w` are packed f16, read with f32
/// sums; `opts.epilogue` may round the result to f16 once in the store
/// and/or add a bias per input channel
/// ([`BiasAxis::Rows`](super::matmul::BiasAxis::Rows), `groups` slices: a
/// transposed convolution's bias).
pub fn conv2d_input_grad(
    gy: &Buffer,
    w: &Buffer,
    out_channels: usize,
    g: &ConvGeometry,
    opts: &ConvOptions,
) -> Result<Buffer> {
    let (cfg, epi) = (opts.cfg, &opts.epilogue);
    let (n_y, n_w) = conv_sizes(g, out_channels);
    check_conv(
        "conv2d_input_grad",
        g,
        out_channels,
        cfg.operands,
        &[(gy, "output gradient", n_y), (w, "weight", n_w)],
    )?;
    let (groups, cg, taps) = (g.groups, g.group_channels(), g.kernel_h * g.kernel_w);
    let ocg = out_channels / groups;
    let (l, hw) = (g.out_h() * g.out_w(), g.in_h * g.in_w);
    if let Some(gpu) = gy.device().gpu_ctx() {
        let dx_bytes = (g.batch * g.channels * hw) as u64 * epi.output.size();
        if super::past_limit(gpu, [gy]) || dx_bytes > gpu.binding_limit() {
            let io = (cfg.operands, epi.output);
            return super::conv_split::input_grad(gpu, io, gy, out_channels, g, |gc, sub| {
                conv2d_input_grad(gc, w, out_channels, sub, opts)
            });
        }
    }
    // [G, OC/G, C/G, taps] -> [G, C/G, OC/G, taps]: rows of Wᵀ per group.
    let w_view = Layout::contiguous(&[groups, ocg, cg, taps]).permute(&[0, 2, 1, 3])?;
    let w_t = match cfg.operands {
        Operands::F32 => super::copy::contiguous(w, &w_view)?,
        // The copy kernels move 4-byte words: transpose the (small) weight
        // widened, then round back (exact: the values are f16).
        Operands::F16 => {
            let wide = super::copy::contiguous(&super::cast::f16_to_f32(w, n_w)?, &w_view)?;
            super::cast::f32_to_f16(&wide, n_w)?
        }
    };
    let la = Layout::contiguous(&[1, groups, cg, ocg * taps]);
    let batch = group_batches(g, out_channels, l);
    let dy = ConvOperand { src: gy, batch, form: ConvGather::Adjoint, geo: *g, k: ocg * taps, n: hw };
    Ok(conv_matmul(cfg, epi, &w_t, &la, &dy)?.0)
}

/// Unfolds the dense input `x` `[N, C, H, W]` into the dense column buffer
/// `[N, groups, (C/groups) * kernel_h * kernel_w, OH * OW]` described in the
/// [module docs](self), with zeros where a window overlaps the padding.
pub fn im2col(x: &Buffer, g: &ConvGeometry) -> Result<Buffer> {
    g.validate()?;
    let (n_in, n_cols) = (g.input_shape().iter().product(), g.cols_shape().iter().product::<usize>());
    x.check_len("im2col", "input", n_in, 4)?;
    let dev = x.device();
    let out = Buffer::alloc(dev, n_cols as u64 * 4)?;
    run(
        dev,
        |gpu| launch(gpu, "im2col", g, x, &out, n_cols, n_cols / g.out_w().max(1)),
        || {
            let (xs, mut cs) = (x.host(), out.host_mut());
            twin::im2col(f32s(&xs), g, &mut f32s_mut(&mut cs)[..n_cols]);
        },
    )?;
    Ok(out)
}

/// The adjoint of [`im2col`]: sums a dense column buffer `[N, groups,
/// (C/groups) * kernel_h * kernel_w, OH * OW]` back into a dense `[N, C, H,
/// W]` image, each pixel receiving the entries of every window position that
/// covers it (entries that fall in the padding are dropped).
///
/// This is the input gradient of a convolution and the forward pass of a
/// transposed one. The kernel gathers (one thread per pixel, fixed order),
/// so results are deterministic.
pub fn col2im(cols: &Buffer, g: &ConvGeometry) -> Result<Buffer> {
    g.validate()?;
    let (n_in, n_cols) = (g.input_shape().iter().product::<usize>(), g.cols_shape().iter().product());
    cols.check_len("col2im", "columns", n_cols, 4)?;
    let dev = cols.device();
    let out = Buffer::alloc(dev, n_in as u64 * 4)?;
    run(
        dev,
        |gpu| launch(gpu, "col2im", g, cols, &out, n_in, n_in / g.in_w.max(1)),
        || {
            let (cs, mut xs) = (cols.host(), out.host_mut());
            twin::col2im(f32s(&cs), g, &mut f32s_mut(&mut xs)[..n_in]);
        },
    )?;
    Ok(out)
}

/// Records one `conv.wgsl` launch: one thread per output element, or on CPU
/// adapters one per output row (`rows` threads), where per-element index
/// decoding costs more than the work.
fn launch(
    gpu: &GpuContext,
    entry: &'static str,
    g: &ConvGeometry,
    src: &Buffer,
    out: &Buffer,
    elems: usize,
    rows: usize,
) -> Result<()> {
    // col2im keeps per-element threads everywhere: its row form (a pixel loop
    // around the tap loops) summed wrongly for a 32x32 kernel on lavapipe
    // (Mesa 22.3), while the per-element form is exact.
    let by_rows = entry == "im2col" && gpu.is_cpu_adapter();
    let n = if by_rows { rows } else { elems };
    super::launch::dispatch_launch(
        gpu,
        &Launch {
            shader: "conv",
            entry,
            constants: &g.constants(by_rows),
            params: &g.params(n).0,
            inputs: &[src.wgpu()],
            outputs: &[out.wgpu()],
            workgroups: super::groups(n, 256),
        },
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_follows_pytorch() {
        let mut g = ConvGeometry::new(1, 1, (7, 6), (3, 2));
        assert_eq!((g.out_h(), g.out_w()), (5, 5));
        g.stride_h = 2;
        g.pad_top = 1;
        g.dilation_w = 3;
        // floor((7 + 1 - 2 - 1) / 2) + 1 = 3; floor((6 - 3 - 1) / 1) + 1 = 3
        assert_eq!((g.out_h(), g.out_w()), (3, 3));
    }

    #[test]
    fn invalid_geometries_are_rejected_by_name() {
        let ok = ConvGeometry::new(2, 4, (5, 5), (3, 3));
        assert!(ok.validate().is_ok());
        let cases = [
            (ConvGeometry { groups: 3, ..ok }, "divisible"),
            (ConvGeometry { groups: 0, ..ok }, "divisible"),
            (ConvGeometry { stride_w: 0, ..ok }, "stride"),
            (ConvGeometry { dilation_h: 0, ..ok }, "dilation"),
            (ConvGeometry { kernel_h: 6, ..ok }, "larger than the padded input"),
            (ConvGeometry { dilation_w: 3, ..ok }, "larger than the padded input"),
            (ConvGeometry { kernel_w: 0, ..ok }, "empty"),
            (ConvGeometry { in_h: 0, ..ok }, "zero-size"),
            (ConvGeometry { stride_h: 1 << 33, ..ok }, "2^32"),
            (ConvGeometry { batch: 1 << 20, channels: 1 << 12, ..ok }, "2^32"),
        ];
        for (g, want) in cases {
            let msg = g.validate().unwrap_err().to_string();
            assert!(msg.starts_with("conv2d:") && msg.contains(want), "{msg}");
        }
        // Padding can make room for a kernel larger than the input.
        assert!(ConvGeometry { kernel_h: 6, pad_bottom: 1, ..ok }.validate().is_ok());
    }
}

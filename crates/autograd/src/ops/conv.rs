//! Convolutions over NCHW tensors with PyTorch's semantics: `conv2d`,
//! `conv1d` and `conv_transpose2d`, each with stride, zero padding,
//! dilation and groups.
//!
//! All three run on gpu-core's implicit-GEMM convolution ops
//! (`wgrad_gpu_core::ops::conv`): the batched matmul kernels gather the
//! convolution's columns from the NCHW tensor as they load them, so no
//! column buffer is written and no im2col / col2im kernel runs. One launch
//! covers the whole batch and every group, and writes NCHW directly.
//!
//! Each op records a single graph node over `[input, weight, bias?]`. Its
//! backward computes only the gradients that are needed: the input's with
//! `conv2d_input_grad` (`Wᵀ` times `dY` gathered per input pixel), the
//! weight's with `conv2d_weight_grad` (`dY` times the gathered columns,
//! summed over the batch), the bias's by summing `dY` over batch and space.
//! A transposed convolution is the input gradient of a convolution, so its
//! forward and backward are the same three ops with the roles exchanged.

use wgrad_gpu_core::ops::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad, ConvGeometry, ConvOptions};
use wgrad_gpu_core::ops::matmul::{BiasAxis, Epilogue, MatmulConfig, Operands};
use wgrad_gpu_core::{Buffer, Layout, Result};

use crate::graph::Saves;
use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

/// Options of [`Tensor::conv2d`]: how the kernel slides over the input.
///
/// ```
/// # use wgrad_autograd::Conv2dOptions;
/// let opts = Conv2dOptions::new().stride(2).padding(1).groups(4);
/// assert_eq!(opts.padding, [1, 1, 1, 1]);
/// assert_eq!(Conv2dOptions::same(4, 3).padding, [1, 2, 1, 1]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dOptions {
    /// Step between output positions, (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding as [top, bottom, left, right] (asymmetric padding is
    /// what `F.pad` followed by an unpadded conv gives in PyTorch).
    pub padding: [usize; 4],
    /// Distance between kernel taps, (vertical, horizontal).
    pub dilation: (usize, usize),
    /// Channel groups: input and output channels split into this many
    /// independent convolutions (`groups = C` is depthwise).
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions { stride: (1, 1), padding: [0; 4], dilation: (1, 1), groups: 1 }
    }
}

impl Conv2dOptions {
    /// Stride 1, no padding, dilation 1, one group.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same stride along both axes.
    pub fn stride(self, s: usize) -> Self {
        Conv2dOptions { stride: (s, s), ..self }
    }

    /// Separate vertical and horizontal strides.
    pub fn stride_hw(self, sh: usize, sw: usize) -> Self {
        Conv2dOptions { stride: (sh, sw), ..self }
    }

    /// `p` zero rows/columns on every side.
    pub fn padding(self, p: usize) -> Self {
        Conv2dOptions { padding: [p; 4], ..self }
    }

    /// `ph` rows above and below, `pw` columns left and right (PyTorch's `padding=(ph, pw)`).
    pub fn padding_hw(self, ph: usize, pw: usize) -> Self {
        Conv2dOptions { padding: [ph, ph, pw, pw], ..self }
    }

    /// The same dilation along both axes.
    pub fn dilation(self, d: usize) -> Self {
        Conv2dOptions { dilation: (d, d), ..self }
    }

    /// Separate vertical and horizontal dilations.
    pub fn dilation_hw(self, dh: usize, dw: usize) -> Self {
        Conv2dOptions { dilation: (dh, dw), ..self }
    }

    /// Channel groups.
    pub fn groups(self, g: usize) -> Self {
        Conv2dOptions { groups: g, ..self }
    }

    /// Options whose stride-1 output has the input's size for a
    /// `kernel_h x kernel_w` kernel, like PyTorch's `padding='same'`: an odd
    /// total padding puts the extra row/column at the bottom/right.
    pub fn same(kernel_h: usize, kernel_w: usize) -> Self {
        Self::new().padding_same(kernel_h, kernel_w)
    }

    /// Sets "same" padding for a `kernel_h x kernel_w` kernel under the
    /// current dilation (set the dilation first; the stride must stay 1 for
    /// the output to keep the input's size).
    pub fn padding_same(self, kernel_h: usize, kernel_w: usize) -> Self {
        let total = |k: usize, d: usize| d * k.saturating_sub(1);
        let (th, tw) = (total(kernel_h, self.dilation.0), total(kernel_w, self.dilation.1));
        Conv2dOptions { padding: [th / 2, th - th / 2, tw / 2, tw - tw / 2], ..self }
    }
}

/// Options of [`Tensor::conv_transpose2d`], named as in PyTorch's
/// `conv_transpose2d`: `padding` and `output_padding` describe the forward
/// convolution whose input gradient this op is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvTranspose2dOptions {
    /// Stride of the corresponding convolution, (vertical, horizontal).
    pub stride: (usize, usize),
    /// `dilation * (k - 1) - padding` zero rows/columns conceptually pad
    /// each side of the input, (vertical, horizontal); i.e. the output loses
    /// `padding` rows/columns on each side.
    pub padding: (usize, usize),
    /// Extra rows/columns added to the bottom/right of the output, to pick
    /// one of the input sizes that a strided convolution maps to the same
    /// output size; must be below the stride or the dilation.
    pub output_padding: (usize, usize),
    /// Distance between kernel taps, (vertical, horizontal).
    pub dilation: (usize, usize),
    /// Channel groups.
    pub groups: usize,
}

impl Default for ConvTranspose2dOptions {
    fn default() -> Self {
        ConvTranspose2dOptions { stride: (1, 1), padding: (0, 0), output_padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

impl ConvTranspose2dOptions {
    /// Stride 1, no padding or output padding, dilation 1, one group.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same stride along both axes.
    pub fn stride(self, s: usize) -> Self {
        ConvTranspose2dOptions { stride: (s, s), ..self }
    }

    /// The same padding along both axes.
    pub fn padding(self, p: usize) -> Self {
        ConvTranspose2dOptions { padding: (p, p), ..self }
    }

    /// The same output padding along both axes.
    pub fn output_padding(self, p: usize) -> Self {
        ConvTranspose2dOptions { output_padding: (p, p), ..self }
    }

    /// The same dilation along both axes.
    pub fn dilation(self, d: usize) -> Self {
        ConvTranspose2dOptions { dilation: (d, d), ..self }
    }

    /// Channel groups.
    pub fn groups(self, g: usize) -> Self {
        ConvTranspose2dOptions { groups: g, ..self }
    }
}

/// Panics with a gpu-core error as is (its message already names the op).
fn or_panic<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| crate::recover::fail(e))
}

/// A gradient-free f32 tensor over a dense buffer.
fn dense(buffer: Buffer, shape: &[usize]) -> Tensor {
    dense_as(buffer, shape, DType::F32)
}

/// A gradient-free tensor of `dtype` over a dense buffer.
fn dense_as(buffer: Buffer, shape: &[usize], dtype: DType) -> Tensor {
    Tensor::constant(buffer, Layout::contiguous(shape), dtype)
}

/// The product epilogue that adds `bias` (one value per output channel,
/// `groups` slices) to the sums and stores them as `output`.
fn epilogue(bias: Option<&Buffer>, groups: usize, output: Operands) -> Epilogue<'_> {
    let epi = Epilogue { output, ..Epilogue::default() };
    match bias {
        Some(b) => epi.with_bias(b, BiasAxis::Rows, groups),
        None => epi,
    }
}

/// The checks every convolution makes on dtypes, devices, ranks and the bias.
fn check_operands(
    op: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    rank: usize,
    out_channels: usize,
    operand_dtype: DType,
) {
    for t in [x, weight] {
        t.expect_dtype(op, operand_dtype);
    }
    for t in [Some(x), Some(weight), bias].into_iter().flatten() {
        x.expect_same_device(op, t);
    }
    if let Some(b) = bias {
        b.expect_dtype(op, DType::F32);
    }
    let (xs, ws) = (x.shape(), weight.shape());
    let spatial = if rank == 4 { "H, W" } else { "L" };
    assert!(xs.len() == rank, "{op}: input shape {xs:?} must be [N, C, {spatial}]");
    assert!(ws.len() == rank, "{op}: weight shape {ws:?} must have rank {rank} (input shape {xs:?})");
    if let Some(b) = bias {
        assert!(
            b.shape() == [out_channels],
            "{op}: bias shape {:?} must be [{out_channels}] (one per output channel; weight {ws:?})",
            b.shape()
        );
    }
}

/// The bias gradient: `dY [N, OC, ...]` summed over everything but channels.
fn bias_grad(gy: &Tensor, n: usize, oc: usize) -> Tensor {
    gy.reshape(&[n, oc, gy.numel() / (n * oc).max(1)]).sum(&[0, 2], false)
}

/// Assembles the node's gradient list (one entry per recorded input).
fn grads(dx: Option<Tensor>, dw: Option<Tensor>, db: Option<Tensor>, inputs: usize) -> Vec<Option<Tensor>> {
    let mut v = vec![dx, dw, db];
    v.truncate(inputs);
    v
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as in PyTorch) of `self`
    /// `[N, C, H, W]` with `weight` `[OC, C/groups, kh, kw]`, plus `bias`
    /// `[OC]`; returns `[N, OC, OH, OW]` with
    /// `OH = floor((H + pad_top + pad_bottom - dilation_h * (kh - 1) - 1) / stride_h) + 1`
    /// (likewise OW).
    ///
    /// # Panics
    /// On shapes that do not fit (channels vs weight and groups, bias size,
    /// a kernel larger than the padded input), zero strides or dilations,
    /// non-F32 tensors or mixed devices, naming `conv2d` and the shapes.
    ///
    /// An F16 input and weight (or F32 ones under
    /// [`autocast`](crate::autocast()), which casts them) convolve with f16
    /// loads and f32 sums; the F32 bias is added to the sums, and the result
    /// is rounded once to F16, as PyTorch's f16 convolution returns, all in
    /// the product's one launch (its epilogue). The backward kernels read
    /// the f16 output gradient and operands (f32 sums), and store the input
    /// and weight gradients as F16 like the operands (the weight gradient of
    /// a batch is summed over the images in f32, then rounded).
    ///
    /// A ReLU that follows (`x.conv2d(..).relu()`) is applied in the
    /// product's store by the fuser on a GPU (`gpu-core`'s `gpu/tails.rs`).
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, opts: &Conv2dOptions) -> Tensor {
        let scope = crate::trace::scope();
        let y = self.conv2d_untraced(weight, bias, opts);
        scope.output_opt(|| TraceOp::Conv2d(*opts), &[Some(self), Some(weight), bias], y)
    }

    fn conv2d_untraced(&self, weight: &Tensor, bias: Option<&Tensor>, opts: &Conv2dOptions) -> Tensor {
        const OP: &str = "conv2d";
        if let Some([x, w]) = crate::autocast::f16_operands(OP, [self, weight]) {
            return x.conv2d(&w, bias, opts);
        }
        let (xs, ws) = (self.shape(), weight.shape());
        let dtype = self.dtype();
        let operand_dtype = if dtype == DType::F16 && weight.dtype() == DType::F16 { DType::F16 } else { DType::F32 };
        check_operands(OP, self, weight, bias, 4, ws.first().copied().unwrap_or(0), operand_dtype);
        let groups = opts.groups;
        assert!(
            groups >= 1 && ws[0].is_multiple_of(groups),
            "{OP}: weight {ws:?} has {} output channels, not divisible by groups = {groups}",
            ws[0]
        );
        assert!(
            ws[1] * groups == xs[1],
            "{OP}: weight {ws:?} with groups = {groups} expects {} input channels, but the input {xs:?} has {}",
            ws[1] * groups,
            xs[1]
        );
        let [top, bottom, left, right] = opts.padding;
        let geo = ConvGeometry {
            batch: xs[0],
            channels: xs[1],
            in_h: xs[2],
            in_w: xs[3],
            kernel_h: ws[2],
            kernel_w: ws[3],
            stride_h: opts.stride.0,
            stride_w: opts.stride.1,
            pad_top: top,
            pad_bottom: bottom,
            pad_left: left,
            pad_right: right,
            dilation_h: opts.dilation.0,
            dilation_w: opts.dilation.1,
            groups,
        };
        or_panic(geo.validate());
        let (n, oc) = (xs[0], ws[0]);
        // f16 operands give an f16 activation: the f32 sums (bias included)
        // are rounded once as they are stored, so no f32 copy ever exists.
        let (cfg, storage) = match operand_dtype {
            DType::F16 => (MatmulConfig::f16(), Operands::F16),
            _ => (MatmulConfig::default(), Operands::F32),
        };
        let bias_buf = bias.map(|b| b.dense_buffer());
        let epi = epilogue(bias_buf.as_ref(), groups, storage);
        let y = expect(
            OP,
            conv2d(&self.dense_buffer(), &weight.dense_buffer(), oc, &geo, &ConvOptions::with_epilogue(cfg, &epi)),
        );

        let inputs: Vec<&Tensor> = [Some(self), Some(weight), bias].into_iter().flatten().collect();
        let layout = Layout::contiguous(&[n, oc, geo.out_h(), geo.out_w()]);
        // x and the weight, not the bias.
        let saves = Saves::inputs([true, true, false]);
        Tensor::from_op_saving(OP, y, layout, operand_dtype, &inputs, saves, move |gy, inputs, _| {
            // `gy` has the output's dtype, so the f16 kernels read the f16
            // gradient and operands as they are, and store the gradients in
            // the operands' dtype.
            let gy_buf = gy.dense_buffer();
            let grad = |b: Buffer, shape: &[usize]| dense_as(b, shape, operand_dtype);
            // The weight's first: the input gradient, recorded last, then
            // shares the fuser's run with what the next rules do to it (a
            // shortcut's gradient added, a ReLU's mask), which merge into
            // its store (`gpu/tails.rs`).
            let dw = inputs[1].requires_grad().then(|| {
                let x = inputs[0].dense_buffer();
                grad(
                    expect(OP, conv2d_weight_grad(&gy_buf, &x, oc, &geo, &ConvOptions::config(cfg).stored_as(storage))),
                    &ws,
                )
            });
            let dx = inputs[0].requires_grad().then(|| {
                let (w, epi) = (inputs[1].dense_buffer(), epilogue(None, 1, storage));
                grad(
                    expect(OP, conv2d_input_grad(&gy_buf, &w, oc, &geo, &ConvOptions::with_epilogue(cfg, &epi))),
                    &geo.input_shape(),
                )
            });
            let db = inputs.get(2).map(|_| bias_grad(gy, n, oc));
            grads(dx, dw, db, inputs.len())
        })
    }

    /// 1-D convolution of `self` `[N, C, L]` with `weight` `[OC, C/groups, k]`
    /// plus `bias` `[OC]`, with zero `padding` (left, right); the 2-D
    /// convolution with height 1. Returns `[N, OC, OL]`.
    ///
    /// # Panics
    /// As [`conv2d`](Self::conv2d), naming `conv1d` for rank errors.
    pub fn conv1d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: (usize, usize),
        dilation: usize,
        groups: usize,
    ) -> Tensor {
        let scope = crate::trace::scope();
        let oc = weight.shape().first().copied().unwrap_or(0);
        check_operands("conv1d", self, weight, bias, 3, oc, DType::F32);
        let opts = Conv2dOptions {
            stride: (1, stride),
            padding: [0, 0, padding.0, padding.1],
            dilation: (1, dilation),
            groups,
        };
        let y = self.unsqueeze(2).conv2d(&weight.unsqueeze(2), bias, &opts).squeeze(2);
        let op = || TraceOp::Conv1d { stride, padding, dilation, groups };
        scope.output_opt(op, &[Some(self), Some(weight), bias], y)
    }

    /// Transposed 2-D convolution (PyTorch's `conv_transpose2d`, the input
    /// gradient of a convolution): `self` `[N, C_in, H, W]`, `weight`
    /// `[C_in, OC/groups, kh, kw]`, `bias` `[OC]`; returns `[N, OC, OH, OW]` with
    /// `OH = (H - 1) * stride_h - 2 * padding_h + dilation_h * (kh - 1) + output_padding_h + 1`
    /// (likewise OW). Computed as the input gradient of the convolution it transposes (an implicit GEMM, no column buffer).
    ///
    /// # Panics
    /// On shapes that do not fit, an output size below 1, an
    /// `output_padding` not below the stride or dilation (or one that would
    /// add rows no kernel tap reaches, which needs `output_padding <=
    /// padding + stride - 1`), non-F32 tensors or mixed devices.
    pub fn conv_transpose2d(&self, weight: &Tensor, bias: Option<&Tensor>, opts: &ConvTranspose2dOptions) -> Tensor {
        const OP: &str = "conv_transpose2d";
        let scope = crate::trace::scope();
        let (xs, ws) = (self.shape(), weight.shape());
        let groups = opts.groups;
        let oc = ws.get(1).copied().unwrap_or(0) * groups;
        check_operands(OP, self, weight, bias, 4, oc, DType::F32);
        assert!(
            groups >= 1 && xs[1].is_multiple_of(groups),
            "{OP}: input {xs:?} has {} channels, not divisible by groups = {groups}",
            xs[1]
        );
        assert!(
            ws[0] == xs[1],
            "{OP}: weight {ws:?} expects {} input channels, but the input {xs:?} has {}",
            ws[0],
            xs[1]
        );
        // The forward convolution this op transposes maps [N, OC, OH, OW] to the input's size.
        let out_size = |axis: &str, len: usize, k: usize, s: usize, p: usize, op: usize, d: usize| -> (usize, usize) {
            assert!(
                s >= 1 && d >= 1,
                "{OP}: stride {:?} and dilation {:?} must be positive",
                opts.stride,
                opts.dilation
            );
            assert!(
                op < s || op < d,
                "{OP}: output_padding {:?} must be smaller than the stride {:?} or the dilation {:?}",
                opts.output_padding,
                opts.stride,
                opts.dilation
            );
            let full = (len.max(1) - 1) * s + d * k.saturating_sub(1) + op + 1;
            assert!(
                len >= 1 && k >= 1 && full > 2 * p,
                "{OP}: input {xs:?}, weight {ws:?} and padding {:?} give an empty output {axis}",
                opts.padding
            );
            // Bottom/right padding of the forward conv that makes its output
            // exactly `len` long; it only sets the geometry's output size.
            (full - 2 * p, p.saturating_sub(op))
        };
        let (oh, pad_bottom) =
            out_size("height", xs[2], ws[2], opts.stride.0, opts.padding.0, opts.output_padding.0, opts.dilation.0);
        let (ow, pad_right) =
            out_size("width", xs[3], ws[3], opts.stride.1, opts.padding.1, opts.output_padding.1, opts.dilation.1);
        let geo = ConvGeometry {
            batch: xs[0],
            channels: oc,
            in_h: oh,
            in_w: ow,
            kernel_h: ws[2],
            kernel_w: ws[3],
            stride_h: opts.stride.0,
            stride_w: opts.stride.1,
            pad_top: opts.padding.0,
            pad_bottom,
            pad_left: opts.padding.1,
            pad_right,
            dilation_h: opts.dilation.0,
            dilation_w: opts.dilation.1,
            groups,
        };
        or_panic(geo.validate());
        assert!(
            (geo.out_h(), geo.out_w()) == (xs[2], xs[3]),
            "{OP}: output_padding {:?} with stride {:?} and padding {:?} adds output rows or columns that no \
             kernel tap reaches; this needs output_padding <= padding + stride - 1",
            opts.output_padding,
            opts.stride,
            opts.padding
        );
        // This op is the input gradient of the convolution `geo` with
        // `xs[1]` output channels; its gradients are that convolution's
        // forward (for x) and weight gradient (for w).
        let (n, cin) = (xs[0], xs[1]);
        // The bias is added in the product's store (one value per output channel).
        let bias_buf = bias.map(|b| b.dense_buffer());
        let epi = epilogue(bias_buf.as_ref(), groups, Operands::F32);
        let (x_buf, w_buf) = (self.dense_buffer(), weight.dense_buffer());
        let y = expect(
            OP,
            conv2d_input_grad(&x_buf, &w_buf, cin, &geo, &ConvOptions::with_epilogue(MatmulConfig::default(), &epi)),
        );

        let inputs: Vec<&Tensor> = [Some(self), Some(weight), bias].into_iter().flatten().collect();
        let layout = Layout::contiguous(&geo.input_shape());
        let saves = Saves::inputs([true, true, false]);
        let y = Tensor::from_op_saving(OP, y, layout, DType::F32, &inputs, saves, move |gy, inputs, _| {
            let (x, w) = (&inputs[0], &inputs[1]);
            let gy_buf = gy.dense_buffer();
            // The weight's first, as in conv2d's rule: the input gradient
            // then ends the run that the next rules extend.
            let dw = w.requires_grad().then(|| {
                dense(
                    expect(OP, conv2d_weight_grad(&x.dense_buffer(), &gy_buf, cin, &geo, &ConvOptions::default())),
                    &ws,
                )
            });
            let dx = x.requires_grad().then(|| {
                dense(expect(OP, conv2d(&gy_buf, &w.dense_buffer(), cin, &geo, &ConvOptions::default())), &xs)
            });
            let db = inputs.get(2).map(|_| bias_grad(gy, n, oc));
            grads(dx, dw, db, inputs.len())
        });
        scope.output_opt(|| TraceOp::ConvTranspose2d(*opts), &[Some(self), Some(weight), bias], y)
    }
}

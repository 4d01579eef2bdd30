//! A 2-D convolution's geometry ([`ConvGeometry`]: shapes, validation) and
//! how the implicit-GEMM matmul gathers its B operand ([`ConvGather`]),
//! shared by the launches (`ops/conv.rs`, `ops/matmul/`) and the fast
//! path (`cpu/conv.rs`); and the reference twins of that gather
//! ([`gather_cpu`]) and of `im2col` / `col2im` ([`im2col`], [`col2im`]).

use crate::{Error, Result};

/// The shapes of one 2-D convolution: input, kernel and how the kernel
/// slides. Build one with [`ConvGeometry::new`] and adjust fields, then
/// [`validate`](Self::validate) it (the ops do so too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// N: images in the batch (may be 0).
    pub batch: usize,
    /// C: input channels, all groups together.
    pub channels: usize,
    /// H: input height.
    pub in_h: usize,
    /// W: input width.
    pub in_w: usize,
    /// Kernel height (taps, before dilation).
    pub kernel_h: usize,
    /// Kernel width (taps, before dilation).
    pub kernel_w: usize,
    /// Vertical step between output rows.
    pub stride_h: usize,
    /// Horizontal step between output columns.
    pub stride_w: usize,
    /// Zero rows above the input.
    pub pad_top: usize,
    /// Zero rows below the input.
    pub pad_bottom: usize,
    /// Zero columns left of the input.
    pub pad_left: usize,
    /// Zero columns right of the input.
    pub pad_right: usize,
    /// Vertical distance between kernel taps (1 = dense kernel).
    pub dilation_h: usize,
    /// Horizontal distance between kernel taps (1 = dense kernel).
    pub dilation_w: usize,
    /// Channel groups: group `g` of the output sees only input channels
    /// `g * C/groups .. (g + 1) * C/groups` (`groups = C` is depthwise).
    pub groups: usize,
}

/// PyTorch's output length along one axis, or `None` when the dilated
/// kernel does not fit in the padded input (or the stride is zero).
fn out_len(len: usize, pad_a: usize, pad_b: usize, k: usize, dilation: usize, stride: usize) -> Option<usize> {
    let reach = dilation.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = len.checked_add(pad_a)?.checked_add(pad_b)?;
    Some(padded.checked_sub(reach)?.checked_div(stride)? + 1)
}

impl ConvGeometry {
    /// Stride 1, no padding, dilation 1, one group.
    pub fn new(
        batch: usize,
        channels: usize,
        (in_h, in_w): (usize, usize),
        (kernel_h, kernel_w): (usize, usize),
    ) -> Self {
        ConvGeometry {
            batch,
            channels,
            in_h,
            in_w,
            kernel_h,
            kernel_w,
            stride_h: 1,
            stride_w: 1,
            pad_top: 0,
            pad_bottom: 0,
            pad_left: 0,
            pad_right: 0,
            dilation_h: 1,
            dilation_w: 1,
            groups: 1,
        }
    }

    /// Output height, `floor((H + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h) + 1`
    /// (0 for a geometry that [`validate`](Self::validate) rejects).
    pub fn out_h(&self) -> usize {
        out_len(self.in_h, self.pad_top, self.pad_bottom, self.kernel_h, self.dilation_h, self.stride_h).unwrap_or(0)
    }

    /// Output width, as [`out_h`](Self::out_h) along the other axis.
    pub fn out_w(&self) -> usize {
        out_len(self.in_w, self.pad_left, self.pad_right, self.kernel_w, self.dilation_w, self.stride_w).unwrap_or(0)
    }

    /// Channels per group, `C / groups`.
    pub fn group_channels(&self) -> usize {
        self.channels / self.groups.max(1)
    }

    /// Rows of one group's column matrix: `(C / groups) * kernel_h * kernel_w`.
    pub fn col_rows(&self) -> usize {
        self.group_channels() * self.kernel_h * self.kernel_w
    }

    /// The input (and `col2im` output) shape `[N, C, H, W]`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.channels, self.in_h, self.in_w]
    }

    /// The column shape `[N, groups, (C / groups) * kernel_h * kernel_w, OH * OW]`.
    pub fn cols_shape(&self) -> [usize; 4] {
        [self.batch, self.groups, self.col_rows(), self.out_h() * self.out_w()]
    }

    /// Errors (as op `conv2d`) for geometries PyTorch rejects: zero sizes,
    /// strides or dilations, channels not divisible by groups, a dilated
    /// kernel larger than the padded input; and for sizes past the kernels'
    /// u32 indexing.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("conv2d", format!("{msg} (geometry {self:?})")));
        if self.channels == 0 || self.in_h == 0 || self.in_w == 0 {
            return bad(format!("input [N, C, H, W] = {:?} has a zero-size non-batch dim", self.input_shape()));
        }
        if self.kernel_h == 0 || self.kernel_w == 0 {
            return bad(format!("kernel {}x{} is empty", self.kernel_h, self.kernel_w));
        }
        if self.stride_h == 0 || self.stride_w == 0 {
            return bad(format!("stride ({}, {}) must be positive", self.stride_h, self.stride_w));
        }
        if self.dilation_h == 0 || self.dilation_w == 0 {
            return bad(format!("dilation ({}, {}) must be positive", self.dilation_h, self.dilation_w));
        }
        if self.groups == 0 || !self.channels.is_multiple_of(self.groups) {
            return bad(format!("{} input channels are not divisible by groups = {}", self.channels, self.groups));
        }
        let h = out_len(self.in_h, self.pad_top, self.pad_bottom, self.kernel_h, self.dilation_h, self.stride_h);
        let w = out_len(self.in_w, self.pad_left, self.pad_right, self.kernel_w, self.dilation_w, self.stride_w);
        if h.is_none() || w.is_none() {
            return bad(format!(
                "dilated kernel {}x{} is larger than the padded input {}x{}",
                self.dilation_h.saturating_mul(self.kernel_h - 1).saturating_add(1),
                self.dilation_w.saturating_mul(self.kernel_w - 1).saturating_add(1),
                self.in_h.saturating_add(self.pad_top).saturating_add(self.pad_bottom),
                self.in_w.saturating_add(self.pad_left).saturating_add(self.pad_right),
            ));
        }
        // Every index the kernels form is below the input or column element
        // count or the padded extent, and every field travels as a u32.
        let padded_h = self.in_h.saturating_add(self.pad_top).saturating_add(self.pad_bottom);
        let padded_w = self.in_w.saturating_add(self.pad_left).saturating_add(self.pad_right);
        let cols = [self.batch, self.channels, self.kernel_h, self.kernel_w, self.out_h(), self.out_w()];
        let input = self.input_shape();
        let fields = [self.stride_h, self.stride_w, self.dilation_h, self.dilation_w, self.groups];
        let extents = [&cols[..], &input, std::slice::from_ref(&padded_h), std::slice::from_ref(&padded_w)];
        for dims in extents.into_iter().chain(fields.iter().map(std::slice::from_ref)) {
            let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d.max(1)));
            if n.is_none_or(|n| n >= u32::MAX as usize) {
                return bad(format!("sizes {dims:?} exceed the 2^32 elements one kernel can index"));
            }
        }
        Ok(())
    }

    /// The input pixel `(ih, iw)` at padded coordinates `(ph, pw)`, or `None`
    /// where those lie in the padding.
    pub(crate) fn unpad(&self, ph: usize, pw: usize) -> Option<(usize, usize)> {
        let ih = ph.checked_sub(self.pad_top).filter(|&i| i < self.in_h)?;
        let iw = pw.checked_sub(self.pad_left).filter(|&i| i < self.in_w)?;
        Some((ih, iw))
    }
}

/// How a convolution's B operand is gathered from its NCHW tensor (the
/// matmul shaders' `B_CONV`), per batch entry (one image, or one group of
/// channels of it) of the tensor `src`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvGather {
    /// The im2col columns of the convolution's input `[C/G, H, W]`: K = C/G·kh·kw
    /// rows (c, ki, kj), N = OH·OW columns (oh, ow).
    Columns,
    /// The transpose of [`Columns`](Self::Columns): K = OH·OW, N = C/G·kh·kw.
    ColumnsT,
    /// The output gradient `[OC/G, OH, OW]` as seen from the input: K =
    /// OC/G·kh·kw rows (oc, ki, kj), N = H·W columns (ih, iw), holding the
    /// entry tap (ki, kj) carries to pixel (ih, iw), zero where none does.
    Adjoint,
}

impl ConvGather {
    /// The shaders' `B_CONV` code.
    pub(crate) fn code(self) -> f64 {
        match self {
            ConvGather::Columns => 1.0,
            ConvGather::ColumnsT => 2.0,
            ConvGather::Adjoint => 3.0,
        }
    }
}

/// CPU twin of the matmul loaders' gather: the `[k, n]` matrix that `form`
/// describes for the batch entry of `src` starting at `src[0]` (see
/// [`ConvGather`]). `Adjoint` is written in the scatter form (each output
/// position sends its value to the pixels its taps cover), independent of
/// the shader's gather arithmetic.
pub(crate) fn gather_cpu(form: ConvGather, g: &ConvGeometry, src: &[f32], k: usize, n: usize) -> Vec<f32> {
    let (oh_n, ow_n, taps) = (g.out_h(), g.out_w(), g.kernel_h * g.kernel_w);
    let mut out = vec![0.0; k * n];
    // Calls f(row of the columns, output position, input index or None for padding).
    let each_tap = |rows: usize, f: &mut dyn FnMut(usize, usize, Option<usize>)| {
        for r in 0..rows {
            let (c, ki, kj) = (r / taps, r % taps / g.kernel_w, r % g.kernel_w);
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let at = g.unpad(oh * g.stride_h + ki * g.dilation_h, ow * g.stride_w + kj * g.dilation_w);
                    f(r, oh * ow_n + ow, at.map(|(ih, iw)| (c * g.in_h + ih) * g.in_w + iw));
                }
            }
        }
    };
    match form {
        ConvGather::Columns => each_tap(k, &mut |r, q, at| out[r * n + q] = at.map_or(0.0, |i| src[i])),
        ConvGather::ColumnsT => each_tap(n, &mut |r, q, at| out[q * n + r] = at.map_or(0.0, |i| src[i])),
        ConvGather::Adjoint => each_tap(k, &mut |r, q, at| {
            if let Some(i) = at {
                // Row r = (oc, ki, kj) reads dY[oc, q]; `i` is the pixel of
                // plane `oc`, whose offset within the plane is the column.
                let c = r / taps;
                out[r * n + i - c * g.in_h * g.in_w] = src[c * oh_n * ow_n + q];
            }
        }),
    }
    out
}

/// The reference `im2col` (`torch.nn.functional.unfold` per group):
/// the dense `[N, C, H, W]` image `x` unfolded into `cols` (`g.cols_shape()`),
/// loop by loop, zeros where a window overlaps the padding.
pub(crate) fn im2col(x: &[f32], g: &ConvGeometry, cols: &mut [f32]) {
    let (oh_n, ow_n) = (g.out_h(), g.out_w());
    let mut out = cols.iter_mut();
    for plane in 0..g.batch * g.channels {
        let image = &x[plane * g.in_h * g.in_w..];
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                for oh in 0..oh_n {
                    for ow in 0..ow_n {
                        let at = g.unpad(oh * g.stride_h + ki * g.dilation_h, ow * g.stride_w + kj * g.dilation_w);
                        *out.next().expect("cols sized by cols_shape") =
                            at.map_or(0.0, |(ih, iw)| image[ih * g.in_w + iw]);
                    }
                }
            }
        }
    }
}

/// The reference `col2im` (`torch.nn.functional.fold`), deliberately in the *scatter* form (every column
/// entry added to the pixel it came from) rather than the kernel's gather
/// form: an independent derivation of the same sum, so the parity tests
/// check the kernel's tap arithmetic rather than repeat it.
pub(crate) fn col2im(cols: &[f32], g: &ConvGeometry, x: &mut [f32]) {
    let (oh_n, ow_n) = (g.out_h(), g.out_w());
    x.fill(0.0);
    let mut entries = cols.iter();
    for plane in 0..g.batch * g.channels {
        let image = &mut x[plane * g.in_h * g.in_w..];
        for ki in 0..g.kernel_h {
            for kj in 0..g.kernel_w {
                for oh in 0..oh_n {
                    for ow in 0..ow_n {
                        let v = *entries.next().expect("cols sized by cols_shape");
                        if let Some((ih, iw)) =
                            g.unpad(oh * g.stride_h + ki * g.dilation_h, ow * g.stride_w + kj * g.dilation_w)
                        {
                            image[ih * g.in_w + iw] += v;
                        }
                    }
                }
            }
        }
    }
}

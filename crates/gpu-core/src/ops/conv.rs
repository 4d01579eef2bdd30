//! Convolution lowering (`shaders/conv.wgsl`): `im2col` and its adjoint
//! `col2im` for NCHW tensors with PyTorch's conv2d semantics (stride,
//! asymmetric zero padding, dilation, groups).
//!
//! # Why im2col + matmul
//!
//! A convolution is a matrix product once every receptive field is laid out
//! as a column: `y[n, g] = W[g] @ cols[n, g]`. Lowering it that way lets all
//! convolutions (forward, both gradients, transposed convolution) run on the
//! one tuned batched [`matmul`](super::matmul::matmul) kernel instead of a
//! family of direct-convolution kernels, each of which would need its own
//! tiling work per shape. The price is the memory of the column buffer
//! (`kernel_h * kernel_w` times the input for stride 1), which the two
//! kernels here fill and fold with pure data movement.
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

use super::{f32s, f32s_mut, run, Params};
use crate::gpu::{GpuContext, Launch};
use crate::{Buffer, Error, Result};

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
        let mut extents: Vec<&[usize]> =
            vec![&cols, &input, std::slice::from_ref(&padded_h), std::slice::from_ref(&padded_w)];
        extents.extend(fields.iter().map(std::slice::from_ref));
        for dims in extents {
            let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d.max(1)));
            if n.is_none_or(|n| n >= u32::MAX as usize) {
                return bad(format!("sizes {dims:?} exceed the 2^32 elements one kernel can index"));
            }
        }
        Ok(())
    }

    /// The `conv.wgsl` uniform block for `threads` threads.
    fn params(&self, threads: usize) -> Params {
        Params::new()
            .u32(threads)
            .u32(self.in_h)
            .u32(self.in_w)
            .u32(self.out_h())
            .u32(self.out_w())
            .u32(self.pad_top)
            .u32(self.pad_left)
    }

    /// The `conv.wgsl` override constants: the kernel geometry, and whether
    /// threads take whole rows (`rows`).
    fn constants(&self, rows: bool) -> [(&'static str, f64); 7] {
        [
            ("KH", self.kernel_h as f64),
            ("KW", self.kernel_w as f64),
            ("SH", self.stride_h as f64),
            ("SW", self.stride_w as f64),
            ("DH", self.dilation_h as f64),
            ("DW", self.dilation_w as f64),
            ("ROWS", if rows { 1.0 } else { 0.0 }),
        ]
    }

    /// The input pixel `(ih, iw)` at padded coordinates `(ph, pw)`, or `None`
    /// where those lie in the padding.
    fn unpad(&self, ph: usize, pw: usize) -> Option<(usize, usize)> {
        let ih = ph.checked_sub(self.pad_top).filter(|&i| i < self.in_h)?;
        let iw = pw.checked_sub(self.pad_left).filter(|&i| i < self.in_w)?;
        Some((ih, iw))
    }
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
            im2col_cpu(f32s(&xs), g, &mut f32s_mut(&mut cs)[..n_cols]);
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
            col2im_cpu(f32s(&cs), g, &mut f32s_mut(&mut xs)[..n_in]);
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
    let by_rows = entry == "im2col" && gpu.info.device_type == wgpu::DeviceType::Cpu;
    let n = if by_rows { rows } else { elems };
    gpu.launch(&Launch {
        shader: "conv",
        entry,
        constants: &g.constants(by_rows),
        params: &g.params(n).0,
        inputs: &[src.wgpu()],
        outputs: &[out.wgpu()],
        workgroups: super::groups(n, 256),
    })
}

/// CPU twin of `im2col`: the definition, loop by loop.
fn im2col_cpu(x: &[f32], g: &ConvGeometry, cols: &mut [f32]) {
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

/// CPU twin of `col2im`, deliberately in the *scatter* form (every column
/// entry added to the pixel it came from) rather than the kernel's gather
/// form: an independent derivation of the same sum, so the parity tests
/// check the kernel's tap arithmetic rather than repeat it.
fn col2im_cpu(cols: &[f32], g: &ConvGeometry, x: &mut [f32]) {
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

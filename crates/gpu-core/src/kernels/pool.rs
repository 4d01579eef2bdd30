//! Pooling's geometry and reference twins: the window rule along each axis
//! ([`Axis`]), a pooling's plain-data description ([`Pool`]) and its
//! per-plane loops, one output (forward) or input (backward) pixel at a
//! time as the kernel's threads, and the marker a max-pool window stores
//! where it has no argmax. The launches are `ops/pool.rs` (which adds
//! `Pool`'s launch methods); the fast CPU path is `cpu/pooling.rs`.

use std::ops::Range;

use super::io::{Binding, Elem, IoLibrary, Storage};
use super::variants::{FamilyShaders, Variant};
use crate::{Error, Result};

/// The argmax of a window with no in-bounds element (cannot happen within
/// PyTorch's padding limit, but kernel and twin agree on it anyway).
pub(crate) const NONE: u32 = u32::MAX;

/// The `pool_relu_grad` variant (a ReLU's gradient in the store) of a
/// backward pass's `shader`: the same storage, named beside the variants
/// below so that a new storage is added in one place.
pub(crate) fn relu_grad_variant(shader: &str) -> &'static str {
    match shader {
        "pool_tex" => "pool_relu_grad_tex",
        "pool_f16" => "pool_relu_grad_f16",
        "pool_f16_native" => "pool_relu_grad_f16_native",
        _ => "pool_relu_grad",
    }
}

/// The shaders this family derives from its files by swapping includes,
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("pool_tex", "pool", &[("pool_io_f32", "pool_io_tex")]),
        Variant::new("pool_f16", "pool", &[("pool_io_f32", "pool_io_f16")]),
        Variant::new("pool_f16_native", "pool", &[("pool_io_f32", "pool_io_f16_native")]).f16(),
        // The backward passes with a ReLU's gradient in their store (the
        // fuser's tails: `max_pool(relu(x))`, a global average pool after
        // a ResNet block's ReLU): y read at binding 3, the outputs at 4.
        Variant::new(
            "pool_relu_grad",
            "pool",
            &[("pool_io_f32", "pool_grad_io_f32"), ("pool_tail", "pool_tail_relu_grad")],
        ),
        Variant::new(
            "pool_relu_grad_tex",
            "pool",
            &[("pool_io_f32", "pool_grad_io_tex"), ("pool_tail", "pool_tail_relu_grad")],
        ),
        // Mixed precision's: the gradient rounded to f16 before the mask
        // (ROUND_TAIL), as the unfused f16 store and widen do.
        Variant::new(
            "pool_relu_grad_f16",
            "pool",
            &[("pool_io_f32", "pool_grad_io_f16"), ("pool_tail", "pool_tail_relu_grad")],
        ),
        Variant::new(
            "pool_relu_grad_f16_native",
            "pool",
            &[("pool_io_f32", "pool_grad_io_f16_native"), ("pool_tail", "pool_tail_relu_grad")],
        )
        .f16(),
    ],
    io: &[
        IoLibrary {
            stem: "pool_io",
            storages: Storage::ALL,
            bindings: &[
                // The input (forward) or output gradient (backward).
                Binding::load("src", 1),
                // Max pooling backward's argmax (u32 per output element; copied
                // byte for byte into the texture variant's r32float texture,
                // whose loads move the bits unchanged, NONE included).
                Binding::load("arg", 2).of(Elem::Word),
                // The pooled output or average pooling's input gradient.
                Binding::store("out", 2),
                // Max pooling's input gradient.
                Binding::store("dx", 3),
            ],
        },
        IoLibrary {
            stem: "pool_grad_io",
            storages: Storage::ALL,
            bindings: &[
                Binding::load("src", 1),
                Binding::load("arg", 2).of(Elem::Word),
                // The ReLU's output whose derivative the stored gradient takes.
                Binding::load("y", 3),
                Binding::store("out", 4),
                Binding::store("dx", 4),
            ],
        },
    ],
};

/// The argmax a window stores: with the ReLU fused, [`NONE`] where the
/// maximum is not positive (ReLU's derivative there is 0, so the window
/// passes no gradient back).
pub(crate) fn relu_arg(relu: bool, best: f32, at: u32) -> u32 {
    // A window whose ReLU'd maximum is 0 passes nothing back (the ReLU's
    // gradient is 0 there); a NaN maximum passes it, as in PyTorch.
    if !relu || crate::kernels::unary::relu_passes(best) {
        at
    } else {
        NONE
    }
}

/// One spatial dim of a pooling: input and output size and the window rule.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Axis {
    pub(crate) size: usize,
    pub(crate) out: usize,
    pub(crate) kernel: usize,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
    pub(crate) dilation: usize,
    /// Windows `[floor(i·size/out), ceil((i+1)·size/out))` instead of kernel/stride/padding.
    pub(crate) adaptive: bool,
}

impl Axis {
    /// A dim of `size` pooled by `[kernel, stride, pad, dilation]`, its
    /// output size and checks PyTorch's (`pooling_output_shape`,
    /// `pool2d_shape_check`). With `ceil_mode` the last window may run past
    /// the padded end (its divisor counts up to there), but it must start
    /// inside the input or the left padding.
    pub(crate) fn fixed(
        op: &'static str,
        what: &str,
        size: usize,
        window: [usize; 4],
        ceil_mode: bool,
    ) -> Result<Axis> {
        let [kernel, stride, pad, dilation] = window;
        if kernel == 0 || stride == 0 || dilation == 0 {
            return Err(Error::invalid(
                op,
                format!("{what}: kernel {kernel}, stride {stride} and dilation {dilation} must be positive"),
            ));
        }
        if pad > kernel / 2 {
            return Err(Error::invalid(op, format!("{what}: padding {pad} exceeds half the kernel size {kernel}")));
        }
        let extent = (kernel - 1) * dilation + 1;
        let round_up = if ceil_mode { stride - 1 } else { 0 };
        // Windows that fit, rounded up for ceil_mode: (size + 2 pad -
        // extent + round_up) / stride + 1 when the numerator is not negative.
        let mut out = (size + 2 * pad + round_up + stride).checked_sub(extent).map_or(0, |v| v / stride);
        if ceil_mode && out > 0 && (out - 1) * stride >= size + pad {
            out -= 1;
        }
        if size == 0 || out == 0 {
            return Err(Error::invalid(
                op,
                format!("{what}: input size {size} with padding {pad} is smaller than the window extent {extent}"),
            ));
        }
        Ok(Axis { size, out, kernel, stride, pad, dilation, adaptive: false })
    }

    /// An adaptive dim of `size` inputs pooled to `out` outputs.
    pub(crate) fn adaptive(op: &'static str, what: &str, size: usize, out: usize) -> Result<Axis> {
        if size == 0 || out == 0 {
            return Err(Error::invalid(
                op,
                format!("{what}: input size {size} and output size {out} must be positive"),
            ));
        }
        Ok(Axis { size, out, kernel: 0, stride: 1, pad: 0, dilation: 1, adaptive: true })
    }

    /// Padded rows a fixed window spans (unused by adaptive windows).
    pub(crate) fn extent(&self) -> usize {
        if self.adaptive {
            return 0;
        }
        (self.kernel - 1) * self.dilation + 1
    }

    /// Average window `i`: (first, end) of its in-bounds rows and its length
    /// counting padding (`avg_window` in the kernel).
    pub(crate) fn avg_window(&self, i: usize) -> (usize, usize, usize) {
        if self.adaptive {
            let lo = i * self.size / self.out;
            let hi = ((i + 1) * self.size).div_ceil(self.out);
            return (lo, hi, hi - lo);
        }
        // In padded coordinates, as in the kernel.
        let start = i * self.stride;
        let end = (start + self.kernel).min(self.size + 2 * self.pad);
        let lo = start.max(self.pad).min(self.size + self.pad) - self.pad;
        let hi = end.min(self.size + self.pad).max(self.pad) - self.pad;
        (lo, hi.max(lo), end - start)
    }

    /// The windows that can hold pixel `y` when fixed windows span `extent`
    /// padded rows (`reaching` in the kernel).
    pub(crate) fn reaching(&self, y: usize, extent: usize) -> Range<usize> {
        if self.adaptive {
            return y * self.out / self.size..((y + 1) * self.out).div_ceil(self.size).min(self.out);
        }
        let yp = y + self.pad;
        let lo = if yp >= extent { (yp - extent) / self.stride + 1 } else { 0 };
        lo..(yp / self.stride + 1).min(self.out)
    }
}

/// A pooling of `planes` = N·C images of `rows` × `cols`: the plain data
/// the twins read (`ops/pool.rs` adds the launch methods and validation).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pool {
    pub(crate) planes: usize,
    pub(crate) rows: Axis,
    pub(crate) cols: Axis,
    pub(crate) count_include_pad: bool,
    /// Max pooling of `relu(x)` (the ReLU before it fused), an argmax of
    /// [`NONE`] where the maximum is not positive.
    pub(crate) relu: bool,
}

impl Pool {
    /// Input elements, all planes.
    pub(crate) fn in_len(&self) -> usize {
        self.planes * self.rows.size * self.cols.size
    }

    /// Output elements, all planes.
    pub(crate) fn out_len(&self) -> usize {
        self.planes * self.rows.out * self.cols.out
    }

    /// An average window's divisor from its row and column windows
    /// ([`Axis::avg_window`]): the padded area, or the in-bounds one.
    pub(crate) fn divisor(&self, wy: (usize, usize, usize), wx: (usize, usize, usize)) -> f32 {
        if self.rows.adaptive || self.count_include_pad {
            (wy.2 * wx.2) as f32
        } else {
            ((wy.1 - wy.0) * (wx.1 - wx.0)) as f32
        }
    }

    /// Input and output elements of one image plane.
    pub(crate) fn plane_lens(&self) -> (usize, usize) {
        (self.rows.size * self.cols.size, self.rows.out * self.cols.out)
    }

    // ---- CPU twins: the kernels' loops, one image plane at a time, one
    // output (forward) or input (backward) pixel at a time, as the kernel's threads.

    /// Max pooling of one plane: values and argmax per window.
    pub(crate) fn max_forward_plane(&self, image: &[f32], out: &mut [f32], arg: &mut [u32]) {
        let (r, c) = (self.rows, self.cols);
        for oy in 0..r.out {
            for ox in 0..c.out {
                let (mut best, mut at) = (f32::NEG_INFINITY, NONE);
                for ky in 0..r.kernel {
                    let yp = oy * r.stride + ky * r.dilation;
                    if yp < r.pad || yp >= r.size + r.pad {
                        continue;
                    }
                    for kx in 0..c.kernel {
                        let xp = ox * c.stride + kx * c.dilation;
                        if xp < c.pad || xp >= c.size + c.pad {
                            continue;
                        }
                        let k = (yp - r.pad) * c.size + xp - c.pad;
                        // The ReLU op's own twin (unary table): the same bits.
                        let v = if self.relu { crate::kernels::unary::relu(image[k]) } else { image[k] };
                        if at == NONE || v > best || v.is_nan() {
                            best = v;
                            at = k as u32;
                        }
                    }
                }
                out[oy * c.out + ox] = best;
                arg[oy * c.out + ox] = relu_arg(self.relu, best, at);
            }
        }
    }

    /// Max pooling's backward on one plane, as a gather per input pixel.
    pub(crate) fn max_backward_plane(&self, g: &[f32], arg: &[u32], dx: &mut [f32]) {
        let (r, c) = (self.rows, self.cols);
        for y in 0..r.size {
            for x in 0..c.size {
                let me = (y * c.size + x) as u32;
                let mut acc = 0.0;
                for oy in r.reaching(y, r.extent()) {
                    for ox in c.reaching(x, c.extent()) {
                        let o = oy * c.out + ox;
                        if arg[o] == me {
                            acc += g[o];
                        }
                    }
                }
                dx[y * c.size + x] = acc;
            }
        }
    }

    /// Average pooling of one plane.
    pub(crate) fn avg_forward_plane(&self, image: &[f32], out: &mut [f32]) {
        let (r, c) = (self.rows, self.cols);
        for oy in 0..r.out {
            let wy = r.avg_window(oy);
            for ox in 0..c.out {
                let wx = c.avg_window(ox);
                let mut acc = 0.0;
                for y in wy.0..wy.1 {
                    for x in wx.0..wx.1 {
                        acc += image[y * c.size + x];
                    }
                }
                out[oy * c.out + ox] = acc / self.divisor(wy, wx);
            }
        }
    }

    /// Average pooling's backward on one plane: each input pixel gathers
    /// `grad / divisor` from the windows that hold it.
    pub(crate) fn avg_backward_plane(&self, g: &[f32], dx: &mut [f32]) {
        let (r, c) = (self.rows, self.cols);
        for y in 0..r.size {
            for x in 0..c.size {
                let mut acc = 0.0;
                for oy in r.reaching(y, r.kernel) {
                    let wy = r.avg_window(oy);
                    if y < wy.0 || y >= wy.1 {
                        continue;
                    }
                    for ox in c.reaching(x, c.kernel) {
                        let wx = c.avg_window(ox);
                        if x < wx.0 || x >= wx.1 {
                            continue;
                        }
                        acc += g[oy * c.out + ox] / self.divisor(wy, wx);
                    }
                }
                dx[y * c.size + x] = acc;
            }
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The gather ranges must cover every window that holds each pixel.
    #[test]
    fn reaching_ranges_match_window_membership() {
        let axes = [
            Axis::fixed("t", "h", 7, [3, 2, 1, 1], false).unwrap(),
            Axis::fixed("t", "h", 9, [3, 1, 1, 2], false).unwrap(),
            Axis::fixed("t", "h", 5, [2, 3, 0, 1], false).unwrap(),
            // ceil_mode: a last window past the padded end.
            Axis::fixed("t", "h", 8, [3, 2, 0, 1], true).unwrap(),
            Axis::fixed("t", "h", 2, [3, 2, 1, 1], true).unwrap(),
            Axis::adaptive("t", "h", 7, 3).unwrap(),
            Axis::adaptive("t", "h", 3, 5).unwrap(),
        ];
        for a in axes {
            for y in 0..a.size {
                let holds = |i: usize| {
                    if a.adaptive {
                        let (lo, hi, _) = a.avg_window(i);
                        (lo..hi).contains(&y)
                    } else {
                        (0..a.kernel).any(|k| i * a.stride + k * a.dilation == y + a.pad)
                    }
                };
                let want: Vec<usize> = (0..a.out).filter(|&i| holds(i)).collect();
                let span = a.reaching(y, a.extent());
                let got: Vec<usize> = span.clone().filter(|&i| holds(i)).collect();
                assert_eq!(got, want, "{a:?} pixel {y}: {span:?}");
            }
        }
    }

    #[test]
    fn output_sizes_follow_pytorch() {
        let out = |size, window, ceil| Axis::fixed("t", "h", size, window, ceil).map(|a| a.out);
        assert_eq!(out(7, [3, 2, 1, 1], false).unwrap(), 4);
        assert_eq!(out(9, [3, 1, 1, 2], false).unwrap(), 7);
        assert!(out(4, [3, 1, 2, 1], false).is_err(), "padding over half the kernel");
        assert!(out(2, [3, 1, 0, 1], false).is_err(), "window larger than the input");
        // ceil_mode (torch.nn.functional.max_pool2d(..., ceil_mode=True)'s sizes):
        // rounded up,
        assert_eq!(out(8, [3, 2, 0, 1], true).unwrap(), 4);
        assert_eq!(out(8, [3, 2, 0, 1], false).unwrap(), 3);
        // but no window may start in the right padding,
        assert_eq!(out(5, [2, 2, 1, 1], true).unwrap(), 3);
        // and one window larger than the input is allowed,
        assert_eq!(out(2, [3, 2, 0, 1], true).unwrap(), 1);
        // unless it does not reach the input at all.
        assert!(out(1, [4, 1, 0, 1], true).is_err());
        assert!(out(0, [1, 1, 0, 1], true).is_err());
    }
}

//! 2-D resizing of dense NCHW data (`shaders/interpolate.wgsl`): PyTorch's
//! `F.interpolate` in modes `nearest` and `bilinear` (`align_corners` either
//! way), to a size or by scale factors, and its backward pass.
//!
//! Source positions are computed in f32 with PyTorch's formulas (`scale =
//! in / out`, or `1 / factor` when a scale factor is given, or `(in − 1) /
//! (out − 1)` aligning corners), so the pixels read are PyTorch's. The
//! backward is a gather, one thread per input pixel over the output pixels
//! that read it (found by binary search), so gradients are deterministic
//! and a GPU gives the CPU twin's summation order.

use super::chunks::by_rows;
use super::{check_u32, groups, run, Kind, Params, ParamsDecl};
use crate::cpu::per_row;
pub use crate::kernels::interpolate::Interpolation;
use crate::kernels::interpolate::{self as twin, Axis};
use crate::layout::Dims;
use crate::{Buffer, Error, Result};

/// `interpolate.wgsl`'s `Params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "interpolate",
    fields: &[
        ("n", Kind::U32),
        ("ih", Kind::U32),
        ("iw", Kind::U32),
        ("oh", Kind::U32),
        ("ow", Kind::U32),
        ("scale_h", Kind::F32),
        ("scale_w", Kind::F32),
        ("bilinear", Kind::U32),
        ("align_corners", Kind::U32),
    ],
};

/// A resize of an image's (height, width): the output size, the scale
/// factors it came from (if any: they set the source positions, as in
/// PyTorch) and the mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Resize {
    /// Output (height, width).
    pub size: (usize, usize),
    /// PyTorch's `scale_factor`, when the size came from one.
    pub scale_factor: Option<(f64, f64)>,
    /// Nearest or bilinear.
    pub mode: Interpolation,
}

impl Resize {
    /// To `size` (PyTorch's `size=`).
    pub fn to(size: (usize, usize), mode: Interpolation) -> Resize {
        Resize { size, scale_factor: None, mode }
    }

    /// An `(h, w)` image scaled by `factor` (PyTorch's `scale_factor=`):
    /// the output is `floor(h · factor.0) × floor(w · factor.1)`, and
    /// source positions step by `1 / factor` (PyTorch's default,
    /// `recompute_scale_factor=False`).
    pub fn by((h, w): (usize, usize), factor: (f64, f64), mode: Interpolation) -> Result<Resize> {
        for f in [factor.0, factor.1] {
            if !(f.is_finite() && f > 0.0) {
                let why = format!("scale factors must be positive and finite, got {factor:?}");
                return Err(Error::invalid("interpolate2d", why));
            }
        }
        let size = ((h as f64 * factor.0).floor() as usize, (w as f64 * factor.1).floor() as usize);
        Ok(Resize { size, scale_factor: Some(factor), mode })
    }

    /// The (rows, cols) axes for an NCHW `shape`, checked; and the planes.
    fn axes(&self, op: &'static str, shape: &[usize]) -> Result<(usize, Axis, Axis)> {
        let [n, c, h, w] = *shape else {
            return Err(Error::invalid(op, format!("expects an [N, C, H, W] shape, got {shape:?}")));
        };
        if h == 0 || w == 0 || self.size.0 == 0 || self.size.1 == 0 {
            return Err(Error::invalid(
                op,
                format!("input {h}x{w} and output {}x{} must not be empty (input {shape:?})", self.size.0, self.size.1),
            ));
        }
        check_u32(op, n * c * h * w)?;
        check_u32(op, n * c * self.size.0 * self.size.1)?;
        let f = self.scale_factor;
        let rows = Axis::new(h, self.size.0, f.map(|f| f.0), self.mode);
        let cols = Axis::new(w, self.size.1, f.map(|f| f.1), self.mode);
        Ok((n * c, rows, cols))
    }
}

/// `F.interpolate` of the dense NCHW buffer `x` of `shape` by `resize`:
/// the resized values and their shape `[N, C, OH, OW]`.
pub fn interpolate2d(x: &Buffer, shape: &[usize], resize: Resize) -> Result<(Buffer, Dims)> {
    const OP: &str = "interpolate2d";
    let (planes, rows, cols) = resize.axes(OP, shape)?;
    x.check_len(OP, "input", planes * rows.size * cols.size, 4)?;
    let out = Buffer::alloc(x.device(), (planes * rows.out * cols.out) as u64 * 4)?;
    launch(OP, "forward", (planes, rows, cols), x, &out)?;
    Ok((out, [shape[0], shape[1], rows.out, cols.out].into()))
}

/// Backward of [`interpolate2d`]: the input gradient (dense, `in_shape`),
/// each input pixel the weighted sum of the output gradients of the pixels
/// that read it.
pub fn interpolate2d_backward(grad_out: &Buffer, in_shape: &[usize], resize: Resize) -> Result<Buffer> {
    const OP: &str = "interpolate2d_backward";
    let (planes, rows, cols) = resize.axes(OP, in_shape)?;
    grad_out.check_len(OP, "output gradient", planes * rows.out * cols.out, 4)?;
    let dx = Buffer::alloc(grad_out.device(), (planes * rows.size * cols.size) as u64 * 4)?;
    launch(OP, "backward", (planes, rows, cols), grad_out, &dx)?;
    Ok(dx)
}

/// One launch of `entry` from `src` into `dst` (forward: a thread per
/// output pixel; backward: per input pixel), in chunks of planes past the
/// binding limit; or the CPU twin.
fn launch(
    op: &'static str,
    entry: &'static str,
    (planes, rows, cols): (usize, Axis, Axis),
    src: &Buffer,
    dst: &Buffer,
) -> Result<()> {
    let forward = entry == "forward";
    if planes == 0 {
        return Ok(());
    }
    let dev = src.device();
    run(
        dev,
        |g| {
            let dispatch_planes = |count: usize, ins: &[&Buffer], outs: &[&Buffer]| {
                let per = if forward { rows.out * cols.out } else { rows.size * cols.size };
                let n = count * per;
                let params = Params::of(&PARAMS)
                    .set_u32("n", n)
                    .set_u32("ih", rows.size)
                    .set_u32("iw", cols.size)
                    .set_u32("oh", rows.out)
                    .set_u32("ow", cols.out)
                    .set_f32("scale_h", rows.scale)
                    .set_f32("scale_w", cols.scale)
                    .set_u32("bilinear", rows.bilinear as usize)
                    .set_u32("align_corners", rows.align_corners as usize);
                super::dispatch(g, "interpolate", entry, &[], &params, ins, outs, groups(n, 256))
            };
            if super::past_limit(g, [src, dst]) {
                return by_rows(g, &format!("{op}: one plane"), planes, &[src], &[dst], dispatch_planes);
            }
            dispatch_planes(planes, &[src], &[dst])
        },
        || {
            let (xs, mut ys) = (src.host(), dst.host_mut());
            let (xs, ys): (&[f32], &mut [f32]) = (bytemuck::cast_slice(&xs), bytemuck::cast_slice_mut(&mut ys));
            let (il, ol) = (rows.size * cols.size, rows.out * cols.out);
            // Planes are independent: the fast CPU backend spreads them over its cores.
            let fast = dev.runs_fast_cpu();
            let (rt, ct) = (rows.tables(), cols.tables());
            if forward {
                per_row(fast, (&mut ys[..planes * ol], ol), |p, y| {
                    twin::forward_plane(rows.bilinear, &rt, &ct, &xs[p * il..][..il], y)
                });
            } else {
                per_row(fast, (&mut ys[..planes * il], il), |p, d| {
                    twin::backward_plane(&rt, &ct, &xs[p * ol..][..ol], d)
                });
            }
        },
    )
}

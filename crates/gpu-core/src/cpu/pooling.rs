//! Fast pooling: the reference's per-plane loops (`Pool::*_plane` in
//! `kernels/pool.rs`) with the N·C image planes split over all cores
//! ([`super::per_row2`]), and max
//! pooling's backward as a scatter of each output gradient to its argmax,
//! which adds the same terms in the same order as the reference's gather
//! (windows in row-major order), so the results are bit-identical.

use super::simd::multiversion;
use crate::kernels::pool::{relu_arg, NONE};
use crate::kernels::unary::relu as relu_of;

/// The in-bounds input indices of each window along one axis, in kernel
/// order: window `i` reads `idx[start[i]..start[i + 1]]`. Worked out once
/// per launch, so the per-window loops do no bounds arithmetic.
pub(crate) struct Taps {
    start: Vec<usize>,
    idx: Vec<usize>,
}

impl Taps {
    /// Taps of `windows` windows, window `i` holding `of(i)`.
    pub(crate) fn new<I: IntoIterator<Item = usize>>(windows: usize, of: impl Fn(usize) -> I) -> Taps {
        let (mut start, mut idx) = (vec![0], Vec::new());
        for i in 0..windows {
            idx.extend(of(i));
            start.push(idx.len());
        }
        Taps { start, idx }
    }

    fn of(&self, i: usize) -> &[usize] {
        &self.idx[self.start[i]..self.start[i + 1]]
    }

    /// Whether window `i` is `[2i, 2i + 1]` for every window (a 2-wide
    /// kernel at stride 2, no padding or dilation).
    fn pairs(&self) -> bool {
        (0..self.start.len() - 1).all(|i| self.of(i) == [2 * i, 2 * i + 1])
    }
}

/// Max pooling of one plane of width `w` over the windows `rows` × `cols`
/// (of `relu(image)` when `relu`): the reference's scan (same order, same
/// tie and NaN rule) without its per-element bounds tests.
pub(crate) fn max_forward_plane(
    rows: &Taps,
    cols: &Taps,
    w: usize,
    relu: bool,
    image: &[f32],
    out: &mut [f32],
    arg: &mut [u32],
) {
    let ow = cols.start.len() - 1;
    if rows.pairs() && cols.pairs() {
        return max_forward_2x2(w, ow, relu, image, out, arg);
    }
    for (oy, (out, arg)) in out.chunks_exact_mut(ow).zip(arg.chunks_exact_mut(ow)).enumerate() {
        let ys = rows.of(oy);
        for (ox, (o, a)) in out.iter_mut().zip(arg.iter_mut()).enumerate() {
            let (mut best, mut at) = (f32::NEG_INFINITY, NONE);
            for &y in ys {
                let line = &image[y * w..(y + 1) * w];
                for &x in cols.of(ox) {
                    let v = if relu { relu_of(line[x]) } else { line[x] };
                    if at == NONE || v > best || v.is_nan() {
                        best = v;
                        at = (y * w + x) as u32;
                    }
                }
            }
            (*o, *a) = (best, relu_arg(relu, best, at));
        }
    }
}

multiversion! {
    /// [`max_forward_plane`] for 2 x 2 windows at stride 2 (the common
    /// pooling): the same scan order, tie and NaN rule, written as selects
    /// over the two input rows of each output row, so that it vectorizes
    /// (the general loop walks tap lists per window, about 2.5 ns an input
    /// element).
    fn max_forward_2x2(w: usize, ow: usize, relu: bool, image: &[f32], out: &mut [f32], arg: &mut [u32]) {
        if ow == 0 {
            return;
        }
        for (oy, (out, arg)) in out.chunks_exact_mut(ow).zip(arg.chunks_exact_mut(ow)).enumerate() {
            let (top, bottom) = (&image[2 * oy * w..][..2 * ow], &image[(2 * oy + 1) * w..][..2 * ow]);
            let (row0, row1) = ((2 * oy * w) as u32, ((2 * oy + 1) * w) as u32);
            for ox in 0..ow {
                let v = |line: &[f32], x: usize| if relu { relu_of(line[x]) } else { line[x] };
                let (mut best, mut at) = (v(top, 2 * ox), row0 + 2 * ox as u32);
                for (val, idx) in [
                    (v(top, 2 * ox + 1), row0 + 2 * ox as u32 + 1),
                    (v(bottom, 2 * ox), row1 + 2 * ox as u32),
                    (v(bottom, 2 * ox + 1), row1 + 2 * ox as u32 + 1),
                ] {
                    let take = val > best || val.is_nan();
                    best = if take { val } else { best };
                    at = if take { idx } else { at };
                }
                out[ox] = best;
                arg[ox] = relu_arg(relu, best, at);
            }
        }
    }
}

/// Max pooling's backward on one plane: `dx[arg[o]] += g[o]` for the
/// plane's outputs in order (an argmax outside the plane, which only a
/// window with no element could give, adds nothing, as in the gather).
pub(crate) fn max_backward_scatter(g: &[f32], arg: &[u32], dx: &mut [f32]) {
    dx.fill(0.0);
    for (&gv, &a) in g.iter().zip(arg) {
        if a != NONE {
            if let Some(d) = dx.get_mut(a as usize) {
                *d += gv;
            }
        }
    }
}

//! Fast gathers of the convolution operands (the CPU side of implicit GEMM):
//! the reference `ops::conv::gather_cpu` decodes every element through a
//! closure; these write whole output rows, with the valid column range of
//! each kernel tap worked out once per row so the inner loop is a slice copy
//! (stride 1) or a strided load. They stay on the calling thread: the sgemm
//! that follows is threaded, and rayon workers spinning beside its threads
//! made a ResNet-20 step slower on 2 cores.

use crate::ops::conv::ConvGeometry;
use crate::ops::matmul::ConvGather;

/// The output columns `lo..hi` whose input column `o * stride + offset`
/// lies in `0..len`, for `count` output columns.
fn valid_range(count: usize, stride: usize, offset: isize, len: usize) -> (usize, usize) {
    let lo = if offset >= 0 { 0 } else { (-offset) as usize }.div_ceil(stride);
    let room = len as isize - offset;
    let hi = if room <= 0 { 0 } else { (room as usize).div_ceil(stride) }.min(count);
    (lo.min(hi), hi)
}

/// Tap `r` of a row index `(channel, ki, kj)`: the channel, and the vertical
/// and horizontal offsets of the tap in input coordinates.
fn tap(g: &ConvGeometry, r: usize) -> (usize, isize, isize) {
    let taps = g.kernel_h * g.kernel_w;
    let (c, ki, kj) = (r / taps, r % taps / g.kernel_w, r % g.kernel_w);
    let dy = (ki * g.dilation_h) as isize - g.pad_top as isize;
    let dx = (kj * g.dilation_w) as isize - g.pad_left as isize;
    (c, dy, dx)
}

/// Writes the `k` x `n` matrix `form` of the batch entry starting at
/// `src[0]` into `out` (`k * n` elements) and returns the (row, column)
/// strides under which `out` is that matrix: the transposed form is left as
/// columns and read transposed, which the sgemm accepts for free.
pub(crate) fn gather(
    form: ConvGather,
    g: &ConvGeometry,
    src: &[f32],
    k: usize,
    n: usize,
    out: &mut [f32],
) -> (usize, usize) {
    let (oh_n, ow_n) = (g.out_h(), g.out_w());
    let (h, w) = (g.in_h, g.in_w);
    match form {
        ConvGather::Columns | ConvGather::ColumnsT => {
            // Column rows (c, ki, kj) of OH·OW entries each.
            let (rows, l) = if form == ConvGather::Columns { (k, n) } else { (n, k) };
            let gather_rows = |start: usize, chunk: &mut [f32]| {
                for (i, row) in chunk.chunks_exact_mut(l).enumerate() {
                    let (c, dy, dx) = tap(g, start / l + i);
                    let plane = &src[c * h * w..(c + 1) * h * w];
                    let (lo, hi) = valid_range(ow_n, g.stride_w, dx, w);
                    for (oh, dst) in row.chunks_exact_mut(ow_n).enumerate() {
                        let ih = (oh * g.stride_h) as isize + dy;
                        if ih < 0 || ih >= h as isize || lo == hi {
                            dst.fill(0.0);
                            continue;
                        }
                        let line = &plane[ih as usize * w..][..w];
                        dst[..lo].fill(0.0);
                        dst[hi..].fill(0.0);
                        let first = (lo * g.stride_w) as isize + dx;
                        if g.stride_w == 1 {
                            dst[lo..hi].copy_from_slice(&line[first as usize..][..hi - lo]);
                        } else {
                            for (j, d) in dst[lo..hi].iter_mut().enumerate() {
                                *d = line[first as usize + j * g.stride_w];
                            }
                        }
                    }
                }
            };
            gather_rows(0, &mut out[..rows * l]);
            if form == ConvGather::Columns {
                (n, 1)
            } else {
                (1, k)
            }
        }
        ConvGather::Adjoint => {
            // Row (oc, ki, kj) over the input pixels: each output position
            // sends its value to the one pixel the tap covers (distinct
            // positions reach distinct pixels, so plain stores suffice).
            let plane_out = oh_n * ow_n;
            let scatter_rows = |start: usize, chunk: &mut [f32]| {
                chunk.fill(0.0);
                for (i, row) in chunk.chunks_exact_mut(n).enumerate() {
                    let (oc, dy, dx) = tap(g, start / n + i);
                    let grad = &src[oc * plane_out..(oc + 1) * plane_out];
                    let (lo, hi) = valid_range(ow_n, g.stride_w, dx, w);
                    if lo == hi {
                        continue;
                    }
                    for oh in 0..oh_n {
                        let ih = (oh * g.stride_h) as isize + dy;
                        if ih < 0 || ih >= h as isize {
                            continue;
                        }
                        let line = &mut row[ih as usize * w..][..w];
                        let from = &grad[oh * ow_n..][lo..hi];
                        let first = ((lo * g.stride_w) as isize + dx) as usize;
                        if g.stride_w == 1 {
                            line[first..first + (hi - lo)].copy_from_slice(from);
                        } else {
                            for (j, &v) in from.iter().enumerate() {
                                line[first + j * g.stride_w] = v;
                            }
                        }
                    }
                }
            };
            scatter_rows(0, &mut out[..k * n]);
            (n, 1)
        }
    }
}

//! Fast gathers of the convolution operands (the CPU side of implicit GEMM):
//! the reference `ops::conv::gather_cpu` decodes every element through a
//! closure; these write whole output rows, with the valid column range of
//! each kernel tap worked out once per row so the inner loop is a slice copy
//! (stride 1) or a strided load. They stay on the calling thread: the sgemm
//! that follows is threaded, and rayon workers spinning beside its threads
//! made a ResNet-20 step slower on 2 cores.

use super::gemm::{gemm, Mat};
use super::gemm_packed_a::{product, PackedA, Run, HALF, RUN};
use crate::kernels::conv::{ConvGather, ConvGeometry};

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

/// A stride-1 convolution's product read in place (implicit GEMM): B's
/// row `(plane, ki, kj)` is the source plane, zero-padded, shifted by the
/// tap, so a copy of the source with zero borders (a ninth of the column
/// buffer for a 3x3 kernel) replaces the gather, and
/// [`gemm_packed_a`](super::gemm_packed_a) reads each row of a run of
/// output pixels at its offset. The forward pass (`Columns`) reads the
/// input; the input gradient (`Adjoint`) reads the output gradient, padded
/// by `(kh - 1)·dh - pad` so that tap `(ki, kj)` is the shift `(kh - 1 -
/// ki, kw - 1 - kj)`: the correlation with the flipped kernel.
pub(crate) struct Implicit {
    /// Planes of one batch entry's source, and their height and width.
    planes: usize,
    src: (usize, usize),
    /// Zero rows above and below, columns left and right of each plane.
    pad: (usize, usize, usize, usize),
    /// Where each row of B starts in the padded source.
    offsets: Vec<usize>,
    /// The output pixels in runs of at most 16 along a row.
    runs: Vec<Run>,
    /// Output pixels of one entry (C's columns).
    n: usize,
}

impl Implicit {
    /// The implicit form of the `m` x `k` x `n` product `form` gathers,
    /// or `None` where it does not apply: a stride other than 1, the
    /// weight gradient's form, padding wider than the kernel (the input
    /// gradient), output rows short enough to leave a quarter of the
    /// vector lanes idle, or a host or A size [`gemm_packed_a`] does not
    /// take.
    ///
    /// [`gemm_packed_a`]: super::gemm_packed_a
    pub(crate) fn new(form: ConvGather, g: &ConvGeometry, (m, k, n): (usize, usize, usize)) -> Option<Self> {
        if g.stride_h != 1 || g.stride_w != 1 || !super::gemm_packed_a::suits((m, k)) {
            return None;
        }
        let (kh, kw, dh, dw) = (g.kernel_h, g.kernel_w, g.dilation_h, g.dilation_w);
        let (span_h, span_w) = ((kh - 1) * dh, (kw - 1) * dw);
        let (planes, src, out, pad) = match form {
            ConvGather::Columns => (
                g.group_channels(),
                (g.in_h, g.in_w),
                (g.out_h(), g.out_w()),
                (g.pad_top, g.pad_left, g.pad_bottom, g.pad_right),
            ),
            ConvGather::Adjoint => {
                let widths = [g.pad_top, g.pad_left, g.pad_bottom, g.pad_right];
                if widths.iter().zip([span_h, span_w, span_h, span_w]).any(|(&p, s)| p > s) {
                    return None;
                }
                let pad = (span_h - g.pad_top, span_w - g.pad_left, span_h - g.pad_bottom, span_w - g.pad_right);
                (k / (kh * kw), (g.out_h(), g.out_w()), (g.in_h, g.in_w), pad)
            }
            ConvGather::ColumnsT => return None,
        };
        let (out_h, out_w) = out;
        // Runs that leave a quarter of the lanes idle do not pay (rows of 8
        // go two to a run).
        let runs_per_row = out_w.div_ceil(RUN);
        let narrow = 4 * out_w < 3 * runs_per_row * RUN && out_w != HALF;
        if out_h * out_w != n || planes * kh * kw != k || narrow {
            return None;
        }
        let (hp, wp) = (src.0 + pad.0 + pad.2, src.1 + pad.1 + pad.3);
        let tap = |t: usize| match form {
            ConvGather::Adjoint => (kh - 1 - t / kw, kw - 1 - t % kw),
            _ => (t / kw, t % kw),
        };
        let offsets = (0..k)
            .map(|r| {
                let (ki, kj) = tap(r % (kh * kw));
                r / (kh * kw) * hp * wp + ki * dh * wp + kj * dw
            })
            .collect();
        let runs = if out_w == HALF {
            // Two rows of 8 outputs per run, adjacent in C, apart in B.
            (0..out_h)
                .step_by(2)
                .map(|y| Run { b: y * wp, b_hi: (y + 1) * wp, c: y * out_w, len: out_w * (out_h - y).min(2) })
                .collect()
        } else {
            (0..out_h)
                .flat_map(|y| {
                    (0..out_w).step_by(RUN).map(move |x| Run::contiguous(y * wp + x, y * out_w + x, RUN.min(out_w - x)))
                })
                .collect()
        };
        Some(Implicit { planes, src, pad, offsets, runs, n })
    }

    /// One entry's source (`planes` planes from `src[0]`) into `padded`
    /// with zero borders.
    fn pad_into(&self, src: &[f32], padded: &mut Vec<f32>) {
        let ((h, w), (top, left, bottom, right)) = (self.src, self.pad);
        let (hp, wp) = (h + top + bottom, w + left + right);
        padded.clear();
        padded.resize(self.planes * hp * wp, 0.0);
        for (plane, dst) in src[..self.planes * h * w].chunks_exact(h * w).zip(padded.chunks_exact_mut(hp * wp)) {
            for (row, line) in plane.chunks_exact(w).zip(dst[top * wp..].chunks_exact_mut(wp)) {
                line[left..left + w].copy_from_slice(row);
            }
        }
    }
}

/// Every batch entry's `m` x `n` block of `out` as the implicit product of
/// `a` and entry `i` of `src` (starting at `src[entry(i)]`), one entry per
/// task on all cores.
pub(crate) fn product_implicit(
    imp: &Implicit,
    a: &PackedA,
    src: &[f32],
    entry: impl Fn(usize) -> usize + Sync,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    out.par_chunks_mut((a.rows() * imp.n).max(1)).enumerate().for_each_init(Vec::new, |padded, (i, c)| {
        imp.pad_into(&src[entry(i)..], padded);
        product(a, &imp.offsets, &imp.runs, padded, 1.0, 0.0, c, imp.n);
    });
}

/// Scratch bound of [`product_shared_a`] and [`weight_grad`]: batch entries
/// are gathered side by side in groups whose columns fit in this many floats
/// (at least one entry). Kept near cache size: with 64 MB of columns the
/// copies in and out cost more than the wide product saved (a 64-channel
/// conv got 1.5x slower than one product per image).
pub(crate) const SIDE_BY_SIDE_FLOATS: usize = 1 << 20;

/// All batch entries of a gathered product whose A (`m` x `k`, strides
/// `a_rs`, `a_cs`, starting at `a[0]`) is the same for every entry — a
/// convolution's forward pass and input gradient with one group. Instead of
/// one small sgemm per image (M = output channels is often 16), the
/// entries' B matrices are laid side by side and multiplied by one wide
/// sgemm, which keeps every core busy; the product is then split back into
/// the per-entry `m` x `n` blocks of `out`. `entry(i)` is where entry `i`
/// of `src` starts. `form` must not be `ColumnsT` (its A differs per entry).
#[allow(clippy::too_many_arguments)]
pub(crate) fn product_shared_a(
    form: ConvGather,
    g: &ConvGeometry,
    (a, a_rs, a_cs): (&[f32], usize, usize),
    (m, k, n): (usize, usize, usize),
    src: &[f32],
    entry: impl Fn(usize) -> usize,
    out: &mut [f32],
) {
    debug_assert!(form != ConvGather::ColumnsT);
    let batches = out.len() / (m * n).max(1);
    let per = (SIDE_BY_SIDE_FLOATS / (k * n).max(1)).clamp(1, batches.max(1));
    let (mut one, mut cols, mut prod) = (vec![0.0; k * n], Vec::new(), Vec::new());
    for e0 in (0..batches).step_by(per) {
        let e = per.min(batches - e0);
        let width = e * n;
        cols.resize(k * width, 0.0);
        prod.resize(m * width, 0.0);
        for j in 0..e {
            gather(form, g, &src[entry(e0 + j)..], k, n, &mut one);
            for (r, row) in one.chunks_exact(n).enumerate() {
                cols[r * width + j * n..][..n].copy_from_slice(row);
            }
        }
        gemm((m, k, width), 1.0, Mat { data: a, rs: a_rs, cs: a_cs }, Mat::rows(&cols, width), 0.0, &mut prod, width);
        for j in 0..e {
            let block = &mut out[(e0 + j) * m * n..][..m * n];
            for (r, dst) in block.chunks_exact_mut(n).enumerate() {
                dst.copy_from_slice(&prod[r * width + j * n..][..n]);
            }
        }
    }
}

/// Products up to this many multiply-adds per batch entry run one entry per
/// task ([`product_per_entry`]): too small for matrixmultiply to thread
/// (ResNet-20's convolutions are all 2.4M), while a 64-channel 32x32
/// convolution (38M) is faster as one threaded sgemm per entry.
pub(crate) const PER_ENTRY_MAX_MACS: usize = 1 << 23;

/// A gathered product with one batch entry per task, on all cores: each
/// task gathers its entry's B into a scratch of its own and multiplies
/// straight into the entry's `m` x `n` block of `out` (no side-by-side
/// copies in and out). A's entry `i` starts at `a[a_at(i)]` with strides
/// `a_rs`, `a_cs`; B's at `src[b_at(i)]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn product_per_entry(
    form: ConvGather,
    g: &ConvGeometry,
    (a, a_rs, a_cs): (&[f32], usize, usize),
    a_at: impl Fn(usize) -> usize + Sync,
    (m, k, n): (usize, usize, usize),
    src: &[f32],
    b_at: impl Fn(usize) -> usize + Sync,
    out: &mut [f32],
) {
    use rayon::prelude::*;
    out.par_chunks_mut((m * n).max(1)).enumerate().for_each_init(
        || vec![0.0f32; k * n],
        |scratch, (i, c)| {
            let (b_rs, b_cs) = gather(form, g, &src[b_at(i)..], k, n, scratch);
            let a = Mat { data: &a[a_at(i)..], rs: a_rs, cs: a_cs };
            gemm((m, k, n), 1.0, a, Mat { data: scratch, rs: b_rs, cs: b_cs }, 0.0, c, n);
        },
    );
}

/// The weight gradient `dW[g] = Σ_n dY[n, g] @ cols[n, g]ᵀ` as one sgemm
/// per group whose inner dimension runs over all images (in groups of
/// images bounded by the scratch size, accumulated into `dw`): the
/// reference takes one product per image and sums them afterwards, which is
/// many small products plus a reduction. `gy` is `[N, OC, OH·OW]`, `x`
/// `[N, C, H, W]`, `dw` `[OC, C/G·kh·kw]`.
pub(crate) fn weight_grad(g: &ConvGeometry, out_channels: usize, gy: &[f32], x: &[f32], dw: &mut [f32]) {
    let (groups, kc, l) = (g.groups, g.col_rows(), g.out_h() * g.out_w());
    let (ocg, cg, hw) = (out_channels / groups, g.group_channels(), g.in_h * g.in_w);
    dw.fill(0.0);
    if g.batch == 0 || l == 0 {
        return;
    }
    if let Some(imp) = Implicit::new(ConvGather::Columns, g, (ocg, kc, l)) {
        return weight_grad_in_place(&imp, g, out_channels, gy, x, dw);
    }
    if ocg * l * kc <= PER_ENTRY_MAX_MACS {
        return weight_grad_split(g, out_channels, gy, x, dw);
    }
    let per = (SIDE_BY_SIDE_FLOATS / (kc * l).max(1)).clamp(1, g.batch);
    let (mut one, mut cols, mut dys) = (vec![0.0; kc * l], Vec::new(), Vec::new());
    for grp in 0..groups {
        for n0 in (0..g.batch).step_by(per) {
            let e = per.min(g.batch - n0);
            let width = e * l;
            cols.resize(kc * width, 0.0);
            dys.resize(ocg * width, 0.0);
            for j in 0..e {
                let n = n0 + j;
                gather(ConvGather::Columns, g, &x[(n * g.channels + grp * cg) * hw..], kc, l, &mut one);
                for (r, row) in one.chunks_exact(l).enumerate() {
                    cols[r * width + j * l..][..l].copy_from_slice(row);
                }
                for oc in 0..ocg {
                    let from = &gy[(n * out_channels + grp * ocg + oc) * l..][..l];
                    dys[oc * width + j * l..][..l].copy_from_slice(from);
                }
            }
            // dW[grp] += dys (ocg x width) @ colsᵀ (width x kc).
            let dw = &mut dw[grp * ocg * kc..][..ocg * kc];
            gemm((ocg, width, kc), 1.0, Mat::rows(&dys, width), Mat::transposed(&cols, width), 1.0, dw, kc);
        }
    }
}

/// Images per weight-gradient task are `batch / WGRAD_TASKS` (rounded up):
/// a fixed split, so the partial sums, and the result, do not depend on the
/// number of cores.
const WGRAD_TASKS: usize = 8;

/// Output pixels a chunk of [`weight_grad_in_place`] sums at least.
const MIN_DOT_PIXELS: usize = 512;

/// [`weight_grad`] of a stride-1 convolution read in place
/// ([`gemm_dots`](super::gemm_dots) over the zero-bordered input and the
/// output gradient, no column buffer): the images split into the same
/// fixed chunks as [`weight_grad_split`], each chunk's `dW` summed over its
/// images in registers, the partials summed in chunk order.
fn weight_grad_in_place(imp: &Implicit, g: &ConvGeometry, out_channels: usize, gy: &[f32], x: &[f32], dw: &mut [f32]) {
    use super::gemm_dots::{dots, Entry};
    use rayon::prelude::*;
    let (groups, kc, l) = (g.groups, g.col_rows(), g.out_h() * g.out_w());
    let (ocg, cg, hw) = (out_channels / groups, g.group_channels(), g.in_h * g.in_w);
    // Each output's 16 lanes are reduced once per chunk: small images go
    // more to a chunk (a fixed count for the geometry, so the result does
    // not depend on the cores).
    let per = g.batch.div_ceil(WGRAD_TASKS).max(MIN_DOT_PIXELS.div_ceil(l));
    let a_rows: Vec<usize> = (0..ocg).map(|i| i * l).collect();
    let partials: Vec<Vec<f32>> = (0..g.batch.div_ceil(per))
        .into_par_iter()
        .map(|t| {
            let images = t * per..((t + 1) * per).min(g.batch);
            let mut acc = vec![0.0f32; dw.len()];
            let mut padded: Vec<Vec<f32>> = images.clone().map(|_| Vec::new()).collect();
            for grp in 0..groups {
                for (n, p) in images.clone().zip(&mut padded) {
                    imp.pad_into(&x[(n * g.channels + grp * cg) * hw..], p);
                }
                let entries: Vec<Entry> = images
                    .clone()
                    .zip(&padded)
                    .map(|(n, p)| Entry { a: &gy[(n * out_channels + grp * ocg) * l..][..ocg * l], b: p })
                    .collect();
                let acc = &mut acc[grp * ocg * kc..][..ocg * kc];
                dots(&entries, (&a_rows, &imp.offsets), &imp.runs, acc, kc);
            }
            acc
        })
        .collect();
    for p in &partials {
        dw.iter_mut().zip(p).for_each(|(d, &v)| *d += v);
    }
}

/// [`weight_grad`] for small per-image products: the images split into
/// fixed chunks on all cores, each chunk accumulating its own partial `dW`
/// one image at a time (dY of an image is already the `ocg` x `l` operand,
/// no copy), the partials summed in chunk order.
fn weight_grad_split(g: &ConvGeometry, out_channels: usize, gy: &[f32], x: &[f32], dw: &mut [f32]) {
    use rayon::prelude::*;
    let (groups, kc, l) = (g.groups, g.col_rows(), g.out_h() * g.out_w());
    let (ocg, cg, hw) = (out_channels / groups, g.group_channels(), g.in_h * g.in_w);
    let per = g.batch.div_ceil(WGRAD_TASKS);
    let partials: Vec<Vec<f32>> = (0..g.batch.div_ceil(per))
        .into_par_iter()
        .map(|t| {
            let (mut acc, mut cols) = (vec![0.0f32; dw.len()], vec![0.0f32; kc * l]);
            for n in t * per..((t + 1) * per).min(g.batch) {
                for grp in 0..groups {
                    gather(ConvGather::Columns, g, &x[(n * g.channels + grp * cg) * hw..], kc, l, &mut cols);
                    let dy = &gy[(n * out_channels + grp * ocg) * l..][..ocg * l];
                    // acc[grp] += dY (ocg x l) @ colsᵀ (l x kc).
                    let acc = &mut acc[grp * ocg * kc..][..ocg * kc];
                    gemm((ocg, l, kc), 1.0, Mat::rows(dy, l), Mat::transposed(&cols, l), 1.0, acc, kc);
                }
            }
            acc
        })
        .collect();
    for p in &partials {
        dw.iter_mut().zip(p).for_each(|(d, &v)| *d += v);
    }
}

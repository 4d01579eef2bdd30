//! Interpolation's geometry and reference twins (`ops/interpolate.rs`,
//! `shaders/interpolate.wgsl`): where each output pixel reads along one
//! axis ([`Axis`], PyTorch's `area_pixel_compute_scale` and source-index
//! rules in f32), and the per-plane loops, one output (forward) or input
//! (backward) pixel at a time, as the kernel's threads.

use std::ops::Range;

/// How output pixels read the input: PyTorch's `mode="nearest"` or
/// `mode="bilinear"` (with its `align_corners`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// The input pixel at `floor(dst · in / out)` (PyTorch's legacy
    /// `nearest`, not `nearest-exact`).
    Nearest,
    /// A weighted mean of the 2 × 2 nearest input pixels. With
    /// `align_corners` the corner pixels' centres line up (source `dst ·
    /// (in − 1) / (out − 1)`); without, the corners' edges do (source
    /// `(dst + ½) · in / out − ½`, clamped at 0).
    Bilinear {
        /// PyTorch's `align_corners`.
        align_corners: bool,
    },
}

/// One spatial axis: input and output size and the f32 scale PyTorch's
/// kernels compute from them (or from a given scale factor).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Axis {
    pub(crate) size: usize,
    pub(crate) out: usize,
    pub(crate) scale: f32,
    pub(crate) bilinear: bool,
    pub(crate) align_corners: bool,
}

impl Axis {
    /// `size` pixels resized to `out`, with PyTorch's scale: `(size − 1) /
    /// (out − 1)` aligning corners, else `1 / factor` for a given scale
    /// factor, else `size / out` (`area_pixel_compute_scale`).
    pub(crate) fn new(size: usize, out: usize, factor: Option<f64>, mode: Interpolation) -> Axis {
        let (bilinear, align_corners) = match mode {
            Interpolation::Nearest => (false, false),
            Interpolation::Bilinear { align_corners } => (true, align_corners),
        };
        let scale = if align_corners {
            if out > 1 {
                (size - 1) as f32 / (out - 1) as f32
            } else {
                0.0
            }
        } else {
            match factor {
                Some(f) if f > 0.0 => (1.0 / f) as f32,
                _ => size as f32 / out as f32,
            }
        };
        Axis { size, out, scale, bilinear, align_corners }
    }

    /// The input pixel output pixel `d` reads (nearest): PyTorch's
    /// `nearest_idx`, whose same size and double size it takes exactly,
    /// whatever scale factor gave them.
    pub(crate) fn nearest(&self, d: usize) -> usize {
        if self.out == self.size {
            d
        } else if self.out == 2 * self.size {
            d >> 1
        } else {
            ((d as f32 * self.scale).floor() as usize).min(self.size - 1)
        }
    }

    /// The two input pixels output pixel `d` mixes and their weights
    /// (bilinear): `(i0, i1, w0, w1)`, `i1 = i0` at the last pixel.
    pub(crate) fn linear(&self, d: usize) -> (usize, usize, f32, f32) {
        let src =
            if self.align_corners { self.scale * d as f32 } else { (self.scale * (d as f32 + 0.5) - 0.5).max(0.0) };
        let i0 = (src as usize).min(self.size - 1);
        let i1 = if i0 < self.size - 1 { i0 + 1 } else { i0 };
        let w1 = src - i0 as f32;
        (i0, i1, 1.0 - w1, w1)
    }

    /// The first input pixel output pixel `d` reads.
    fn first(&self, d: usize) -> usize {
        if self.bilinear {
            self.linear(d).0
        } else {
            self.nearest(d)
        }
    }

    /// How much output pixel `d` takes from input pixel `i` along this axis.
    pub(crate) fn weight(&self, d: usize, i: usize) -> f32 {
        if !self.bilinear {
            return if self.nearest(d) == i { 1.0 } else { 0.0 };
        }
        let (i0, i1, w0, w1) = self.linear(d);
        let mut w = 0.0;
        if i0 == i {
            w += w0;
        }
        if i1 == i {
            w += w1;
        }
        w
    }

    /// The output pixels that can read input pixel `i`: those whose first
    /// pixel is `i` (or `i − 1`, whose second is `i`, bilinear). The first
    /// pixel never decreases along the output, so both ends are binary
    /// searches with the forward's own arithmetic.
    pub(crate) fn reaching(&self, i: usize) -> Range<usize> {
        let lo = if self.bilinear { i.saturating_sub(1) } else { i };
        self.first_at_least(lo)..self.first_at_least(i + 1)
    }

    /// The first output pixel whose first input pixel is at least `i` (`out` if none).
    fn first_at_least(&self, i: usize) -> usize {
        let (mut lo, mut hi) = (0, self.out);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.first(mid) < i {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// One axis worked out for every plane of a launch: each output index's
/// taps (forward) and each input index's readers (backward), with the
/// weights the kernel computes per pixel, so the per-plane loops below
/// only multiply and add.
pub(crate) struct Tables {
    /// Per output index: (i0, i1, w0, w1) ([`Axis::linear`]; nearest: its
    /// pixel twice, weights 1 and 0, unused).
    taps: Vec<(usize, usize, f32, f32)>,
    /// Per input index: the first output index that reads it and each
    /// reader's weight, in output order ([`Axis::reaching`], [`Axis::weight`]).
    readers: Vec<(usize, Vec<f32>)>,
    size: usize,
    out: usize,
}

impl Axis {
    /// The axis's [`Tables`].
    pub(crate) fn tables(&self) -> Tables {
        let taps = (0..self.out)
            .map(|d| if self.bilinear { self.linear(d) } else { (self.nearest(d), self.nearest(d), 1.0, 0.0) })
            .collect();
        let readers = (0..self.size)
            .map(|i| {
                let r = self.reaching(i);
                (r.start, r.map(|d| self.weight(d, i)).collect())
            })
            .collect();
        Tables { taps, readers, size: self.size, out: self.out }
    }
}

/// Interpolation of one `rows.size × cols.size` plane to `rows.out ×
/// cols.out` (bilinear: `a0 (b0 x00 + b1 x01) + a1 (b0 x10 + b1 x11)`, the
/// kernel's expression).
pub(crate) fn forward_plane(bilinear: bool, rows: &Tables, cols: &Tables, x: &[f32], y: &mut [f32]) {
    let w = cols.size;
    for (yo, &(y0, y1, a0, a1)) in y.chunks_exact_mut(cols.out).zip(&rows.taps) {
        for (o, &(x0, x1, b0, b1)) in yo.iter_mut().zip(&cols.taps) {
            *o = if bilinear {
                a0 * (b0 * x[y0 * w + x0] + b1 * x[y0 * w + x1]) + a1 * (b0 * x[y1 * w + x0] + b1 * x[y1 * w + x1])
            } else {
                x[y0 * w + x0]
            };
        }
    }
}

/// The input gradient of one plane: each input pixel gathers the output
/// gradients of the pixels that read it, each times (row weight · column
/// weight), in row-major output order, as the kernel does.
pub(crate) fn backward_plane(rows: &Tables, cols: &Tables, g: &[f32], dx: &mut [f32]) {
    for (dxr, (ry, wy)) in dx.chunks_exact_mut(cols.size).zip(&rows.readers) {
        for (d, (rx, wx)) in dxr.iter_mut().zip(&cols.readers) {
            let mut acc = 0.0;
            for (dy, &a) in wy.iter().enumerate() {
                let gr = &g[(ry + dy) * cols.out + rx..][..wx.len()];
                for (&gv, &b) in gr.iter().zip(wx) {
                    acc += gv * (a * b);
                }
            }
            *d = acc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `reaching` must list every output pixel with a nonzero weight on
    /// each input pixel, and only pixels that read it or its neighbour.
    #[test]
    fn reaching_ranges_cover_every_reader() {
        let modes = [
            Interpolation::Nearest,
            Interpolation::Bilinear { align_corners: false },
            Interpolation::Bilinear { align_corners: true },
        ];
        for mode in modes {
            for (size, out, factor) in [
                (3, 7, None),
                (7, 3, None),
                (5, 10, None),
                (1, 4, None),
                (4, 1, None),
                (6, 6, None),
                (3, 5, Some(1.7)),
                (3, 3, Some(1.2)),
                (10, 20, Some(2.05)),
            ] {
                let a = Axis::new(size, out, factor, mode);
                for i in 0..size {
                    let want: Vec<usize> = (0..out).filter(|&d| a.weight(d, i) != 0.0).collect();
                    let got: Vec<usize> = a.reaching(i).filter(|&d| a.weight(d, i) != 0.0).collect();
                    assert_eq!(got, want, "{mode:?} {size} -> {out} ({factor:?}), input {i}");
                }
                // The weights an output pixel spreads sum to 1.
                for d in 0..out {
                    let s: f32 = (0..size).map(|i| a.weight(d, i)).sum();
                    assert!((s - 1.0).abs() < 1e-6, "{mode:?} {size} -> {out}: pixel {d} sums to {s}");
                }
            }
        }
    }

    #[test]
    fn sources_follow_pytorch() {
        // F.interpolate(torch.arange(4.).view(1, 1, 1, 4), size=(1, 7)) reads 0 0 1 1 2 2 3.
        let a = Axis::new(4, 7, None, Interpolation::Nearest);
        assert_eq!((0..7).map(|d| a.nearest(d)).collect::<Vec<_>>(), [0, 0, 1, 1, 2, 2, 3]);
        // A factor that keeps the size copies, one that doubles it halves
        // (nearest_idx), though 1 / 1.2 and 1 / 2.05 would read elsewhere.
        let a = Axis::new(3, 3, Some(1.2), Interpolation::Nearest);
        assert_eq!((0..3).map(|d| a.nearest(d)).collect::<Vec<_>>(), [0, 1, 2]);
        let a = Axis::new(10, 20, Some(2.05), Interpolation::Nearest);
        assert_eq!(a.nearest(19), 9);
        // bilinear 2 -> 4, align_corners=False: sources -0.25 (0), 0.25, 0.75, 1.25 (clamped pair).
        let a = Axis::new(2, 4, None, Interpolation::Bilinear { align_corners: false });
        assert_eq!(a.linear(0), (0, 1, 1.0, 0.0));
        assert_eq!(a.linear(1), (0, 1, 0.75, 0.25));
        assert_eq!(a.linear(3), (1, 1, 0.75, 0.25));
        // align_corners=True: 0, 1/3, 2/3, 1.
        let a = Axis::new(2, 4, None, Interpolation::Bilinear { align_corners: true });
        assert_eq!(a.linear(3), (1, 1, 1.0, 0.0));
    }
}

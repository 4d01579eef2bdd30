//! Rearranging ops built from other ops: chunk, split, repeat, flip, roll,
//! pixel_shuffle and pixel_unshuffle. They need no kernels of their own:
//! each is a composition of narrow, cat, reshape, permute, expand and
//! index_select, so its gradient is theirs and a trace records those
//! primitives (which ONNX export already knows).

use crate::Tensor;

impl Tensor {
    /// Splits `dim` into `chunks` pieces of `ceil(size / chunks)` elements,
    /// the last one smaller (`torch.chunk`). Like PyTorch it returns fewer
    /// pieces when the size does not allow `chunks` (6 in 4 chunks gives
    /// 3 pieces of 2), and `chunks` empty pieces for a dim of size 0. The
    /// pieces are views.
    ///
    /// # Panics
    /// When `chunks` is 0, `self` is 0-d, or `dim` is out of range.
    pub fn chunk(&self, chunks: usize, dim: isize) -> Vec<Tensor> {
        let d = self.split_dim("chunk", dim);
        assert!(chunks > 0, "chunk: chunks must be positive, got 0 (shape {:?})", self.shape());
        let n = self.shape()[d];
        if n == 0 {
            return (0..chunks).map(|_| self.narrow(d as isize, 0, 0)).collect();
        }
        self.split(n.div_ceil(chunks), dim)
    }

    /// Splits `dim` into pieces of `size` elements, the last one smaller
    /// (`torch.split` with an int). A dim of size 0 gives one empty piece.
    /// The pieces are views.
    ///
    /// # Panics
    /// When `size` is 0 (PyTorch allows 0 for a dim of size 0), `self` is
    /// 0-d, or `dim` is out of range.
    pub fn split(&self, size: usize, dim: isize) -> Vec<Tensor> {
        let d = self.split_dim("split", dim);
        let shape = self.shape();
        assert!(size > 0, "split: split size must be positive, got 0 (dim {d} of shape {shape:?})");
        let n = shape[d];
        if n == 0 {
            return vec![self.narrow(d as isize, 0, 0)];
        }
        (0..n).step_by(size).map(|start| self.narrow(d as isize, start, size.min(n - start))).collect()
    }

    /// Splits `dim` into pieces of the given `sizes` (`torch.split` with a
    /// list, `split_with_sizes`); sizes of 0 give empty pieces. The pieces
    /// are views.
    ///
    /// # Panics
    /// When `sizes` do not sum to the size of `dim`, `self` is 0-d, or `dim`
    /// is out of range.
    pub fn split_sizes(&self, sizes: &[usize], dim: isize) -> Vec<Tensor> {
        let d = self.split_dim("split_sizes", dim);
        let shape = self.shape();
        let total: usize = sizes.iter().sum();
        assert!(
            total == shape[d],
            "split_sizes: sizes {sizes:?} sum to {total}, but dim {d} of shape {shape:?} has size {}",
            shape[d]
        );
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                let piece = self.narrow(d as isize, start, len);
                start += len;
                piece
            })
            .collect()
    }

    /// Tiles `self` `repeats[i]` times along dim `i` (`torch.Tensor.repeat`).
    /// More repeats than dims prepend size-1 dims first (a `[2, 3]` tensor
    /// repeated `[4, 1, 2]` has shape `[4, 2, 6]`). A copy: the data is
    /// expanded and made dense, and the gradient sums the tiles.
    ///
    /// # Panics
    /// When `repeats` is shorter than the tensor's rank.
    pub fn repeat(&self, repeats: &[usize]) -> Tensor {
        let shape = self.shape();
        assert!(
            repeats.len() >= shape.len(),
            "repeat: {} repeats {repeats:?} for shape {shape:?}; need at least one per dim ({})",
            repeats.len(),
            shape.len()
        );
        let mut padded = vec![1; repeats.len() - shape.len()];
        padded.extend_from_slice(&shape);
        // Each repeated dim `s` becomes `[1, s]`, expanded to `[r, s]` and
        // merged into `r * s`: row-major, so tile-major as PyTorch's.
        let (mut split, mut expanded, mut out) = (Vec::new(), Vec::new(), Vec::new());
        for (&r, &s) in repeats.iter().zip(&padded) {
            if r != 1 {
                split.push(1);
                expanded.push(r);
            }
            split.push(s);
            expanded.push(s);
            out.push(r * s);
        }
        if split.len() == padded.len() {
            return self.reshape(&padded);
        }
        self.reshape(&split).expand(&expanded).reshape(&out)
    }

    /// Reverses the order of elements along each of `dims` (`torch.flip`).
    /// A copy, made by an `index_select` with a reversed index per flipped
    /// dim (dims of size 0 or 1 are left as they are), so its gradient is
    /// the same flip, added deterministically.
    ///
    /// # Panics
    /// When a dim is out of range or given twice.
    pub fn flip(&self, dims: &[isize]) -> Tensor {
        let shape = self.shape();
        let mut seen = vec![false; shape.len().max(1)];
        let mut y: Option<Tensor> = None;
        for &dim in dims {
            // A 0-d tensor has dims 0 and -1, as in PyTorch.
            let d = if shape.is_empty() && dim == -1 { 0 } else { self.dim_index("flip", dim) };
            assert!(!seen[d], "flip: dim {d} appears more than once in dims {dims:?} (shape {shape:?})");
            seen[d] = true;
            let n = shape.get(d).copied().unwrap_or(1);
            if n > 1 {
                let reversed: Vec<u32> = (0..n as u32).rev().collect();
                let index = Tensor::from_u32(&reversed, &[n], &self.device());
                y = Some(y.as_ref().unwrap_or(self).index_select(d as isize, &index));
            }
        }
        // A new tensor even when nothing moved, as PyTorch's copy is.
        y.unwrap_or_else(|| self.reshape(&shape))
    }

    /// Rotates elements along each of `dims` by the matching entry of
    /// `shifts` (`torch.roll` with `dims` given): element `i` moves to
    /// `(i + shift) mod size`, so negative shifts roll backwards and shifts
    /// of more than the size wrap. A dim may appear twice (its shifts add).
    /// A copy, made by concatenating the two narrowed halves of each rolled
    /// dim. PyTorch's `roll` without dims (over the flattened tensor) is
    /// `x.flatten(0, -1).roll(&[s], &[0]).reshape(&x.shape())`.
    ///
    /// # Panics
    /// When `shifts` and `dims` differ in length or are empty, `self` is
    /// 0-d, or a dim is out of range.
    pub fn roll(&self, shifts: &[isize], dims: &[isize]) -> Tensor {
        let shape = self.shape();
        assert!(
            shifts.len() == dims.len() && !dims.is_empty(),
            "roll: {} shifts {shifts:?} for {} dims {dims:?} (shape {shape:?}); give one shift per dim, at least one",
            shifts.len(),
            dims.len()
        );
        let mut y: Option<Tensor> = None;
        for (&shift, &dim) in shifts.iter().zip(dims) {
            let d = self.split_dim("roll", dim);
            let n = shape[d];
            if n == 0 {
                continue;
            }
            let k = shift.rem_euclid(n as isize) as usize;
            if k == 0 {
                continue;
            }
            let x = y.as_ref().unwrap_or(self);
            let (tail, head) = (x.narrow(d as isize, n - k, k), x.narrow(d as isize, 0, n - k));
            y = Some(Tensor::cat(&[&tail, &head], d as isize));
        }
        // A new tensor even when nothing moved, as PyTorch's copy is.
        y.unwrap_or_else(|| self.reshape(&shape))
    }

    /// Moves blocks of `r × r` channels into space (`F.pixel_shuffle`,
    /// `nn.PixelShuffle`): `[*, C·r², H, W]` becomes `[*, C, H·r, W·r]`,
    /// output element `(c, h·r + i, w·r + j)` being input channel
    /// `c·r² + i·r + j` at `(h, w)`. Any number of leading batch dims,
    /// none included. A copy (a reshape, a permute and a reshape), so its
    /// gradient is `pixel_unshuffle` of the output gradient.
    ///
    /// # Panics
    /// When `r` is 0, `self` has fewer than 3 dims, or its channels (dim
    /// -3) are not divisible by `r²`.
    pub fn pixel_shuffle(&self, r: usize) -> Tensor {
        let (lead, [c, h, w]) = self.image_dims("pixel_shuffle", "upscale_factor", r);
        assert!(
            c.is_multiple_of(r * r),
            "pixel_shuffle: channels {c} (dim -3 of shape {:?}) are not divisible by upscale_factor² = {}",
            self.shape(),
            r * r
        );
        let n = lead.len();
        let split = [lead.as_slice(), &[c / (r * r), r, r, h, w]].concat();
        // [*, C, r, r, H, W] -> [*, C, H, r, W, r]
        let dims: Vec<usize> = (0..n).chain([n, n + 3, n + 1, n + 4, n + 2]).collect();
        let out = [lead.as_slice(), &[c / (r * r), h * r, w * r]].concat();
        self.reshape(&split).permute(&dims).reshape(&out)
    }

    /// Moves `r × r` blocks of space into channels (`F.pixel_unshuffle`,
    /// `nn.PixelUnshuffle`), the inverse of
    /// [`pixel_shuffle`](Self::pixel_shuffle): `[*, C, H·r, W·r]` becomes
    /// `[*, C·r², H, W]`. Any number of leading batch dims, none included;
    /// a copy.
    ///
    /// # Panics
    /// When `r` is 0, `self` has fewer than 3 dims, or its height or width
    /// is not divisible by `r`.
    pub fn pixel_unshuffle(&self, r: usize) -> Tensor {
        let (lead, [c, h, w]) = self.image_dims("pixel_unshuffle", "downscale_factor", r);
        for (name, size, dim) in [("height", h, -2), ("width", w, -1)] {
            assert!(
                size.is_multiple_of(r),
                "pixel_unshuffle: {name} {size} (dim {dim} of shape {:?}) is not divisible by downscale_factor {r}",
                self.shape()
            );
        }
        let n = lead.len();
        let split = [lead.as_slice(), &[c, h / r, r, w / r, r]].concat();
        // [*, C, H, r, W, r] -> [*, C, r, r, H, W]
        let dims: Vec<usize> = (0..n).chain([n, n + 2, n + 4, n + 1, n + 3]).collect();
        let out = [lead.as_slice(), &[c * r * r, h / r, w / r]].concat();
        self.reshape(&split).permute(&dims).reshape(&out)
    }

    /// The leading (batch) dims and `[C, H, W]` of an image op's input, after
    /// checking that `factor` (named `what`) is positive and there are 3 dims.
    fn image_dims(&self, op: &str, what: &str, factor: usize) -> (Vec<usize>, [usize; 3]) {
        let shape = self.shape();
        assert!(factor > 0, "{op}: {what} must be positive, got 0 (shape {shape:?})");
        let n = shape.len();
        assert!(n >= 3, "{op}: expects at least 3 dims [*, C, H, W], got shape {shape:?}");
        (shape[..n - 3].to_vec(), [shape[n - 3], shape[n - 2], shape[n - 1]])
    }

    /// `dim` normalised for an op that needs a dim to cut (not a 0-d tensor).
    fn split_dim(&self, op: &str, dim: isize) -> usize {
        assert!(self.dims() > 0, "{op}: expects at least a 1-D tensor, got shape {:?}", self.shape());
        self.dim_index(op, dim)
    }
}

//! Padding (`torch.nn.functional.pad`) built from other ops: constant,
//! reflect, replicate and circular. Like the rearranging ops it needs no
//! kernel of its own: each padded dim is a `cat` of the input with edge
//! pieces made by `narrow`, `flip` (reflect), `expand` (replicate) or a
//! filled constant, so its gradient is theirs and a trace records those
//! primitives (which ONNX export already knows).

use crate::{DType, Tensor};

/// What [`Tensor::pad`] fills the new elements with (`F.pad`'s `mode`, and
/// `value` for constant padding).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// `mode="constant"` with `value`: every new element is `value` (cast
    /// to the tensor's dtype; `Constant(0.0)` is PyTorch's default).
    Constant(f32),
    /// `mode="reflect"`: mirrored about the edge element, which is not
    /// repeated (`[a, b, c]` padded by 2 on the left is `[c, b, a, b, c]`).
    /// Each pad must be smaller than its dim.
    Reflect,
    /// `mode="replicate"`: the edge element repeated. A dim that is padded
    /// must not be empty.
    Replicate,
    /// `mode="circular"`: wraps around (`[a, b, c]` padded by 2 on the left
    /// is `[b, c, a, b, c]`). Each pad must be at most its dim's size.
    Circular,
}

impl Tensor {
    /// Pads the last dims (`torch.nn.functional.pad`): `pad` holds
    /// (before, after) pairs starting from the LAST dim, PyTorch's
    /// convention, so `[l, r]` pads the last dim, `[l, r, t, b]` the last
    /// two (left, right, top, bottom of an image), `[l, r, t, b, f, k]` the
    /// last three. `mode` fills the new elements (see [`PadMode`]); corners
    /// of several padded dims come out as in PyTorch (reflections of
    /// reflections, the corner element replicated, wrapped twice).
    ///
    /// A copy: the gradient of an input element sums the output gradient
    /// over every place the element went (its own and, for reflect,
    /// replicate and circular, the padding it was copied to), as PyTorch's.
    /// F32, F16 and U32 tensors keep their dtype (the constant is converted
    /// to it).
    ///
    /// Differences from PyTorch: pads are non-negative (PyTorch crops with
    /// a negative pad; crop with [`narrow`](Self::narrow)). Reflect,
    /// replicate and circular take any rank with at least as many dims as
    /// are padded, where PyTorch takes 1 to 3 padded dims on inputs with
    /// one or two more dims (batch and channels).
    ///
    /// # Panics
    /// When `pad` has an odd length or more than two entries per dim of
    /// `self`; for [`PadMode::Reflect`] when a pad is not smaller than its
    /// dim, for [`PadMode::Circular`] when a pad is larger than its dim,
    /// for [`PadMode::Replicate`] when an empty dim is padded (a dim whose
    /// pads are both 0 is not checked).
    pub fn pad(&self, pad: &[usize], mode: PadMode) -> Tensor {
        let shape = self.shape();
        let rank = shape.len();
        assert!(
            pad.len().is_multiple_of(2),
            "pad: padding length must be divisible by 2, got {pad:?} (shape {shape:?})"
        );
        assert!(
            pad.len() / 2 <= rank,
            "pad: {} pads {pad:?} for shape {shape:?}; at most two per dim ({})",
            pad.len(),
            2 * rank
        );
        let mut y: Option<Tensor> = None;
        for (i, pair) in pad.chunks(2).enumerate() {
            let d = rank - 1 - i;
            let (before, after, n) = (pair[0], pair[1], shape[d]);
            if before + after == 0 {
                continue;
            }
            match mode {
                PadMode::Reflect => assert!(
                    before < n && after < n,
                    "pad: reflect padding ({before}, {after}) of dim {d} of shape {shape:?} must be smaller than \
                     the dim ({n})"
                ),
                PadMode::Circular => assert!(
                    before <= n && after <= n,
                    "pad: circular padding ({before}, {after}) of dim {d} of shape {shape:?} wraps around more \
                     than once (at most {n})"
                ),
                PadMode::Replicate => assert!(
                    n > 0,
                    "pad: replicate padding ({before}, {after}) of dim {d} of shape {shape:?}, which is empty"
                ),
                PadMode::Constant(_) => {}
            }
            let x = y.as_ref().unwrap_or(self);
            y = Some(x.pad_dim(d, before, after, mode));
        }
        // A new tensor even when nothing was padded, as PyTorch's copy is.
        y.unwrap_or_else(|| self.reshape(&shape))
    }

    /// `self` with `before` and `after` new elements along dim `d`.
    fn pad_dim(&self, d: usize, before: usize, after: usize, mode: PadMode) -> Tensor {
        let n = self.shape()[d];
        let di = d as isize;
        let edge = |len: usize, at_start: bool| -> Tensor {
            match mode {
                PadMode::Constant(value) => {
                    let mut s = self.shape().to_vec();
                    s[d] = len;
                    let c = Tensor::full(&s, value, &self.device());
                    if self.dtype() == DType::F32 {
                        c
                    } else {
                        c.to_dtype(self.dtype())
                    }
                }
                PadMode::Reflect => {
                    let start = if at_start { 1 } else { n - 1 - len };
                    self.narrow(di, start, len).flip(&[di])
                }
                PadMode::Replicate => {
                    let piece = self.narrow(di, if at_start { 0 } else { n - 1 }, 1);
                    let mut s = piece.shape().to_vec();
                    s[d] = len;
                    piece.expand(&s)
                }
                PadMode::Circular => self.narrow(di, if at_start { n - len } else { 0 }, len),
            }
        };
        let mut parts = Vec::with_capacity(3);
        if before > 0 {
            parts.push(edge(before, true));
        }
        parts.push(self.clone());
        if after > 0 {
            parts.push(edge(after, false));
        }
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), di)
    }
}

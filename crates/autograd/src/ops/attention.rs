//! Scaled-dot-product attention as one fused op (gpu-core's
//! `attention_forward` / `attention_backward`), like
//! `torch.nn.functional.scaled_dot_product_attention` without dropout.
//!
//! The `Lq × Lk` attention matrix never exists: the forward keeps a running
//! softmax per query row and saves only the output and each row's
//! log-sum-exp; the backward recomputes the probabilities from those.
//!
//! On a CPU adapter (lavapipe) unmasked F32 attention is instead built from
//! matmul and softmax ([`AttentionPath::Composite`]): llvmpipe runs the
//! subgroup matmul faster than the fused kernels, whose lane-divergent loads
//! it turns into loops over the SIMD lanes. `..._with` picks the path
//! explicitly.
//!
//! F16 q, k and v (or F32 ones under autocast, which casts them) are read as
//! f16 by the kernels, with f32 arithmetic, and give an F16 output and F16
//! gradients, rounded once, as PyTorch's f16 attention does.

use wgrad_gpu_core::ops::attention::{self, AttentionPath, AttnDims, MAX_HEAD_DIM};
use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::{Buffer, Layout};

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

const OP: &str = "scaled_dot_product_attention";

/// Largest score matrix (`B·H·Lq·Lk` elements, 64 MiB of f32) the composite
/// form builds; larger attention runs fused whatever the device prefers.
const COMPOSITE_MAX_SCORES: usize = 1 << 24;

/// The fewest scores per head (Lq · Lk) for which `Auto` runs f16 attention
/// in the composite form on matrix units. Measured on an NVIDIA H200
/// (docs/performance.md, "Matrix units"): at 256 x 256 (the GPT bench,
/// 12 heads of 64) the composite form's products on tensor cores made the
/// step 57.8-66.6 ms instead of 75.6-84.8 fused; at 128 x 128 (the
/// Transformer bench, 4 heads) the fused kernel's step was twice as fast
/// (8.2-8.9 against 17.9-18.1 ms).
const F16_COMPOSITE_MIN_SCORES: usize = 256 * 256;

impl Tensor {
    /// `softmax(q kᵀ · scale + mask) v` with `self` as the queries `q
    /// [..., Lq, D]`, keys `k [..., Lk, D]` and values `v [..., Lk, Dv]`; the
    /// leading dims (none, `[N]` or `[B, H]`) must be equal. Returns
    /// `[..., Lq, Dv]`, with gradients for `q`, `k` and `v`.
    ///
    /// * `mask`: an additive f32 mask broadcastable (NumPy rules) to
    ///   `[..., Lq, Lk]`, e.g. `[Lq, Lk]`, or `[B, 1, 1, Lk]` for key
    ///   padding; −∞ (or a large negative value) hides a key. It is read
    ///   through its strides, never expanded, and is a constant: it gets no
    ///   gradient. For a boolean keep-mask, pass `where(keep, 0, −∞)`.
    /// * `causal`: query `i` sees only keys `j ≤ i` (PyTorch's `is_causal`,
    ///   top-left aligned when `Lq ≠ Lk`); combines with `mask`.
    /// * `scale`: `None` is PyTorch's default `1 / sqrt(D)`.
    ///
    /// Memory is O(L·D): the attention matrix is never stored. Unlike
    /// PyTorch, which returns NaN there, a query row that sees no key at all
    /// (every score −∞) outputs zeros and passes zero gradients. Head dims
    /// are limited to 256.
    ///
    /// F16 `q`, `k` and `v` (or F32 ones under [`autocast`](crate::autocast()),
    /// which casts them) give an F16 result: f16 loads, f32 arithmetic, one
    /// rounding, and F16 gradients. Odd head dims take f16 inputs through
    /// a widening cast and return F32 (the kernels store whole f16 pairs).
    ///
    /// # Panics
    /// For ranks other than 2 to 4, leading dims or head dims that differ,
    /// k and v of different lengths, tensors that are not F32 or F16 or mix
    /// the two, tensors on different devices, a mask that does not
    /// broadcast, or head dims above 256.
    pub fn scaled_dot_product_attention(
        &self,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
        scale: Option<f32>,
    ) -> Tensor {
        self.scaled_dot_product_attention_with(k, v, mask, causal, scale, AttentionPath::Auto)
    }

    /// [`scaled_dot_product_attention`](Self::scaled_dot_product_attention)
    /// computed the way `path` says: [`AttentionPath::Auto`] follows the
    /// device ([`Device::attention_path`](crate::Device::attention_path):
    /// the composite form on CPU adapters, the fused kernels elsewhere),
    /// `Fused` always runs the fused kernels, `Composite` builds
    /// `softmax(q kᵀ · scale) v` from matmul and softmax (on f16 operands:
    /// f32 scores and softmax, the probabilities rounded to f16 for the
    /// second product; `Auto` picks it for f16 operands where they run on
    /// matrix units and each head has at least 256 x 256 scores). Only unmasked attention whose score matrix has at
    /// most 2^24 elements takes the composite form; anything else runs
    /// fused. Both give the same values within rounding (tested).
    pub fn scaled_dot_product_attention_with(
        &self,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
        scale: Option<f32>,
        path: AttentionPath,
    ) -> Tensor {
        let scope = crate::trace::scope();
        // The op itself, as a closure: its early returns (other dtypes,
        // autocast) come back here, to the trace record below.
        let y = (|| -> Tensor {
            let (qs, ks, vs) = (self.shape(), k.shape(), v.shape());
            let even = |s: &[usize]| s.last().is_some_and(|n| n % 2 == 0);
            if even(&qs) && even(&vs) {
                if let Some([q, k, v]) = crate::autocast::f16_operands("attention", [self, k, v]) {
                    return q.scaled_dot_product_attention_with(&k, &v, mask, causal, scale, path);
                }
            }
            let dtypes = [self.dtype(), k.dtype(), v.dtype()];
            let io = match dtypes {
                [DType::F16, DType::F16, DType::F16] if even(&qs) && even(&vs) => Operands::F16,
                [DType::F16, DType::F16, DType::F16] => {
                    let [q, k, v] = [self, k, v].map(|t| t.f32_input(OP));
                    return q.scaled_dot_product_attention_with(&k, &v, mask, causal, scale, path);
                }
                [DType::F32, DType::F32, DType::F32] => Operands::F32,
                _ => panic!("{OP}: q, k and v must all be F32 or all F16, got {dtypes:?}"),
            };
            for t in [self, k, v] {
                self.expect_same_device(OP, t);
            }
            let rank = qs.len();
            assert!(
                (2..=4).contains(&rank) && ks.len() == rank && vs.len() == rank,
                "{OP}: q, k and v must all be [Lq, D] / [N, L, D] / [B, H, L, D], got shapes {qs:?}, {ks:?}, {vs:?}"
            );
            let lead = &qs[..rank - 2];
            let (lq, d, lk, dv) = (qs[rank - 2], qs[rank - 1], ks[rank - 2], vs[rank - 1]);
            assert!(
                &ks[..rank - 2] == lead && &vs[..rank - 2] == lead && ks[rank - 1] == d && vs[rank - 2] == lk,
                "{OP}: expected q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv] with equal leading dims, \
             got shapes {qs:?}, {ks:?}, {vs:?}"
            );
            let (batch, heads) = match *lead {
                [] => (1, 1),
                [n] => (1, n),
                [b, h] => (b, h),
                _ => unreachable!("rank checked above"),
            };
            let dims = AttnDims { batch, heads, lq, lk, d, dv };
            let scale = scale.unwrap_or(1.0 / (d as f32).sqrt());
            // Masked rows could lose every key, where the fused kernel's zeros
            // and the composite's NaN differ; only unmasked attention switches.
            // Head dims the kernels refuse panic on every device alike.
            let scores = batch * heads * lq * lk;
            let dims_ok = [d, dv].iter().all(|n| (1..=MAX_HEAD_DIM).contains(n));
            if mask.is_none()
                && dims_ok
                && scores > 0
                && scores <= COMPOSITE_MAX_SCORES
                && match path {
                    AttentionPath::Auto => {
                        self.device().attention_path_for(io == Operands::F16) == AttentionPath::Composite
                            && (io == Operands::F32 || lq * lk >= F16_COMPOSITE_MIN_SCORES)
                    }
                    p => p == AttentionPath::Composite,
                }
            {
                return composite(self, k, v, causal, scale);
            }
            let mask = mask.map(|m| {
                self.expect_same_device(OP, m);
                mask_strides(m, lead, lq, lk)
            });
            let (q_buf, k_buf, v_buf) = (self.dense_buffer(), k.dense_buffer(), v.dense_buffer());
            let (out, lse) = expect(
                OP,
                attention::attention_forward_io(&q_buf, &k_buf, &v_buf, view(&mask), dims, causal, scale, io),
            );
            let mut out_shape = lead.to_vec();
            out_shape.extend([lq, dv]);
            let shapes = [qs, ks, vs];
            // The backward reuses the dense operands (copies only for views,
            // such as the head-split q, k, v of multi-head attention).
            let dtype = dtypes[0];
            Tensor::from_op_dtype(OP, out, Layout::contiguous(&out_shape), dtype, &[self, k, v], move |g, _, out| {
                let grads = attention::attention_backward_io(
                    &q_buf,
                    &k_buf,
                    &v_buf,
                    &out.dense_buffer(),
                    &lse,
                    &g.dense_buffer(),
                    view(&mask),
                    dims,
                    causal,
                    scale,
                    io,
                );
                let (dq, dk, dv) = expect(OP, grads);
                [dq, dk, dv]
                    .into_iter()
                    .zip(&shapes)
                    .map(|(b, s)| Some(Tensor::from_parts(b, Layout::contiguous(s), dtype)))
                    .collect()
            })
        })();
        // The scale the op resolves (the query's head dim is its last).
        let d = || self.shape().last().copied().unwrap_or(0);
        let op = || TraceOp::Attention { causal, scale: scale.unwrap_or_else(|| 1.0 / (d() as f32).sqrt()) };
        scope.output_opt(op, &[Some(self), Some(k), Some(v), mask], y)
    }
}

impl Tensor {
    /// An additive `[lq, lk]` mask with −∞ above the diagonal: query i sees
    /// keys j ≤ i (PyTorch's `is_causal`, top-left aligned;
    /// `nn.Transformer.generate_square_subsequent_mask` for lq = lk).
    pub fn causal_mask(lq: usize, lk: usize, device: &crate::Device) -> Tensor {
        let scope = crate::trace::scope();
        let v: Vec<f32> = (0..lq * lk).map(|i| if i % lk > i / lk { f32::NEG_INFINITY } else { 0.0 }).collect();
        scope.output(|| TraceOp::Constant { fill: None }, &[], Tensor::from_vec(&v, &[lq, lk], device))
    }
}

/// `softmax(q kᵀ · scale) v` from matmul and softmax, the device's
/// [`AttentionPath::Composite`]; autograd differentiates it op by op.
/// `causal` adds a `[Lq, Lk]` bias of −∞ above the diagonal, uploaded
/// with the op (no launch); `Lk ≥ 1`, so every query row keeps key 0.
fn composite(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool, scale: f32) -> Tensor {
    // The dtype in is the dtype out, as the fused kernels: autocast is off
    // here, so F32 operands (autocast leaves odd head dims in F32) stay
    // F32. F16 operands (on matrix units) store their scores as f32 sums,
    // take the softmax in f32 and round the probabilities to f16 once for
    // the product with v, which returns F16.
    let _f32 = crate::AutocastGuard::new(false);
    let kt = k.transpose(-1, -2);
    let f16 = q.dtype() == DType::F16;
    let scores = if f16 { q.matmul_scaled_f32(&kt, scale) } else { q.matmul_scaled(&kt, scale) };
    let scores = if causal { &scores + &Tensor::causal_mask(q.size(-2), k.size(-2), &q.device()) } else { scores };
    let p = scores.softmax(-1);
    if f16 {
        p.to_dtype(DType::F16).matmul(v)
    } else {
        p.matmul(v)
    }
}

/// The borrowed form gpu-core takes.
fn view(mask: &Option<(Buffer, [usize; 4])>) -> Option<attention::AttnMask<'_>> {
    mask.as_ref().map(|(b, s)| (b, *s))
}

/// The mask's buffer and its strides over `(batch, head, query, key)` once
/// broadcast to `[..lead, Lq, Lk]` (stride 0 where it broadcasts). The kernel
/// indexes from the buffer's start, so a view at an offset is made dense
/// first (at the mask's own, unbroadcast size unless it was expanded).
fn mask_strides(mask: &Tensor, lead: &[usize], lq: usize, lk: usize) -> (Buffer, [usize; 4]) {
    mask.expect_dtype(OP, DType::F32);
    let (buf, layout) = mask.buffer_and_layout();
    let (buf, layout) =
        if layout.offset == 0 { (buf, layout) } else { (mask.dense_buffer(), Layout::contiguous(&layout.shape)) };
    let mut full = lead.to_vec();
    full.extend([lq, lk]);
    let view = layout
        .broadcast_to(&full)
        .unwrap_or_else(|_| panic!("{OP}: mask of shape {:?} does not broadcast to {full:?}", layout.shape));
    let mut strides = [0; 4];
    strides[4 - full.len()..].copy_from_slice(&view.strides);
    (buf, strides)
}

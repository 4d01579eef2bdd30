//! Multi-head attention (`nn.MultiheadAttention`) and the masks it takes.
//!
//! Masks are *additive* f32 tensors: 0 where attention is allowed and −∞
//! where it is not, PyTorch's float-mask convention. (PyTorch's boolean
//! masks mark forbidden places with `True`; [`padding_mask`] and
//! [`causal_mask`] build the additive equivalents.) The attention itself is
//! the fused [`Tensor::scaled_dot_product_attention`] kernel; only attention
//! dropout in training takes the composite path (scores, softmax, dropout,
//! weighted sum) because the kernel has no dropout.

use std::sync::Mutex;

use wgrad_autograd::{Device, Generator, Tensor};

use crate::construction::{setters, Init};
use crate::layers::linear::Linear;
use crate::Module;

/// An additive `[lq, lk]` mask with −∞ above the diagonal: query i sees keys
/// j ≤ i (`nn.Transformer.generate_square_subsequent_mask` for lq = lk).
pub fn causal_mask(lq: usize, lk: usize, device: &Device) -> Tensor {
    Tensor::causal_mask(lq, lk, device)
}

/// An additive key-padding mask `[batch, max_len]` for sequences of the given
/// lengths: −∞ at positions `≥ lengths[b]`.
///
/// # Panics
/// When a length exceeds `max_len`.
pub fn padding_mask(lengths: &[usize], max_len: usize, device: &Device) -> Tensor {
    assert!(lengths.iter().all(|&l| l <= max_len), "padding_mask: a length in {lengths:?} exceeds {max_len}");
    let v: Vec<f32> =
        lengths.iter().flat_map(|&l| (0..max_len).map(move |j| if j >= l { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(&v, &[lengths.len(), max_len], device)
}

/// What a query may not attend to; every field is optional.
#[derive(Clone, Copy, Default)]
pub struct AttentionMask<'a> {
    /// Additive `[Lq, Lk]` (shared by the batch) or `[B·heads, Lq, Lk]`.
    pub attn_mask: Option<&'a Tensor>,
    /// Additive `[B, Lk]`: masks padded keys of each sequence.
    pub key_padding_mask: Option<&'a Tensor>,
    /// Query i sees keys j ≤ i (no mask tensor needed).
    pub is_causal: bool,
}

impl<'a> AttentionMask<'a> {
    /// Only the causal constraint.
    pub fn causal() -> Self {
        AttentionMask { is_causal: true, ..Default::default() }
    }
}

/// The projected keys and values `[B, L, E]` of the positions a
/// [`MultiheadAttention`] has seen so far in cached decoding (one per layer).
#[derive(Clone, Default)]
pub struct KvCache {
    kv: Option<(Tensor, Tensor)>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.shape()[1])
    }

    /// True before the first position.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every position (a new sequence, or a window that slid).
    pub fn clear(&mut self) {
        self.kv = None;
    }

    /// Appends `[B, T, E]` keys and values; returns all cached ones.
    fn append(&mut self, k: &Tensor, v: &Tensor) -> (Tensor, Tensor) {
        // One copy of the cache per step: far less than recomputing the
        // prefix's projections, attention and feed-forward in every layer.
        let kv = match self.kv.take() {
            None => (k.contiguous(), v.contiguous()),
            Some((pk, pv)) => {
                assert_eq!(pk.shape()[0], k.shape()[0], "KvCache: batch size changed mid-sequence");
                (Tensor::cat(&[&pk, k], 1), Tensor::cat(&[&pv, v], 1))
            }
        };
        self.kv = Some(kv.clone());
        kv
    }
}

/// `nn.MultiheadAttention`: query, key and value projections, `heads`
/// parallel scaled dot-product attentions of width E/heads, then `out_proj`.
///
/// With equal query, key and value widths the projections are packed in one
/// `in_proj_weight [3E, E]` (one matmul makes q, k and v in self-attention);
/// with other key/value widths (`kdim`/`vdim`, see [`MultiheadAttentionBuilder`])
/// they are `q_proj_weight [E, E]`, `k_proj_weight [E, kdim]` and
/// `v_proj_weight [E, vdim]`, as PyTorch names them. The bias is always the
/// packed `in_proj_bias [3E]`.
#[derive(Module)]
pub struct MultiheadAttention {
    /// `[3·embed_dim, embed_dim]`: the query, key and value projections
    /// stacked; `None` when the key or value width differs from E.
    #[param]
    pub in_proj_weight: Option<Tensor>,
    /// `[embed_dim, embed_dim]` when the projections are separate.
    #[param]
    pub q_proj_weight: Option<Tensor>,
    /// `[embed_dim, kdim]` when the projections are separate.
    #[param]
    pub k_proj_weight: Option<Tensor>,
    /// `[embed_dim, vdim]` when the projections are separate.
    #[param]
    pub v_proj_weight: Option<Tensor>,
    /// `[3·embed_dim]`, if the layer has biases.
    #[param]
    pub in_proj_bias: Option<Tensor>,
    /// The output projection.
    #[module]
    pub out_proj: Linear,
    heads: usize,
    /// Dropout probability on the attention weights (training only).
    pub dropout: f32,
    /// Inputs and outputs are `[B, L, E]` instead of `[L, B, E]`.
    pub batch_first: bool,
    #[training]
    training: bool,
    gen: Mutex<Generator>,
}

/// Options of a [`MultiheadAttention`] layer, with PyTorch's defaults: no
/// attention dropout, biases, time-major `[L, B, E]` inputs, key and value
/// widths equal to the model width; [`build`](Self::build) makes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MultiheadAttentionBuilder {
    embed_dim: usize,
    num_heads: usize,
    dropout: f32,
    bias: bool,
    batch_first: bool,
    kdim: Option<usize>,
    vdim: Option<usize>,
}

impl MultiheadAttention {
    /// `nn.MultiheadAttention(embed_dim, num_heads)`.
    pub fn builder(embed_dim: usize, num_heads: usize) -> MultiheadAttentionBuilder {
        MultiheadAttentionBuilder {
            embed_dim,
            num_heads,
            dropout: 0.0,
            bias: true,
            batch_first: false,
            kdim: None,
            vdim: None,
        }
    }
}

impl MultiheadAttentionBuilder {
    setters! {
        /// Dropout probability on the attention weights (default 0).
        dropout: f32,
        /// Whether the projections have biases (default true).
        bias: bool,
        /// Inputs and outputs are `[B, L, E]` (default false: `[L, B, E]`).
        batch_first: bool,
    }

    /// The key input's width (PyTorch's `kdim`; default the model width).
    pub fn kdim(self, kdim: usize) -> Self {
        MultiheadAttentionBuilder { kdim: Some(kdim), ..self }
    }

    /// The value input's width (PyTorch's `vdim`; default the model width).
    pub fn vdim(self, vdim: usize) -> Self {
        MultiheadAttentionBuilder { vdim: Some(vdim), ..self }
    }

    /// The layer, initialised as PyTorch does: xavier-uniform projection
    /// weights (the packed one as one matrix, separate ones each in q, k, v
    /// order), zero biases, `out_proj.weight` like a Linear layer's.
    ///
    /// # Panics
    /// When `num_heads` does not divide `embed_dim`, a width is zero, or
    /// dropout is outside [0, 1].
    pub fn build(self, init: &mut Init) -> MultiheadAttention {
        let (embed_dim, heads) = (self.embed_dim, self.num_heads);
        assert!(
            heads > 0 && embed_dim > 0 && embed_dim.is_multiple_of(heads),
            "MultiheadAttention: embed_dim {embed_dim} must be a positive multiple of heads {heads}"
        );
        let dropout = self.dropout;
        assert!((0.0..=1.0).contains(&dropout), "MultiheadAttention: dropout must be in [0, 1], got {dropout}");
        let (kdim, vdim) = (self.kdim.unwrap_or(embed_dim), self.vdim.unwrap_or(embed_dim));
        assert!(kdim > 0 && vdim > 0, "MultiheadAttention: kdim {kdim} and vdim {vdim} must be positive");
        let weight = |rows: usize, cols: usize, init: &mut Init| {
            let w = Tensor::zeros(&[rows, cols], init.device()).requires_grad_();
            crate::init::xavier_uniform_(&w, 1.0, init.generator());
            w
        };
        let (in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight) = if kdim == embed_dim && vdim == embed_dim {
            (Some(weight(3 * embed_dim, embed_dim, init)), None, None, None)
        } else {
            let q = weight(embed_dim, embed_dim, init);
            let k = weight(embed_dim, kdim, init);
            (None, Some(q), Some(k), Some(weight(embed_dim, vdim, init)))
        };
        let in_proj_bias = self.bias.then(|| Tensor::zeros(&[3 * embed_dim], init.device()).requires_grad_());
        let out_proj = Linear::builder(embed_dim, embed_dim).bias(self.bias).build(init);
        if let Some(b) = &out_proj.bias {
            crate::init::zeros_(b);
        }
        MultiheadAttention {
            in_proj_weight,
            q_proj_weight,
            k_proj_weight,
            v_proj_weight,
            in_proj_bias,
            out_proj,
            heads,
            dropout,
            batch_first: self.batch_first,
            training: true,
            gen: Mutex::new(init.generator().fork()),
        }
    }
}

impl MultiheadAttention {
    /// The model width E.
    pub fn embed_dim(&self) -> usize {
        self.out_proj.weight.shape()[0]
    }

    /// The key input's width (`kdim`; the model width unless set).
    pub fn kdim(&self) -> usize {
        self.k_proj_weight.as_ref().map_or(self.embed_dim(), |w| w.shape()[1])
    }

    /// The value input's width (`vdim`; the model width unless set).
    pub fn vdim(&self) -> usize {
        self.v_proj_weight.as_ref().map_or(self.embed_dim(), |w| w.shape()[1])
    }

    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Self-attention of `x` (`[L, B, E]`, `[B, L, E]` batch-first, or `[L, E]`)
    /// under `mask`: one packed matmul makes q, k and v.
    pub fn self_attention(&self, x: &Tensor, mask: &AttentionMask) -> Tensor {
        self.self_attention_plus(x, mask, None)
    }

    /// `residual + self.self_attention(x, mask)` with the residual (the
    /// shape of `x`) added as `out_proj`'s product is stored: a residual
    /// block's `x + attn(norm(x))` without a launch for the add.
    pub fn self_attention_residual(&self, x: &Tensor, mask: &AttentionMask, residual: &Tensor) -> Tensor {
        self.self_attention_plus(x, mask, Some(residual))
    }

    /// [`self_attention`](Self::self_attention), plus `residual` in
    /// `out_proj`'s store when given.
    pub(crate) fn self_attention_plus(&self, x: &Tensor, mask: &AttentionMask, residual: Option<&Tensor>) -> Tensor {
        let (x3, restore) = self.to_batch_first(x, "query", self.embed_dim());
        let r3 = residual.map(|r| self.to_batch_first(r, "residual", self.embed_dim()).0);
        let (q, k, v) = self.project_self(&x3);
        restore(self.attend_projected(&q, &k, &v, mask, r3.as_ref()))
    }

    /// Attention of `query` over `key`/`value` (cross-attention: the decoder
    /// attending to the encoder's memory). Shapes as in
    /// [`self_attention`](Self::self_attention); key and value share a length.
    ///
    /// # Panics
    /// On width or batch mismatches, or masks of the wrong shape.
    pub fn attend(&self, query: &Tensor, key: &Tensor, value: &Tensor, mask: &AttentionMask) -> Tensor {
        let (q3, restore) = self.to_batch_first(query, "query", self.embed_dim());
        let (k3, _) = self.to_batch_first(key, "key", self.kdim());
        let (v3, _) = self.to_batch_first(value, "value", self.vdim());
        let (q, k, v) = (self.project(&q3, 0), self.project(&k3, 1), self.project(&v3, 2));
        restore(self.attend_projected(&q, &k, &v, mask, None))
    }

    /// Causal self-attention of `x` (`[B, T, E]`, batch-first or not: the
    /// layout of [`self_attention`](Self::self_attention)), the T positions
    /// that follow those in `cache`: their keys and values are appended to
    /// the cache and each new position attends over every earlier one and
    /// itself. Decoding one token then costs one position's projections
    /// instead of the whole prefix's (Hugging Face's `past_key_values`).
    ///
    /// # Panics
    /// When `x` is not 3-D or its batch differs from the cached one.
    pub fn self_attention_cached(&self, x: &Tensor, cache: &mut KvCache) -> Tensor {
        assert_eq!(x.dims(), 3, "MultiheadAttention: the cached path takes [B, T, E] ([T, B, E]) input");
        let (x3, restore) = self.to_batch_first(x, "query", self.embed_dim());
        let (q, k, v) = self.project_self(&x3);
        let (past, t) = (cache.len(), q.shape()[1]);
        let (k, v) = cache.append(&k, &v);
        // New position i (absolute past + i) sees keys 0..=past + i: the
        // kernel's causal mask when nothing is cached, no mask for one new
        // position, else an explicit one (the kernel's aligns top-left).
        let lk = past + t;
        let explicit = (past > 0 && t > 1).then(|| {
            let m: Vec<f32> =
                (0..t * lk).map(|n| if n % lk > past + n / lk { f32::NEG_INFINITY } else { 0.0 }).collect();
            Tensor::from_vec(&m, &[t, lk], &x.device())
        });
        let mask = AttentionMask { attn_mask: explicit.as_ref(), is_causal: past == 0, ..Default::default() };
        restore(self.attend_projected(&q, &k, &v, &mask, None))
    }

    /// Self-attention's q, k and v of `x [B, L, E]`: one packed matmul when
    /// the projections are packed (then narrowed), else three.
    ///
    /// # Panics
    /// When the key or value width differs from the model width: the one
    /// input cannot be both.
    fn project_self(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let e = self.embed_dim();
        match &self.in_proj_weight {
            Some(w) => {
                let qkv = x.linear(w, self.in_proj_bias.as_ref());
                (qkv.narrow(-1, 0, e), qkv.narrow(-1, e, e), qkv.narrow(-1, 2 * e, e))
            }
            None => {
                assert!(
                    self.kdim() == e && self.vdim() == e,
                    "MultiheadAttention: self-attention needs kdim ({}) and vdim ({}) equal to embed_dim ({e}); \
                     use `attend` with key and value inputs of those widths",
                    self.kdim(),
                    self.vdim()
                );
                (self.project(x, 0), self.project(x, 1), self.project(x, 2))
            }
        }
    }

    /// Projection `which` (0 query, 1 key, 2 value) of `x [B, L, width]`:
    /// `x @ Wᵀ + in_proj_bias[which·E..(which+1)·E]`, one fused launch
    /// ([`Tensor::linear`]; f16 under autocast).
    fn project(&self, x: &Tensor, which: usize) -> Tensor {
        let e = self.embed_dim();
        let w = match (&self.in_proj_weight, [&self.q_proj_weight, &self.k_proj_weight, &self.v_proj_weight][which]) {
            (Some(packed), _) => packed.narrow(0, which * e, e),
            (None, Some(w)) => w.clone(),
            (None, None) => unreachable!("MultiheadAttention has packed or separate projections"),
        };
        let bias = self.in_proj_bias.as_ref().map(|b| b.narrow(0, which * e, e));
        x.linear(&w, bias.as_ref())
    }

    /// Views `x` as `[B, L, E]`; returns it and the inverse for the output.
    fn to_batch_first(&self, x: &Tensor, what: &str, e: usize) -> (Tensor, impl Fn(Tensor) -> Tensor) {
        let shape = x.shape();
        assert!(
            matches!(shape.len(), 2 | 3) && shape[shape.len() - 1] == e,
            "MultiheadAttention: {what} must be [L, B, {e}] ([B, L, {e}] batch-first) or [L, {e}], got {shape:?}"
        );
        let (unbatched, swap) = (shape.len() == 2, shape.len() == 3 && !self.batch_first);
        let x3 = if unbatched {
            x.unsqueeze(0)
        } else if swap {
            x.transpose(0, 1)
        } else {
            x.clone()
        };
        let restore = move |y: Tensor| {
            if unbatched {
                y.squeeze(0)
            } else if swap {
                y.transpose(0, 1)
            } else {
                y
            }
        };
        (x3, restore)
    }

    /// Splits heads, attends, merges heads and applies `out_proj`, adding
    /// `residual` (`[B, Lq, E]`) in its store if given.
    fn attend_projected(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttentionMask,
        residual: Option<&Tensor>,
    ) -> Tensor {
        self.attend_projected_weights(q, k, v, mask, false, residual).0
    }

    /// Splits heads, attends, merges heads and applies `out_proj`; with
    /// `need_weights`, also the attention weights `[B, heads, Lq, Lk]`
    /// (after dropout, as PyTorch returns them). The fused kernel never
    /// forms the weights, so asking for them (or dropout in training) takes
    /// the composite path: scores, softmax, dropout, product.
    fn attend_projected_weights(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &AttentionMask,
        need_weights: bool,
        residual: Option<&Tensor>,
    ) -> (Tensor, Option<Tensor>) {
        let (b, lq, e) = (q.shape()[0], q.shape()[1], q.shape()[2]);
        let lk = k.shape()[1];
        assert_eq!(k.shape()[0], b, "MultiheadAttention: query batch {b} vs key batch {}", k.shape()[0]);
        let h = self.heads;
        let split = |t: &Tensor, l: usize| t.reshape(&[b, l, h, e / h]).permute(&[0, 2, 1, 3]);
        let (q, k, v) = (split(q, lq), split(k, lk), split(v, lk));
        let additive = self.combined_mask(mask, b, lq, lk);
        let dropout = self.training && self.dropout > 0.0;
        let (out, weights) = if dropout || need_weights {
            let scale = 1.0 / ((e / h) as f32).sqrt();
            // PyTorch's math path: the fuser merges the scale into the
            // product's store.
            let mut scores = q.matmul(&k.transpose(-1, -2)).mul_scalar(scale);
            if let Some(m) = &additive {
                scores = scores + m;
            }
            if mask.is_causal {
                scores = scores + causal_mask(lq, lk, &q.device());
            }
            let mut weights = scores.softmax(-1);
            if dropout {
                weights = weights.dropout(self.dropout, true, &mut self.gen.lock().unwrap());
            }
            (weights.matmul(&v), Some(weights))
        } else {
            (q.scaled_dot_product_attention(&k, &v, additive.as_ref(), mask.is_causal, None), None)
        };
        let merged = out.permute(&[0, 2, 1, 3]).reshape(&[b, lq, e]);
        // On a GPU the residual joins the projection's store (the fuser).
        let y = self.out_proj.forward(&merged);
        let out = match residual {
            Some(r) => r + &y,
            None => y,
        };
        (out, weights)
    }

    /// [`attend`](Self::attend) that also returns the attention weights,
    /// PyTorch's `need_weights=True`: `[B, Lq, Lk]` averaged over the heads
    /// when `average` (PyTorch's default), else `[B, heads, Lq, Lk]`;
    /// batch-first whatever `batch_first` says, and without the batch dim
    /// for unbatched input, as PyTorch returns them.
    pub fn attend_with_weights(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        mask: &AttentionMask,
        average: bool,
    ) -> (Tensor, Tensor) {
        let (q3, restore) = self.to_batch_first(query, "query", self.embed_dim());
        let (k3, _) = self.to_batch_first(key, "key", self.kdim());
        let (v3, _) = self.to_batch_first(value, "value", self.vdim());
        let (q, k, v) = (self.project(&q3, 0), self.project(&k3, 1), self.project(&v3, 2));
        let (out, weights) = self.attend_projected_weights(&q, &k, &v, mask, true, None);
        let weights = weights.expect("asked for");
        let weights = if average { weights.mean(&[1], false) } else { weights };
        let weights = if query.dims() == 2 { weights.squeeze(0) } else { weights };
        (restore(out), weights)
    }

    /// One additive mask broadcastable to `[B, heads, Lq, Lk]`, or `None`.
    fn combined_mask(&self, mask: &AttentionMask, b: usize, lq: usize, lk: usize) -> Option<Tensor> {
        let h = self.heads;
        let attn = mask.attn_mask.map(|m| match m.shape().as_slice() {
            [a, c] if (*a, *c) == (lq, lk) => m.clone(),
            [n, a, c] if (*n, *a, *c) == (b * h, lq, lk) => m.reshape(&[b, h, lq, lk]),
            s => panic!("MultiheadAttention: attn_mask must be [{lq}, {lk}] or [{}, {lq}, {lk}], got {s:?}", b * h),
        });
        let padding = mask.key_padding_mask.map(|m| {
            assert_eq!(m.shape(), [b, lk], "MultiheadAttention: key_padding_mask must be [{b}, {lk}]");
            m.reshape(&[b, 1, 1, lk])
        });
        match (attn, padding) {
            (Some(a), Some(p)) => Some(a + p),
            (a, p) => a.or(p),
        }
    }
}

impl Module for MultiheadAttention {
    fn random_stream(&self) -> Option<&Mutex<Generator>> {
        Some(&self.gen)
    }

    /// Unmasked self-attention.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.self_attention(x, &AttentionMask::default())
    }

    fn describe(&self) -> String {
        let dims = match self.in_proj_weight {
            Some(_) => String::new(),
            None => format!(", kdim={}, vdim={}", self.kdim(), self.vdim()),
        };
        format!(
            "MultiheadAttention(embed_dim={}, num_heads={}, dropout={}, batch_first={}{dims})",
            self.embed_dim(),
            self.heads,
            self.dropout,
            self.batch_first
        )
    }
}

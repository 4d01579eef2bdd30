//! Attention's descriptors: its sizes ([`AttnDims`]), its host operands
//! ([`Inputs`]) and which form a device computes it in
//! ([`AttentionPath`]), below the launches (`ops/attention.rs`), the fast
//! path (`cpu/attention.rs`) and the device setting
//! (`GpuContext::attention`); and the reference twins ([`forward`],
//! [`backward`]), in f64.

use super::io::{Binding, IoLibrary, Storage};
use super::variants::{FamilyShaders, Variant};

/// How attention is computed on a device (`Device::set_attention_path`,
/// `WGRAD_ATTENTION=auto|fused|composite`). The choice is made by the
/// autograd op, which owns the composite form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionPath {
    /// [`Composite`](Self::Composite) on CPU adapters (lavapipe) for
    /// unmasked attention whose score matrix is small, [`Fused`](Self::Fused)
    /// everywhere else.
    #[default]
    Auto,
    /// The fused kernels of this module: O(L·D) memory, one launch forward
    /// and two backward. The choice for GPUs and the CPU backend.
    Fused,
    /// `softmax(q kᵀ · scale) v` from matmul and softmax, the score matrix in
    /// memory. On CPU adapters, where every lane-divergent load of the fused
    /// backward is a loop over the SIMD lanes, the products run on the
    /// subgroup matmul instead and a step of the sequence bench's Transformer
    /// is faster (docs/performance.md).
    Composite,
}

impl AttentionPath {
    /// The code stored in the device (`GpuContext::attention`).
    pub(crate) fn code(self) -> u8 {
        match self {
            AttentionPath::Auto => 0,
            AttentionPath::Fused => 1,
            AttentionPath::Composite => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> AttentionPath {
        match c {
            1 => AttentionPath::Fused,
            2 => AttentionPath::Composite,
            _ => AttentionPath::Auto,
        }
    }

    /// `WGRAD_ATTENTION`'s value: `auto` (or unset), `fused`, `composite`.
    pub(crate) fn from_env() -> AttentionPath {
        match std::env::var("WGRAD_ATTENTION").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Ok("fused") => AttentionPath::Fused,
            Ok("composite") => AttentionPath::Composite,
            _ => AttentionPath::Auto,
        }
    }
}

/// Sizes of one attention call: `q [batch·heads, lq, d]`, `k [batch·heads, lk, d]`,
/// `v [batch·heads, lk, dv]`, all dense row-major f32; `out [batch·heads, lq, dv]`.
/// `batch` and `heads` are separate only for the mask's strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    /// Batch size `B`.
    pub batch: usize,
    /// Heads per batch entry `H`.
    pub heads: usize,
    /// Query rows `Lq`.
    pub lq: usize,
    /// Key (and value) rows `Lk`.
    pub lk: usize,
    /// Head dim of q and k.
    pub d: usize,
    /// Head dim of v and of the output.
    pub dv: usize,
}

impl AttnDims {
    /// Number of (batch, head) pairs.
    pub fn bh(&self) -> usize {
        self.batch * self.heads
    }
}

/// What both passes share: the inputs and how a score is masked.
pub(crate) struct Inputs<'a> {
    /// `[B·H, Lq, D]`.
    pub q: &'a [f32],
    /// `[B·H, Lk, D]`.
    pub k: &'a [f32],
    /// `[B·H, Lk, Dv]`.
    pub v: &'a [f32],
    /// The additive mask and its (batch, head, query, key) strides.
    pub mask: Option<(&'a [f32], [usize; 4])>,
    /// Sizes.
    pub dims: AttnDims,
    /// Hide keys `j > i`.
    pub causal: bool,
    /// Score scale.
    pub scale: f32,
}

/// `s_ij` of batch·head `bh` in f64, −∞ where key `j` is hidden from query `i`.
fn score(x: &Inputs, bh: usize, i: usize, j: usize) -> f64 {
    let AttnDims { heads, lq, lk, d, .. } = x.dims;
    if x.causal && j > i {
        return f64::NEG_INFINITY;
    }
    let (qr, kr) = (&x.q[(bh * lq + i) * d..][..d], &x.k[(bh * lk + j) * d..][..d]);
    let mut s = qr.iter().zip(kr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * x.scale as f64;
    if let Some((m, st)) = x.mask {
        s += m[(bh / heads) * st[0] + (bh % heads) * st[1] + i * st[2] + j * st[3]] as f64;
    }
    s
}

/// The scores of query row `i` against every key.
fn scores(x: &Inputs, bh: usize, i: usize) -> Vec<f64> {
    (0..x.dims.lk).map(|j| score(x, bh, i, j)).collect()
}

/// `torch.nn.functional.scaled_dot_product_attention`'s forward, one
/// query row at a time in f64 (`ops/attention.rs` has the formulas): writes
/// `os` (`[B·H, Lq, Dv]`) and each row's log-sum-exp `ls`; a row whose
/// keys are all hidden gets zeros and lse +∞.
pub(crate) fn forward(x: &Inputs, os: &mut [f32], ls: &mut [f32]) {
    let dims = x.dims;
    let AttnDims { lq, lk, dv, .. } = dims;
    for bh in 0..dims.bh() {
        for i in 0..lq {
            let s = scores(x, bh, i);
            let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let row = &mut os[(bh * lq + i) * dv..][..dv];
            if m == f64::NEG_INFINITY {
                row.fill(0.0);
                ls[bh * lq + i] = f32::INFINITY;
                continue;
            }
            let mut acc = vec![0.0f64; dv];
            let mut l = 0.0;
            for (j, &sj) in s.iter().enumerate() {
                let w = (sj - m).exp();
                l += w;
                for (a, &e) in acc.iter_mut().zip(&x.v[(bh * lk + j) * dv..][..dv]) {
                    *a += w * e as f64;
                }
            }
            for (o, a) in row.iter_mut().zip(acc) {
                *o = (a / l) as f32;
            }
            ls[bh * lq + i] = (m + l.ln()) as f32;
        }
    }
}

/// The backward of [`forward`] from its output `os`, lse `ls` and the
/// output gradient `gs`: adds the f64 gradients into `gq`, `gk` and `gv`
/// (zeroed by the caller, which rounds them once).
pub(crate) fn backward(x: &Inputs, (os, ls, gs): (&[f32], &[f32], &[f32]), [gq, gk, gv]: [&mut [f64]; 3]) {
    let dims = x.dims;
    let AttnDims { lq, lk, d, dv: w, .. } = dims;
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&u, &v)| u as f64 * v as f64).sum::<f64>();
    for bh in 0..dims.bh() {
        for i in 0..lq {
            let r = bh * lq + i;
            let (g_row, q_row) = (&gs[r * w..][..w], &x.q[r * d..][..d]);
            let delta = dot(g_row, &os[r * w..][..w]);
            let l = ls[r] as f64;
            for (j, s) in scores(x, bh, i).into_iter().enumerate() {
                if s == f64::NEG_INFINITY {
                    continue;
                }
                let c = bh * lk + j;
                let pr = (s - l).exp();
                let ds = pr * (dot(g_row, &x.v[c * w..][..w]) - delta) * x.scale as f64;
                for (a, &e) in gv[c * w..][..w].iter_mut().zip(g_row) {
                    *a += pr * e as f64;
                }
                for (a, &e) in gq[r * d..][..d].iter_mut().zip(&x.k[c * d..][..d]) {
                    *a += ds * e as f64;
                }
                for (a, &e) in gk[c * d..][..d].iter_mut().zip(q_row) {
                    *a += ds * e as f64;
                }
            }
        }
    }
}

/// The shaders this family derives from its files by swapping includes,
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[
        Variant::new("attention_f16", "attention", &[("attention_io_f32", "attention_io_f16")]),
        Variant::new("attention_f16_native", "attention", &[("attention_io_f32", "attention_io_f16_native")]).f16(),
    ],
    io: &[IoLibrary {
        stem: "attention_io",
        storages: &[Storage::F32, Storage::F16, Storage::F16Native],
        bindings: &[
            // Rows of the head dims D (q, k) and DV (v, o, dout): `q_at(row, c, D)`.
            Binding::load("q", 1).quads().rows(),
            Binding::load("k", 2).quads().rows(),
            Binding::load("v", 3).quads().rows(),
            // The forward's output and the output gradient, read by the
            // backward (each entry binds its own, so `o` shares 5 with `out`).
            Binding::load("o", 5).quads().rows(),
            Binding::load("dout", 7).quads().rows(),
            Binding::store("out", 5),
            Binding::store("dq", 8),
            Binding::store("dk", 9),
            Binding::store("dv", 10),
        ],
    }],
};

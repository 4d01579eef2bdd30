//! Fused scaled-dot-product attention (`shaders/attention.wgsl`):
//! `out = softmax(q kᵀ · scale + mask) v` per batch·head, forward and
//! backward, without materialising the `Lq × Lk` score matrix.
//!
//! The forward is flash-attention style: one pass over the keys with a
//! running maximum and sum (online softmax), saving each query row's
//! log-sum-exp `lse_i = log Σ_j exp(s_ij)`. The backward recomputes
//! `P_ij = exp(s_ij − lse_i)` instead of storing it, in two gathers without
//! atomics: one pass per query row for `dq` (and `delta_i = dO_i · O_i`), one
//! per key row for `dk` and `dv`:
//!
//! * `dV_j = Σ_i P_ij dO_i`, `dP_ij = dO_i · V_j`, `dS_ij = P_ij (dP_ij − delta_i)`,
//! * `dQ_i = scale Σ_j dS_ij K_j`, `dK_j = scale Σ_i dS_ij Q_i`.
//!
//! Masking follows `torch.nn.functional.scaled_dot_product_attention`:
//! `causal` lets query `i` see keys `j ≤ i` (top-left aligned, also when
//! `Lq ≠ Lk`), and an optional additive f32 mask (−∞ or a large negative
//! value hides a key) is read through four strides over
//! `(batch, head, query, key)`, 0 broadcasting, so `[Lq, Lk]`, key padding
//! `[B, 1, 1, Lk]` and `[B, H, Lq, Lk]` masks are never expanded in memory.
//!
//! **Difference from PyTorch:** a query row whose keys are *all* hidden
//! (scores all −∞) outputs zeros and gets zero gradients; PyTorch gives NaN.
//! Its lse is +∞.
//!
//! Each invocation owns whole rows (one on GPUs, up to four on CPU drivers,
//! where every buffer load is a loop over the SIMD lanes and a loaded chunk
//! should serve several rows) and streams the other side in blocks of 4
//! (the dk/dv pass may instead share each key row among 2-8 invocations,
//! [`Device::set_attention_split`]);
//! the kernels specialise on the head dims, so each new (d, dv, causal,
//! mask) combination compiles its own pipelines, which takes seconds on
//! llvmpipe (Mesa caches them on disk).
//!
//! q, k, v, the output, its gradient and dq, dk, dv may be stored as f16
//! ([`Operands::F16`], the `_io` forms; head dims must be even so that each
//! row starts on a whole u32 word): loads widen exactly, all arithmetic is
//! f32 (f64 in the twins), and the results are rounded once; the mask and
//! lse stay f32.
//!
//! The CPU twins accumulate in f64, the more exact side and so the oracle;
//! the fast CPU path (`cpu::attention`) uses sgemm over each head's score
//! block in f32.

use super::operands::{host_f32, load_x_shader, HostOutput, Operands};
use crate::kernels::attention::{self as twin, Inputs};
pub use crate::kernels::attention::{AttentionPath, AttnDims};

use super::matmul::MatmulKernel;
use super::{dispatch, f32s, run_fallible, Kind, Params, ParamsDecl};
use crate::gpu::GpuContext;
use crate::reservation::HostVec;
use crate::{Buffer, Device, Error, Result};

/// vec4 slots of the kernel's per-invocation row arrays (`CAP` in the shader).
const CAP: usize = 64;
/// The largest head dim (of q/k or of v): one row must fit those arrays.
pub const MAX_HEAD_DIM: usize = 4 * CAP;
/// Invocations per workgroup on CPU adapters: one 8-lane SIMD register, so
/// the causal loop bound (the group's last row) wastes little.
const CPU_WG: usize = 8;
/// Invocations per workgroup on GPUs.
const GPU_WG: usize = 64;

/// An additive f32 mask and its strides over `(batch, head, query, key)`
/// (element strides from the start of the buffer; 0 broadcasts a dim).
pub type AttnMask<'a> = (&'a Buffer, [usize; 4]);

/// Element counts of q, k, v and out, after validating everything the
/// kernels index with u32 arithmetic.
fn check(
    op: &'static str,
    q: &Buffer,
    k: &Buffer,
    v: &Buffer,
    mask: Option<AttnMask>,
    dims: &AttnDims,
    io: Operands,
) -> Result<[usize; 4]> {
    let AttnDims { batch, heads, lq, lk, d, dv } = *dims;
    for (name, n) in [("q/k head dim d", d), ("v head dim dv", dv)] {
        if n == 0 || n > MAX_HEAD_DIM {
            return Err(Error::invalid(op, format!("{name} is {n}; the kernel supports 1..={MAX_HEAD_DIM}")));
        }
        if io == Operands::F16 && n % 2 == 1 {
            return Err(Error::invalid(op, format!("{name} is {n}; f16 storage needs even head dims")));
        }
    }
    let overflow = || Error::invalid(op, format!("sizes {dims:?} overflow"));
    let bh = batch.checked_mul(heads).ok_or_else(overflow)?;
    let count =
        |rows: usize, width: usize| bh.checked_mul(rows).and_then(|n| n.checked_mul(width)).ok_or_else(overflow);
    let sizes = [count(lq, d)?, count(lk, d)?, count(lk, dv)?, count(lq, dv)?];
    for n in sizes {
        // Chunk indices round the row width up to a multiple of 4.
        super::check_u32(op, n + 4)?;
    }
    let dev = q.device();
    q.check_len(op, "q", sizes[0], io.size())?;
    k.check_len(op, "k", sizes[1], io.size())?;
    v.check_len(op, "v", sizes[2], io.size())?;
    Buffer::check_same_device(op, dev, &[k, v])?;
    if let Some((m, strides)) = mask {
        Buffer::check_same_device(op, dev, &[m])?;
        let extent = [batch, heads, lq, lk];
        if extent.contains(&0) {
            return Ok(sizes);
        }
        let span = extent.iter().zip(strides).try_fold(1usize, |acc, (&n, s)| acc.checked_add((n - 1).checked_mul(s)?));
        let span = span.ok_or_else(|| Error::invalid(op, format!("mask strides {strides:?} overflow")))?;
        super::check_u32(op, span)?;
        m.check_len(op, format_args!("mask (strides {strides:?} over {extent:?})"), span, 4)?;
    }
    Ok(sizes)
}

/// (invocations per workgroup, rows per invocation) for `dims` on `g`. A CPU
/// driver (llvmpipe) runs every buffer load as a loop over the SIMD lanes,
/// so there each invocation takes as many rows as its arrays hold (up to
/// 4), and every loaded chunk of the other side serves all of them. GPUs
/// broadcast those loads cheaply and want threads and registers instead.
fn mapping(g: &GpuContext, dims: &AttnDims) -> (usize, usize) {
    if g.is_cpu_adapter() {
        (CPU_WG, (CAP / dims.d.max(dims.dv).div_ceil(4)).clamp(1, 4))
    } else {
        (GPU_WG, 1)
    }
}

/// Invocations per key row of the dk/dv pass on `g`
/// (`attention_backward_dkv_split`; 1: the one-row-per-invocation kernel):
/// what [`Device::set_attention_split`] set, else `WGRAD_ATTENTION_SPLIT`,
/// else 1. Not on by default: it has not run on a hardware GPU yet.
fn split(g: &GpuContext) -> Result<usize> {
    static ENV: std::sync::OnceLock<std::result::Result<usize, String>> = std::sync::OnceLock::new();
    match g.attention_split.load(std::sync::atomic::Ordering::Relaxed) {
        0 => ENV
            .get_or_init(|| match std::env::var("WGRAD_ATTENTION_SPLIT") {
                Err(_) => Ok(1),
                Ok(v) => {
                    v.trim().parse().ok().filter(|n| SPLITS.contains(n)).ok_or_else(|| {
                        format!("WGRAD_ATTENTION_SPLIT={v:?}: invocations per key row, one of {SPLITS:?}")
                    })
                }
            })
            .clone()
            .map_err(|e| Error::invalid("scaled_dot_product_attention", e)),
        n => Ok(n as usize),
    }
}

/// The invocations per key row the split dk/dv pass takes (each divides
/// both workgroup sizes).
const SPLITS: [usize; 4] = [1, 2, 4, 8];

// The attention path is a device setting that only this op reads, so it
// is set and resolved here rather than in device.rs, which stays below the ops.
impl Device {
    /// Runs attention's dk/dv pass with `lanes` invocations per key row
    /// (1, 2, 4 or 8; 1: one invocation per row, the default), each holding
    /// every `lanes`-th chunk of the row's vectors: a GPU then keeps them
    /// in registers at head dims where one invocation per row spills
    /// (`WGRAD_ATTENTION_SPLIT` sets it for a process). No effect on the
    /// CPU backend.
    ///
    /// # Errors
    /// For another count.
    pub fn set_attention_split(&self, lanes: usize) -> Result<()> {
        if !SPLITS.contains(&lanes) {
            let why = format!("{lanes} invocations per key row: one of {SPLITS:?}");
            return Err(Error::invalid("set_attention_split", why));
        }
        if let Some(g) = self.gpu_ctx() {
            g.attention_split.store(lanes as u8, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Chooses how attention is computed from now on (it starts as
    /// `WGRAD_ATTENTION` says, `auto` when unset). No effect on the CPU
    /// backend, which always runs its fused twin.
    pub fn set_attention_path(&self, path: AttentionPath) {
        if let Some(g) = self.gpu_ctx() {
            g.attention.store(path.code(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The attention path this device runs, resolved:
    /// [`Fused`](AttentionPath::Fused) or
    /// [`Composite`](AttentionPath::Composite)
    /// (`Auto` picks the composite form on CPU adapters, which run the
    /// subgroup matmul; the size and mask conditions are the op's).
    pub fn attention_path(&self) -> AttentionPath {
        self.attention_path_for(false)
    }

    /// [`attention_path`](Self::attention_path) for attention on f16
    /// operands (`f16`) or f32 ones. On f16 operands `Auto` picks the
    /// composite form where f16 products run on matrix units: its two
    /// products on tensor cores beat the fused kernel's ALU loops on large
    /// score matrices (the op also checks their size; docs/performance.md,
    /// "Matrix units"); elsewhere the fused kernel.
    pub fn attention_path_for(&self, f16: bool) -> AttentionPath {
        let Some(g) = self.gpu_ctx() else { return AttentionPath::Fused };
        match AttentionPath::from_code(g.attention.load(std::sync::atomic::Ordering::Relaxed)) {
            AttentionPath::Auto if f16 && g.matrix_units.is_some() => AttentionPath::Composite,
            AttentionPath::Auto if !f16 && MatmulKernel::Auto.resolve(self) == MatmulKernel::Subgroup => {
                AttentionPath::Composite
            }
            AttentionPath::Auto => AttentionPath::Fused,
            p => p,
        }
    }
}

/// `attention.wgsl`'s `Params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "attention",
    fields: &[
        ("bh", Kind::U32),
        ("heads", Kind::U32),
        ("lq", Kind::U32),
        ("lk", Kind::U32),
        ("scale", Kind::F32),
        ("blocks", Kind::U32),
        ("mask_b", Kind::U32),
        ("mask_h", Kind::U32),
        ("mask_q", Kind::U32),
        ("mask_k", Kind::U32),
    ],
};

/// Records one `attention.wgsl` launch of `entry` over `rows` rows per
/// batch·head (query rows or key rows), `lanes` invocations to a row (1
/// but for `attention_backward_dkv_split`). `inputs` are q, k, v, then the entry's others;
/// the mask goes in between as binding 4 (`q` as a placeholder the kernel
/// never reads when there is none).
#[allow(clippy::too_many_arguments)]
fn launch(
    g: &GpuContext,
    io: Operands,
    (entry, lanes): (&'static str, usize),
    dims: &AttnDims,
    rows: usize,
    mask: Option<AttnMask>,
    causal: bool,
    scale: f32,
    inputs: &[&Buffer],
    outputs: &[&Buffer],
) -> Result<()> {
    let (wg, per_invocation) = mapping(g, dims);
    // Several invocations per row, or several rows per invocation.
    let per_invocation = if lanes > 1 { 1 } else { per_invocation };
    let blocks = rows.div_ceil(wg * per_invocation / lanes);
    let workgroups = u32::try_from(dims.bh() * blocks)
        .map_err(|_| Error::invalid(entry, format!("too many workgroups for one launch: {dims:?}")))?;
    // A size-1 dim's stride is never used (and may not fit in u32).
    let extent = [dims.batch, dims.heads, dims.lq, dims.lk];
    let strides = mask.map_or([0; 4], |(_, s)| std::array::from_fn(|i| if extent[i] == 1 { 0 } else { s[i] }));
    let params = Params::of(&PARAMS)
        .set_u32("bh", dims.bh())
        .set_u32("heads", dims.heads)
        .set_u32("lq", dims.lq)
        .set_u32("lk", dims.lk)
        .set_f32("scale", scale)
        .set_u32("blocks", blocks)
        .set_u32("mask_b", strides[0])
        .set_u32("mask_h", strides[1])
        .set_u32("mask_q", strides[2])
        .set_u32("mask_k", strides[3]);
    let flag = |f: bool| if f { 1.0 } else { 0.0 };
    let constants = [
        ("WG", wg as f64),
        ("ROWS", per_invocation as f64),
        ("SPLIT", lanes as f64),
        ("D", dims.d as f64),
        ("DV", dims.dv as f64),
        ("CAUSAL", flag(causal)),
        ("HAS_MASK", flag(mask.is_some())),
    ];
    let placeholder = mask.map_or(inputs[0], |(m, _)| m);
    let mut ins: Vec<&Buffer> = inputs[..3].to_vec();
    ins.push(placeholder);
    ins.extend_from_slice(&inputs[3..]);
    let shader = load_x_shader(g, ["attention", "attention_f16", "attention_f16_native"], io, entry, inputs[0])?;
    dispatch(g, shader, entry, &constants, &params, &ins, outputs, workgroups)
}

/// `softmax(q kᵀ · scale + mask) v` for every batch·head (shapes in
/// [`AttnDims`]); `causal` hides keys `j > i` from query `i`, and `mask`
/// (an additive f32 mask with its strides, see [`AttnMask`]) is added to
/// the scaled scores. Returns `out [B·H, Lq, Dv]` and the per-row
/// log-sum-exp `lse [B·H, Lq]` that [`attention_backward`] needs.
///
/// Rows whose keys are all hidden (every score −∞) give zeros and lse +∞;
/// PyTorch gives NaN there. Head dims must be `1..=`[`MAX_HEAD_DIM`].
pub fn attention_forward(
    q: &Buffer,
    k: &Buffer,
    v: &Buffer,
    mask: Option<AttnMask>,
    dims: AttnDims,
    causal: bool,
    scale: f32,
) -> Result<(Buffer, Buffer)> {
    attention_forward_io(q, k, v, mask, dims, causal, scale, Operands::F32)
}

/// [`attention_forward`] with q, k, v and the output stored as `io`: for
/// [`Operands::F16`] (packed, [`Buffer::from_f16`]'s layout; even head dims)
/// the f32 result is rounded once to f16; lse is f32 either way.
#[allow(clippy::too_many_arguments)]
pub fn attention_forward_io(
    q: &Buffer,
    k: &Buffer,
    v: &Buffer,
    mask: Option<AttnMask>,
    dims: AttnDims,
    causal: bool,
    scale: f32,
    io: Operands,
) -> Result<(Buffer, Buffer)> {
    const OP: &str = "attention_forward";
    let [_, _, _, n_out] = check(OP, q, k, v, mask, &dims, io)?;
    let dev = q.device();
    let out = Buffer::alloc_overwritten(dev, n_out as u64 * io.size())?;
    let lse = Buffer::alloc_overwritten(dev, (dims.bh() * dims.lq) as u64 * 4)?;
    if dims.bh() * dims.lq == 0 {
        return Ok((out, lse));
    }
    // Scores (q kᵀ) and the weighted sum of values, ignoring what masks skip.
    crate::profiler::annotate_flops(2 * (dims.bh() * dims.lq * dims.lk * (dims.d + dims.dv)) as u64);
    run_fallible(
        dev,
        |g| {
            if super::past_limit(g, [q, k, v, &out, &lse].into_iter().chain(mask.map(|m| m.0))) {
                let call = super::attention_split::Call { q, k, v, mask, dims, io };
                return super::attention_split::forward(g, &call, (&out, &lse), |[q, k, v], m, sub| {
                    attention_forward_io(q, k, v, m, sub, causal, scale, io)
                });
            }
            launch(g, io, ("attention_forward", 1), &dims, dims.lq, mask, causal, scale, &[q, k, v], &[&out, &lse])
        },
        || {
            let (hq, hk, hv, hm) = (q.host(), k.host(), v.host(), mask.map(|(m, _)| m.host()));
            let (mut ho, mut hl) = (out.host_mut(), lse.host_mut());
            let (qs, ks, vs) = (host_f32(dev, &hq, io)?, host_f32(dev, &hk, io)?, host_f32(dev, &hv, io)?);
            let hm = hm.as_ref().zip(mask).map(|(m, (_, s))| (f32s(m), s));
            let x = Inputs { q: &qs, k: &ks, v: &vs, mask: hm, dims, causal, scale };
            let mut out_vals = HostOutput::new(dev, &mut ho, n_out, io)?;
            let (os, ls) = (out_vals.values(), super::f32s_mut(&mut hl));
            if fast_cpu(dev, &dims) {
                crate::cpu::attention::forward(&x, os, ls);
            } else {
                twin::forward(&x, os, ls);
            }
            out_vals.finish();
            Ok(())
        },
    )?;
    Ok((out, lse))
}

/// Backward of [`attention_forward`]: [`attention_backward_io`] with f32 storage.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &Buffer,
    k: &Buffer,
    v: &Buffer,
    out: &Buffer,
    lse: &Buffer,
    dout: &Buffer,
    mask: Option<AttnMask>,
    dims: AttnDims,
    causal: bool,
    scale: f32,
) -> Result<(Buffer, Buffer, Buffer)> {
    attention_backward_io(q, k, v, out, lse, dout, mask, dims, causal, scale, Operands::F32)
}

/// Backward of [`attention_forward_io`]: from its inputs, its `out` and `lse`,
/// and the output gradient `dout [B·H, Lq, Dv]`, returns `(dq, dk, dv)`
/// shaped like `q`, `k` and `v`. The mask is a constant (no gradient).
/// Rows whose keys are all hidden contribute nothing. With `io`
/// [`Operands::F16`], q, k, v, `out` and `dout` are f16 and so are the
/// gradients (rounded once); lse is f32.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward_io(
    q: &Buffer,
    k: &Buffer,
    v: &Buffer,
    out: &Buffer,
    lse: &Buffer,
    dout: &Buffer,
    mask: Option<AttnMask>,
    dims: AttnDims,
    causal: bool,
    scale: f32,
    io: Operands,
) -> Result<(Buffer, Buffer, Buffer)> {
    const OP: &str = "attention_backward";
    let [n_q, n_k, n_v, n_out] = check(OP, q, k, v, mask, &dims, io)?;
    let rows = dims.bh() * dims.lq;
    out.check_len(OP, "out", n_out, io.size())?;
    dout.check_len(OP, "output gradient", n_out, io.size())?;
    lse.check_len(OP, "lse", rows, 4)?;
    let dev = q.device();
    Buffer::check_same_device(OP, dev, &[out, lse, dout])?;
    let dq = Buffer::alloc_overwritten(dev, n_q as u64 * io.size())?;
    let dk = Buffer::alloc_overwritten(dev, n_k as u64 * io.size())?;
    if n_q == 0 && n_k == 0 {
        // No scores (no rows, no keys, or d = 0): gradients of zeros.
        return Ok((dq, dk, Buffer::alloc(dev, n_v as u64 * io.size())?));
    }
    // Every word of the three is written below (the CPU paths too).
    let dv = Buffer::alloc_overwritten(dev, n_v as u64 * io.size())?;
    // Both passes recompute the scores; dP, dq, dk and dv are one product each.
    crate::profiler::annotate_flops(2 * (dims.bh() * dims.lq * dims.lk * (4 * dims.d + 3 * dims.dv)) as u64);
    run_fallible(
        dev,
        |g| {
            let all = [q, k, v, out, lse, dout, &dq, &dk, &dv];
            if super::past_limit(g, all.into_iter().chain(mask.map(|m| m.0))) {
                let call = super::attention_split::Call { q, k, v, mask, dims, io };
                let grads = (&dq, &dk, &dv);
                return super::attention_split::backward(
                    g,
                    &call,
                    (out, lse, dout),
                    grads,
                    |[q, k, v, o, l, go], m, sub| attention_backward_io(q, k, v, o, l, go, m, sub, causal, scale, io),
                );
            }
            // With no query rows the dq launch is empty and the dkv pass
            // still writes the (zero) dk and dv.
            let delta = Buffer::alloc(dev, rows.max(1) as u64 * 4)?;
            let common = [q, k, v];
            let ins = [common.as_slice(), &[out, lse, dout]].concat();
            launch(g, io, ("attention_backward_dq", 1), &dims, dims.lq, mask, causal, scale, &ins, &[&dq, &delta])?;
            let ins = [common.as_slice(), &[out, lse, dout, &delta]].concat();
            let dkv = match split(g)? {
                1 => ("attention_backward_dkv", 1),
                lanes => ("attention_backward_dkv_split", lanes),
            };
            launch(g, io, dkv, &dims, dims.lk, mask, causal, scale, &ins, &[&dk, &dv])
        },
        || {
            let (hq, hk, hv, hm) = (q.host(), k.host(), v.host(), mask.map(|(m, _)| m.host()));
            let (ho, hl, hg) = (out.host(), lse.host(), dout.host());
            let (qs, ks, vs) = (host_f32(dev, &hq, io)?, host_f32(dev, &hk, io)?, host_f32(dev, &hv, io)?);
            let hm = hm.as_ref().zip(mask).map(|(m, (_, s))| (f32s(m), s));
            let x = Inputs { q: &qs, k: &ks, v: &vs, mask: hm, dims, causal, scale };
            let (os, gs) = (host_f32(dev, &ho, io)?, host_f32(dev, &hg, io)?);
            let (os, ls, gs) = (&os[..], f32s(&hl), &gs[..]);
            let (mut hq, mut hk, mut hv) = (dq.host_mut(), dk.host_mut(), dv.host_mut());
            let (mut oq, mut ok, mut ov) = (
                HostOutput::new(dev, &mut hq, n_q, io)?,
                HostOutput::new(dev, &mut hk, n_k, io)?,
                HostOutput::new(dev, &mut hv, n_v, io)?,
            );
            if fast_cpu(dev, &dims) {
                crate::cpu::attention::backward(&x, os, ls, gs, oq.values(), ok.values(), ov.values());
                [oq, ok, ov].into_iter().for_each(HostOutput::finish);
                return Ok(());
            }
            // f64 sums of the reference: twice the gradients, so counted.
            let (mut gq, mut gk, mut gv) = (
                HostVec::filled(dev, n_q, 0.0f64)?,
                HostVec::filled(dev, n_k, 0.0f64)?,
                HostVec::filled(dev, n_v, 0.0f64)?,
            );
            twin::backward(&x, (os, ls, gs), [&mut gq, &mut gk, &mut gv]);
            for (out, vals) in [(oq, gq), (ok, gk), (ov, gv)] {
                let mut out = out;
                for (o, &x) in out.values().iter_mut().zip(vals.iter()) {
                    *o = x as f32;
                }
                out.finish();
            }
            Ok(())
        },
    )?;
    Ok((dq, dk, dv))
}

/// Whether the CPU's fast attention runs: it splits each output by heads'
/// rows, so with an empty dim (no queries, no keys, d or dv = 0) some
/// output would get no rows and keep what its (unzeroed) buffer held; the
/// twin, which writes every word, runs those.
fn fast_cpu(dev: &Device, dims: &AttnDims) -> bool {
    dev.runs_fast_cpu() && [dims.lq, dims.lk, dims.d, dims.dv].iter().all(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host's array capacity must be the shader's, or rows overflow it.
    #[test]
    fn capacity_matches_the_shader() {
        let src = crate::shaders::source("attention");
        let module = naga::front::wgsl::parse_str(&src).expect("attention.wgsl parses");
        let (_, c) = module.constants.iter().find(|(_, c)| c.name.as_deref() == Some("CAP")).expect("CAP");
        match module.global_expressions[c.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => assert_eq!(v as usize, CAP),
            ref e => panic!("CAP is not a folded u32 literal: {e:?}"),
        }
    }
}

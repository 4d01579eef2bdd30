//! Batch normalisation straight on `[A, C, B]` data (`shaders/batch_norm.wgsl`):
//! NCHW is `A = N, C, B = H·W`, so no permute is needed; the same kernels
//! apply the affine part of layer norm (`[rows, columns, 1]`) and group norm.
//!
//! A training step is six launches: statistics in two levels (per-column
//! partials, then one workgroup per channel that also updates the running
//! statistics), one fused forward (normalise, scale, shift, optional residual
//! add and ReLU), the per-channel gradient sums in two levels (they are the
//! weight and bias gradients) and one elementwise input gradient. Every
//! reduction has a fixed order, so results are the same bits on every run.
//!
//! Per-channel statistics travel as one `[2·C]` buffer, `[mean; rstd]`; the
//! gradient sums `Σdy'` and `Σdy'·xhat` as two `[C]` buffers, which are the
//! bias and weight gradients as they are. The CPU twins (`kernels/batch_norm.rs`) accumulate in f64, the more exact of the
//! two and so a fair oracle.
//!
//! Activations may be stored as f16 (mixed precision, as cuDNN's batch norm
//! under PyTorch's AMP): with `io` [`Operands::F16`] the inputs `x`, `dy`,
//! the saved ReLU output and the residual are packed f16, and the outputs
//! `y`, `dx` and the residual gradient are written packed f16, rounded to
//! nearest even from the f32 result (±inf past ±65504, NaN stays NaN: the
//! rounding of [`cast::f32_to_f16`](super::cast::f32_to_f16)). Statistics,
//! weight, bias, running statistics and the gradient sums stay f32, and so
//! does all arithmetic: loads widen exactly. The GPU runs the same kernels
//! with another storage library (`batch_norm_io_f16`, packed u32 words, or
//! `batch_norm_io_f16_native`, WGSL's `f16` where the adapter has
//! `SHADER_F16`; [`with_half_loads`](super::operands::with_half_loads)
//! forces one), and the CPU twins widen and round with the `half` crate.

use super::operands::{host_f32, thread_half_loads, HostOutput};
pub use super::operands::{HalfLoads, Operands};
use super::{f32s, f32s_mut, groups, run, run_fallible, Kind, Params, ParamsDecl};
use crate::gpu::product_store::{switch_on, ProductLaunch, ProductStore, Tail, Takes};
use crate::gpu::{GpuContext, Launch};
use crate::kernels::batch_norm as twin;
pub use crate::kernels::batch_norm::ChannelDims;
use crate::kernels::unary::UnaryOp;
use crate::{Buffer, Error, Result};
use smallvec::{smallvec, SmallVec};

/// `batch_norm.wgsl`'s uniform block.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "batch_norm",
    fields: &[
        ("outer", Kind::U32),
        ("channels", Kind::U32),
        ("inner", Kind::U32),
        ("chunk", Kind::U32),
        ("chunks", Kind::U32),
        ("eps", Kind::F32),
        ("momentum", Kind::F32),
    ],
};

/// Level-1 threads to aim for: enough to fill a large GPU.
const TARGET_THREADS: usize = 65_536;
/// Fewest rows a level-1 thread folds (when the batch allows), which keeps
/// the partials at most 2/16 of the data.
const MIN_CHUNK: usize = 16;

// The launch half of the dims (vec4 lanes, chunk plan, uniform block),
// kept beside the kernels; the shape itself is `kernels/batch_norm.rs`.
impl ChannelDims {
    /// Whether the elementwise kernels take four neighbours of one channel
    /// per thread (vec4 loads): when B is a multiple of 4.
    fn vec4(&self) -> bool {
        self.inner.is_multiple_of(4)
    }

    /// Elements per elementwise thread: four neighbours (vec4), else one
    /// f32 element or one f16 word of two elements (the storage library's `LANES`).
    fn lanes(&self, io: Operands) -> usize {
        match (self.vec4(), io) {
            (true, _) => 4,
            (false, Operands::F32) => 1,
            (false, Operands::F16) => 2,
        }
    }

    /// (rows per level-1 thread, number of such chunks).
    fn plan(&self) -> (usize, usize) {
        let cols = (self.channels * self.inner).max(1);
        let most = (self.outer / MIN_CHUNK).max(1);
        let want = (TARGET_THREADS / cols).clamp(1, most);
        let chunk = self.outer.div_ceil(want).max(1);
        (chunk, self.outer.div_ceil(chunk))
    }

    fn params(&self, eps: f32, momentum: f32) -> Params {
        let (chunk, chunks) = self.plan();
        Params::of(&PARAMS)
            .set_u32("outer", self.outer)
            .set_u32("channels", self.channels)
            .set_u32("inner", self.inner)
            .set_u32("chunk", chunk)
            .set_u32("chunks", chunks)
            .set_f32("eps", eps)
            .set_f32("momentum", momentum)
    }

    /// The element count, or an error naming `op` when it overflows the kernels' u32 indices.
    fn check(&self, op: &'static str) -> Result<usize> {
        let n = self
            .outer
            .checked_mul(self.channels)
            .and_then(|v| v.checked_mul(self.inner))
            .ok_or_else(|| Error::invalid(op, format!("{self:?} overflows")))?;
        super::check_u32(op, n + 256)?;
        Ok(n)
    }
}

/// How `x` becomes the normalised `xhat`.
#[derive(Clone, Copy)]
pub enum Centre<'a> {
    /// `x` is already normalised (layer and group norm's affine part).
    Normalized,
    /// `xhat = (x − mean) · rstd` with the `[mean; rstd]` buffer of `2·C` f32.
    Stats(&'a Buffer),
}

impl Centre<'_> {
    fn code(&self) -> f64 {
        match self {
            Centre::Normalized => 0.0,
            Centre::Stats(_) => 1.0,
        }
    }

    /// Host copy of the per-channel (mean, rstd).
    fn host(&self, c: usize) -> Vec<(f64, f64)> {
        match self {
            Centre::Normalized => vec![(0.0, 1.0); c],
            Centre::Stats(s) => {
                let h = s.host();
                let v = f32s(&h);
                (0..c).map(|i| (v[i] as f64, v[c + i] as f64)).collect()
            }
        }
    }

    fn check(&self, op: &'static str, d: &ChannelDims) -> Result<()> {
        if let Centre::Stats(s) = self {
            s.check_len(op, "stats", 2 * d.channels, 4)?;
        }
        Ok(())
    }
}

/// The running statistics a training step updates.
#[derive(Clone, Copy)]
pub struct Running<'a> {
    /// `[C]` running mean, updated in place.
    pub mean: &'a Buffer,
    /// `[C]` running (unbiased) variance, updated in place.
    pub var: &'a Buffer,
    /// `running = (1 − momentum)·running + momentum·batch` (PyTorch: 0.1).
    pub momentum: f32,
}

/// Batch norm's forward launch, rebuilt for the tail the fuser finds
/// (`gpu/tails.rs`): a residual added (the `_res` entries), then a ReLU
/// (`RELU`), as a ResNet block ends: `relu(bn(x) + shortcut)`.
struct ForwardStore {
    shader: &'static str,
    /// The `forward4` entries (a channel's run of elements is a multiple of 4).
    vec4: bool,
    /// f16 activations: a tail rounds where the unfused ops' casts do
    /// (`ROUND_TAIL`).
    f16: bool,
    constants: smallvec::SmallVec<[(&'static str, f64); 32]>,
    params: smallvec::SmallVec<[u32; 64]>,
    workgroups: u32,
}

impl ForwardStore {
    fn entry(&self, residual: bool) -> &'static str {
        match (self.vec4, residual) {
            (false, false) => "forward",
            (false, true) => "forward_res",
            (true, false) => "forward4",
            (true, true) => "forward4_res",
        }
    }
}

impl ProductStore for ForwardStore {
    fn recorded(&self) -> (&'static str, &'static str, u32) {
        (self.shader, self.entry(false), self.workgroups)
    }

    fn takes(&self) -> Takes {
        let rounds = self.f16;
        Takes { relu: true, activation: false, residual: true, residual_first: true, relu_grad: false, rounds }
    }

    fn constants(&self) -> &[(&'static str, f64)] {
        &self.constants
    }

    fn launch(&self, tail: &Tail) -> ProductLaunch {
        let mut constants = self.constants.clone();
        switch_on(&mut constants, &[("RELU", tail.activation == Some(UnaryOp::Relu)), ("ROUND_TAIL", tail.rounds)]);
        ProductLaunch {
            shader: self.shader,
            entry: self.entry(tail.residual),
            constants,
            params: self.params.clone(),
            windows: smallvec::SmallVec::new(),
            workgroups: self.workgroups,
            // x, the statistics, the weight and the bias (x where absent),
            // then the residual: bindings 1-5.
            inputs: 4 + usize::from(tail.residual),
            residual_slot: Some(4),
            relu_grad_slot: None,
            binds_pre: false,
        }
    }
}

/// One launch of a batch-norm kernel. Inline lists: a launch is built per
/// layer and step, and the hot path allocates nothing per launch.
struct Kernel<'a> {
    shader: &'static str,
    entry: &'static str,
    constants: SmallVec<[(&'static str, f64); 4]>,
    params: Params,
    inputs: SmallVec<[&'a Buffer; 8]>,
    outputs: SmallVec<[&'a Buffer; 4]>,
    workgroups: u32,
}

fn launch(g: &GpuContext, k: Kernel) -> Result<()> {
    let ins: smallvec::SmallVec<[&wgpu::Buffer; 8]> = k.inputs.iter().map(|b| b.wgpu()).collect();
    let outs: smallvec::SmallVec<[&wgpu::Buffer; 8]> = k.outputs.iter().map(|b| b.wgpu()).collect();
    super::launch::dispatch_launch(
        g,
        &Launch {
            shader: k.shader,
            entry: k.entry,
            constants: &k.constants,
            params: k.params.finish(),
            inputs: &ins,
            outputs: &outs,
            workgroups: k.workgroups,
        },
        &[],
    )
}

/// The kernel file for activations stored as `io` on `g`, whose inputs of
/// `n` elements are read: `batch_norm.wgsl`, its variant reading f32 inputs
/// through textures where the device wants that (CPU adapters, see
/// `gpu/texture_operands.rs`), or its f16 variant with native or packed
/// loads (this thread's [`HalfLoads`], `Auto` unless
/// [`with_half_loads`](super::operands::with_half_loads) says otherwise).
/// The kernels that read no activation always use the f32 file.
fn io_shader(g: &GpuContext, io: Operands, op: &'static str, n: usize) -> Result<&'static str> {
    Ok(match io {
        Operands::F32 => g.texture_variant("batch_norm", [n as u64 * 4]),
        Operands::F16 if thread_half_loads().native(g, op)? => "batch_norm_f16_native",
        Operands::F16 => "batch_norm_f16",
    })
}

/// Level-2 workgroup size for `items` partials per channel.
fn level2_wg(d: &ChannelDims) -> f64 {
    let (_, chunks) = d.plan();
    if chunks * d.inner > 1024 {
        256.0
    } else {
        64.0
    }
}

/// Training statistics of `x` (`[A, C, B]`, stored as `io`): returns the `[mean; rstd]`
/// buffer (`2·C`, biased variance, `rstd = 1/sqrt(var + eps)`) and, when
/// `running` is given, updates its mean and variance in place
/// (`(1 − momentum)·running + momentum·stat`, with the *unbiased* variance,
/// as PyTorch), so that their buffers stay the same from step to step. Two
/// launches.
///
/// Errors when a channel has no values; one value per channel gives an
/// infinite unbiased variance (PyTorch refuses to train on it; so does autograd).
pub fn batch_norm_stats(
    x: &Buffer,
    d: ChannelDims,
    eps: f32,
    running: Option<Running>,
    io: Operands,
) -> Result<Buffer> {
    const OP: &str = "batch_norm_stats";
    let n = d.check(OP)?;
    if d.count() == 0 || d.channels == 0 {
        return Err(Error::invalid(OP, format!("{d:?} has no values per channel to take statistics of")));
    }
    x.check_len(OP, "input", n, io.size())?;
    let dev = x.device();
    let c = d.channels;
    if let Some(r) = &running {
        r.mean.check_len(OP, "running_mean", c, 4)?;
        r.var.check_len(OP, "running_var", c, 4)?;
        Buffer::check_same_device(OP, dev, &[r.mean, r.var])?;
    }
    let stats = Buffer::alloc(dev, 2 * c as u64 * 4)?;
    let momentum = running.map_or(0.0, |r| r.momentum);
    run_fallible(
        dev,
        |g| {
            if super::past_limit(g, [x]) {
                return stats_in_chunks(g, x, d, (eps, running), io, &stats);
            }
            let (_, chunks) = d.plan();
            let part = Buffer::alloc(dev, (chunks * c * d.inner) as u64 * 8)?;
            launch(
                g,
                Kernel {
                    shader: io_shader(g, io, OP, n)?,
                    entry: "stats_partial",
                    constants: smallvec![],
                    params: d.params(eps, momentum),
                    inputs: smallvec![x],
                    outputs: smallvec![&part],
                    workgroups: groups(chunks * c * d.inner, 256),
                },
            )?;
            let wg = level2_wg(&d);
            let (entry, outputs) = match &running {
                Some(r) => ("stats_final_running", smallvec![&stats, r.mean, r.var]),
                None => ("stats_final", smallvec![&stats]),
            };
            launch(
                g,
                Kernel {
                    shader: "batch_norm",
                    entry,
                    constants: smallvec![("WG", wg)],
                    params: d.params(eps, momentum),
                    inputs: smallvec![&part],
                    outputs,
                    workgroups: groups(c, 1),
                },
            )
        },
        || {
            let xs = x.host();
            let xs = host_f32(dev, &xs, io)?;
            let xs: &[f32] = &xs;
            let moments = match dev.runs_fast_cpu() {
                true => crate::cpu::batch_norm::moments(xs, &d),
                false => twin::moments(xs, &d),
            };
            let mut s = stats.host_mut();
            twin::write_stats(&moments, &d, eps, f32s_mut(&mut s));
            if let Some(r) = &running {
                let (mut rm, mut rv) = (r.mean.host_mut(), r.var.host_mut());
                twin::update_running(&moments, &d, r.momentum, f32s_mut(&mut rm), f32s_mut(&mut rv));
            }
            Ok(())
        },
    )?;
    Ok(stats)
}

/// [`batch_norm_stats`] of an input past the binding limit, from the
/// gradient sums run on chunks of rows (`batch_norm_split.rs`'s module
/// docs say why these sums), written into `stats` (`[mean; rstd]`) and,
/// with `running`, the running statistics updated in place.
fn stats_in_chunks(
    g: &GpuContext,
    x: &Buffer,
    d: ChannelDims,
    (eps, running): (f32, Option<Running>),
    io: Operands,
    stats: &Buffer,
) -> Result<()> {
    use super::batch_norm_split::{grad_sums, scaled};
    use super::binary::{binary, BinaryOp};
    let (c, m) = (d.channels, d.count() as f32);
    let (sum, _) = grad_sums(g, (x, x, None), d, io, |dy, xc, _, sub| {
        batch_norm_grad_sums(dy, xc, None, sub, Centre::Normalized, io)
    })?;
    let mean = scaled(&sum, c, 1.0 / m)?;
    // [mean; 1]: x̂ = x − mean, so Σdy'·x̂ with dy = x is Σx·(x − mean).
    let centred = Buffer::alloc(x.device(), 2 * c as u64 * 4)?;
    g.copy_range(mean.wgpu(), 0, centred.wgpu(), 0, c as u64 * 4)?;
    let ones = super::fill::fill(x.device(), c, 1.0)?;
    g.copy_range(ones.wgpu(), 0, centred.wgpu(), c as u64 * 4, c as u64 * 4)?;
    let centre = Centre::Stats(&centred);
    let (_, m2) =
        grad_sums(g, (x, x, None), d, io, |dy, xc, _, sub| batch_norm_grad_sums(dy, xc, None, sub, centre, io))?;
    let batch = batch_norm_eval_stats(&mean, &scaled(&m2, c, 1.0 / m)?, c, eps)?;
    g.copy_range(batch.wgpu(), 0, stats.wgpu(), 0, 2 * c as u64 * 4)?;
    if let Some(r) = running {
        let whole = crate::layout::Layout::contiguous(&[c]);
        let mix = |old: &Buffer, batch: &Buffer, dst: &Buffer| {
            let (kept, added) = (scaled(old, c, 1.0 - r.momentum)?, scaled(batch, c, r.momentum)?);
            let (sum, _) = binary(BinaryOp::Add, &kept, &whole, &added, &whole)?;
            g.copy_range(sum.wgpu(), 0, dst.wgpu(), 0, c as u64 * 4)
        };
        // The mix is computed before the copy over the old values is recorded.
        mix(r.mean, &mean, r.mean)?;
        // The running variance is the unbiased one, as PyTorch's.
        mix(r.var, &scaled(&m2, c, 1.0 / (m - 1.0))?, r.var)?;
    }
    Ok(())
}

/// Evaluation statistics: `[running_mean; 1/sqrt(running_var + eps)]` (`2·C`),
/// one small launch.
pub fn batch_norm_eval_stats(mean: &Buffer, var: &Buffer, channels: usize, eps: f32) -> Result<Buffer> {
    const OP: &str = "batch_norm_eval_stats";
    mean.check_len(OP, "running_mean", channels, 4)?;
    var.check_len(OP, "running_var", channels, 4)?;
    let dev = mean.device();
    Buffer::check_same_device(OP, dev, &[var])?;
    let stats = Buffer::alloc(dev, 2 * channels as u64 * 4)?;
    let d = ChannelDims { outer: 1, channels, inner: 1 };
    run(
        dev,
        |g| {
            launch(
                g,
                Kernel {
                    shader: "batch_norm",
                    entry: "eval_stats",
                    constants: smallvec![],
                    params: d.params(eps, 0.0),
                    inputs: smallvec![mean, var],
                    outputs: smallvec![&stats],
                    workgroups: groups(channels, 64),
                },
            )
        },
        || {
            let (m, v, mut s) = (mean.host(), var.host(), stats.host_mut());
            twin::eval_stats(&f32s(&m)[..channels], &f32s(&v)[..channels], eps, f32s_mut(&mut s));
        },
    )?;
    Ok(stats)
}

/// The fused forward, one launch: `y = act(xhat · weight + bias + residual)`
/// per element of `x` (`[A, C, B]`), with `weight`/`bias` (`[C]`) and
/// `residual` (same shape as `x`) each optional, and `act` a ReLU when
/// `relu` (the unary table's: NaN becomes 0). `x`, `residual` and the
/// returned `y` are stored as `io`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward(
    x: &Buffer,
    d: ChannelDims,
    centre: Centre,
    weight: Option<&Buffer>,
    bias: Option<&Buffer>,
    residual: Option<&Buffer>,
    relu: bool,
    io: Operands,
) -> Result<Buffer> {
    const OP: &str = "batch_norm_forward";
    let n = d.check(OP)?;
    x.check_len(OP, "input", n, io.size())?;
    centre.check(OP, &d)?;
    let dev = x.device();
    for (b, what, len, size) in
        [(weight, "weight", d.channels, 4), (bias, "bias", d.channels, 4), (residual, "residual", n, io.size())]
    {
        if let Some(b) = b {
            b.check_len(OP, what, len, size)?;
            Buffer::check_same_device(OP, dev, &[b])?;
        }
    }
    let y = Buffer::alloc_overwritten(dev, n as u64 * io.size())?;
    run_fallible(
        dev,
        |g| {
            let stats = match centre {
                Centre::Stats(s) => s,
                Centre::Normalized => x,
            };
            let mut inputs = smallvec![x, stats, weight.unwrap_or(x), bias.unwrap_or(x)];
            inputs.extend(residual);
            if super::past_limit(g, [x, &y]) {
                return super::batch_norm_split::forward(g, (x, residual), d, io, &y, |xc, rc, sub| {
                    batch_norm_forward(xc, sub, centre, weight, bias, rc, relu, io)
                });
            }
            let params = d.params(0.0, 0.0);
            let store = ForwardStore {
                shader: io_shader(g, io, OP, n)?,
                vec4: d.vec4(),
                f16: io == Operands::F16,
                constants: smallvec::smallvec![
                    ("CENTRE", centre.code()),
                    ("HAS_WEIGHT", weight.is_some() as u8 as f64),
                    ("HAS_BIAS", bias.is_some() as u8 as f64),
                    ("RELU", relu as u8 as f64),
                    ("ROUND_TAIL", 0.0),
                ],
                params: params.finish().into(),
                workgroups: groups(n.div_ceil(d.lanes(io)), 256),
            };
            // A plain forward waits in the fuser's run, which may merge an
            // add and a ReLU reading it into its store (`gpu/tails.rs`).
            if residual.is_none() && !relu && g.fusion_enabled() {
                return super::launch::dispatch_product(g, &inputs, &y, n, Box::new(store));
            }
            let l = store.launch(&Tail { residual: residual.is_some(), ..Tail::default() });
            launch(
                g,
                Kernel {
                    shader: l.shader,
                    entry: l.entry,
                    constants: l.constants.iter().copied().collect(),
                    params,
                    inputs,
                    outputs: smallvec![&y],
                    workgroups: l.workgroups,
                },
            )
        },
        || {
            let ms = centre.host(d.channels);
            let (xs, mut ys) = (x.host(), y.host_mut());
            let xs = host_f32(dev, &xs, io)?;
            let mut out = HostOutput::new(dev, &mut ys, n, io)?;
            let w = weight.map(|b| b.host());
            let bi = bias.map(|b| b.host());
            let r = residual.map(|b| b.host());
            let r = r.as_ref().map(|h| host_f32(dev, h, io)).transpose()?;
            let (w, bi, r) = (w.as_ref().map(|h| f32s(h)), bi.as_ref().map(|h| f32s(h)), r.as_deref());
            match dev.runs_fast_cpu() {
                true => crate::cpu::batch_norm::forward(&xs, &d, &ms, w, bi, r, relu, out.values()),
                false => twin::forward(&xs, &d, &ms, w, bi, r, relu, out.values()),
            }
            out.finish();
            Ok(())
        },
    )?;
    Ok(y)
}

/// The per-channel gradient sums, two launches: returns `(Σdy', Σdy'·xhat)`
/// (`[C]` each), which are the bias and the weight gradients. `dy'` is `dy`, or,
/// when `relu_out` (the forward's output) is given, `dy` masked by
/// `relu_out > 0`. `dy`, `x` and `relu_out` are stored as `io`; the sums are f32.
pub fn batch_norm_grad_sums(
    dy: &Buffer,
    x: &Buffer,
    relu_out: Option<&Buffer>,
    d: ChannelDims,
    centre: Centre,
    io: Operands,
) -> Result<(Buffer, Buffer)> {
    const OP: &str = "batch_norm_grad_sums";
    let n = d.check(OP)?;
    let dev = dy.device();
    dy.check_len(OP, "output gradient", n, io.size())?;
    x.check_len(OP, "input", n, io.size())?;
    Buffer::check_same_device(OP, dev, &[x])?;
    if let Some(y) = relu_out {
        y.check_len(OP, "output", n, io.size())?;
        Buffer::check_same_device(OP, dev, &[y])?;
    }
    centre.check(OP, &d)?;
    let c = d.channels;
    if d.count() == 0 {
        return Ok((super::fill::fill(dev, c, 0.0)?, super::fill::fill(dev, c, 0.0)?));
    }
    let (dbias, dweight) = (Buffer::alloc(dev, c as u64 * 4)?, Buffer::alloc(dev, c as u64 * 4)?);
    let constants = smallvec![("CENTRE", centre.code()), ("RELU", relu_out.is_some() as u8 as f64)];
    run_fallible(
        dev,
        |g| {
            if super::past_limit(g, [dy, x]) {
                let (db, dw) = super::batch_norm_split::grad_sums(g, (dy, x, relu_out), d, io, |gc, xc, yc, sub| {
                    batch_norm_grad_sums(gc, xc, yc, sub, centre, io)
                })?;
                g.copy_range(db.wgpu(), 0, dbias.wgpu(), 0, c as u64 * 4)?;
                return g.copy_range(dw.wgpu(), 0, dweight.wgpu(), 0, c as u64 * 4);
            }
            let (_, chunks) = d.plan();
            let part = Buffer::alloc(dev, (chunks * c * d.inner) as u64 * 8)?;
            let stats = match centre {
                Centre::Stats(s) => s,
                Centre::Normalized => x,
            };
            launch(
                g,
                Kernel {
                    shader: io_shader(g, io, OP, n)?,
                    entry: "grad_partial",
                    constants: constants.clone(),
                    params: d.params(0.0, 0.0),
                    inputs: smallvec![dy, x, relu_out.unwrap_or(x), stats],
                    outputs: smallvec![&part],
                    workgroups: groups(chunks * c * d.inner, 256),
                },
            )?;
            launch(
                g,
                Kernel {
                    shader: "batch_norm",
                    entry: "grad_final",
                    constants: smallvec![("WG", level2_wg(&d))],
                    params: d.params(0.0, 0.0),
                    inputs: smallvec![&part],
                    outputs: smallvec![&dbias, &dweight],
                    workgroups: groups(c, 1),
                },
            )
        },
        || {
            let ms = centre.host(c);
            let (gs, xs, mut db, mut dw) = (dy.host(), x.host(), dbias.host_mut(), dweight.host_mut());
            let ys = relu_out.map(|b| b.host());
            let (gs, xs, db, dw) =
                (host_f32(dev, &gs, io)?, host_f32(dev, &xs, io)?, f32s_mut(&mut db), f32s_mut(&mut dw));
            let ys = ys.as_ref().map(|h| host_f32(dev, h, io)).transpose()?;
            let (gs, xs, ys): (&[f32], &[f32], _) = (&gs, &xs, ys.as_deref());
            let acc = match dev.runs_fast_cpu() {
                true => crate::cpu::batch_norm::grad_sums(gs, xs, ys, &d, &ms),
                false => twin::grad_sums(gs, xs, ys, &d, &ms),
            };
            for (ch, (s, sx)) in acc.into_iter().enumerate() {
                db[ch] = s as f32;
                dw[ch] = sx as f32;
            }
            Ok(())
        },
    )?;
    Ok((dbias, dweight))
}

/// The input gradient, one elementwise launch. With `sums` (`(Σdy',
/// Σdy'·xhat)` from [`batch_norm_grad_sums`]) the training formula, where the statistics
/// depend on `x`: `dx = w·rstd·(dy' − Σdy'/M − xhat·Σdy'xhat/M)`, `M` the
/// values per channel; without, the per-channel affine one `dx = w·rstd·dy'`
/// (evaluation, or a normalised input whose statistics are handled
/// elsewhere). Also returns `dy'`, the residual's gradient, when `residual`.
/// `dy`, `x`, `relu_out` and both results are stored as `io`; weight and
/// sums are f32.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    dy: &Buffer,
    x: &Buffer,
    relu_out: Option<&Buffer>,
    d: ChannelDims,
    centre: Centre,
    weight: Option<&Buffer>,
    sums: Option<(&Buffer, &Buffer)>,
    residual: bool,
    io: Operands,
) -> Result<(Buffer, Option<Buffer>)> {
    const OP: &str = "batch_norm_backward";
    let n = d.check(OP)?;
    let dev = dy.device();
    dy.check_len(OP, "output gradient", n, io.size())?;
    x.check_len(OP, "input", n, io.size())?;
    centre.check(OP, &d)?;
    let (dbias, dweight) = (sums.map(|s| s.0), sums.map(|s| s.1));
    for (b, what, len, size) in [
        (relu_out, "output", n, io.size()),
        (weight, "weight", d.channels, 4),
        (dbias, "Σdy'", d.channels, 4),
        (dweight, "Σdy'·xhat", d.channels, 4),
    ] {
        if let Some(b) = b {
            b.check_len(OP, what, len, size)?;
            Buffer::check_same_device(OP, dev, &[b])?;
        }
    }
    if sums.is_some() && matches!(centre, Centre::Normalized) {
        return Err(Error::invalid(OP, "the training formula needs the batch statistics (Centre::Stats)"));
    }
    let dx = Buffer::alloc_overwritten(dev, n as u64 * io.size())?;
    let dres = if residual { Some(Buffer::alloc_overwritten(dev, n as u64 * io.size())?) } else { None };
    run_fallible(
        dev,
        |g| {
            let stats = match centre {
                Centre::Stats(s) => s,
                Centre::Normalized => x,
            };
            let mut outputs = smallvec![&dx];
            outputs.extend(dres.as_ref());
            if super::past_limit(g, [dy, x, &dx]) {
                let (ins, outs) = ((dy, x, relu_out), (&dx, dres.as_ref()));
                return super::batch_norm_split::backward(g, ins, (d, sums), io, outs, |gc, xc, yc, sub, part| {
                    batch_norm_backward(gc, xc, yc, sub, centre, weight, part, residual, io)
                });
            }
            launch(
                g,
                Kernel {
                    shader: io_shader(g, io, OP, n)?,
                    entry: match (d.vec4(), residual) {
                        (false, false) => "backward",
                        (false, true) => "backward_res",
                        (true, false) => "backward4",
                        (true, true) => "backward4_res",
                    },
                    constants: smallvec![
                        ("CENTRE", centre.code()),
                        ("HAS_WEIGHT", weight.is_some() as u8 as f64),
                        ("RELU", relu_out.is_some() as u8 as f64),
                        ("TRAIN", sums.is_some() as u8 as f64),
                    ],
                    params: d.params(0.0, 0.0),
                    inputs: smallvec![
                        dy,
                        x,
                        relu_out.unwrap_or(x),
                        stats,
                        weight.unwrap_or(x),
                        dbias.unwrap_or(x),
                        dweight.unwrap_or(x),
                    ],
                    outputs,
                    workgroups: groups(n.div_ceil(d.lanes(io)), 256),
                },
            )
        },
        || {
            let c = d.channels;
            let ms = centre.host(c);
            let (gs, xs, mut dxh) = (dy.host(), x.host(), dx.host_mut());
            let (gs, xs) = (host_f32(dev, &gs, io)?, host_f32(dev, &xs, io)?);
            let ys = relu_out.map(|b| b.host());
            let ys = ys.as_ref().map(|h| host_f32(dev, h, io)).transpose()?;
            let ys = ys.as_deref();
            let w = weight.map(|b| b.host());
            let w = w.as_ref().map(|h| f32s(h));
            let s = sums.map(|(a, b)| (a.host(), b.host()));
            let s = s.as_ref().map(|(a, b)| (f32s(a), f32s(b)));
            let mut rh = dres.as_ref().map(|b| b.host_mut());
            let mut out = HostOutput::new(dev, &mut dxh, n, io)?;
            let mut rout = rh.as_mut().map(|h| HostOutput::new(dev, h, n, io)).transpose()?;
            let r = rout.as_mut().map(|r| r.values());
            match dev.runs_fast_cpu() {
                true => crate::cpu::batch_norm::backward(&gs, &xs, ys, &d, &ms, w, s, out.values(), r),
                false => twin::backward(&gs, &xs, ys, &d, &ms, w, s, out.values(), r),
            }
            out.finish();
            if let Some(r) = rout {
                r.finish();
            }
            Ok(())
        },
    )?;
    Ok((dx, dres))
}

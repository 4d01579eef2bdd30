//! Recurrent cells over a whole sequence (`shaders/recurrent.wgsl`): the
//! Elman RNN (tanh or relu), LSTM and GRU of `torch.nn`, one direction.
//!
//! The caller computes `xw_t = x_t W_ihᵀ + b_ih` for every time step at once
//! (one big matmul); the recurrence is left here. Each step is one matmul
//! `hw = h_prev @ W_hhᵀ` (read through a view of the saved states, no copy)
//! and ONE fused kernel for everything after it, `b_hh` included; the backward
//! step is one fused kernel and one matmul `dh_prev = dhw_t @ W_hh`, and the
//! weight gradient is a single matmul over all steps after the loop. On a GPU
//! the sequence only records launches: nothing is read back. There the
//! LSTM runs each step's cell in the store of its product instead
//! (`shaders/matmul_store_cell.wgsl`): one launch per step each way; but
//! on GPUs that are no CPU adapter a step's product with few outputs runs
//! as a batch of slices of K that the cell kernel adds ([`step_slices`]).
//!
//! PyTorch's gate math, per direction, with `a = xw_t + h_prev W_hhᵀ + b_hh`
//! split into gate blocks of `H`:
//!
//! * RNN: `h = act(a)`, act = tanh or relu.
//! * LSTM (blocks i, f, g, o): `c = σ(a_f)·c_prev + σ(a_i)·tanh(a_g)`,
//!   `h = σ(a_o)·tanh(c)`.
//! * GRU (blocks r, z, n): `r = σ(a_r)`, `z = σ(a_z)`,
//!   `n = tanh(xw_n + r·(hw_n + b_hn))` (the reset gate scales the recurrent
//!   part *with* its bias), `h = (1 − z)·n + z·h_prev`.
//!
//! A reverse sequence runs t = T−1 down to 0 (the backward half of a
//! bidirectional layer), and still writes `y[t]` at time index t. The CPU
//! twins do the gate math in f64: the more exact side, a fair oracle (the fast
//! CPU path, `cpu::recurrent`, works in f32 like the kernel).

#[cfg(test)]
use super::matmul::largest_divisor;
use super::matmul::{slices_for, MatmulKernel};
use super::{copy, dispatch, f32s, f32s_mut, fill, groups, matmul, reduce, run, Kind, Params, ParamsDecl};
use crate::gpu::GpuContext;
pub use crate::kernels::recurrent::RecurrentKind;
use crate::kernels::recurrent::{self as twin, BackwardIn, SeqDims, SAVED};
use crate::layout::Layout;
use crate::{Buffer, Error, Result};

/// Threads per workgroup of both entry points (their `@workgroup_size`).
const WG: usize = 256;

// Construction checks the kernels' u32 limits and the uniform block is
// the kernel's, so both stay here; the layout is `kernels/recurrent.rs`.
impl SeqDims {
    fn new(
        op: &'static str,
        kind: RecurrentKind,
        steps: usize,
        batch: usize,
        hidden: usize,
        reverse: bool,
    ) -> Result<Self> {
        if hidden == 0 {
            return Err(Error::invalid(op, format!("{} with hidden size 0", kind.name())));
        }
        let d = SeqDims { kind, steps, batch, hidden, reverse };
        let too_big =
            || Error::invalid(op, format!("{} sequence T={steps}, B={batch}, H={hidden} overflows", kind.name()));
        // The largest index any buffer of the sequence needs (xw and saved gates, or states).
        let gates = steps.checked_mul(batch).and_then(|n| n.checked_mul(SAVED * hidden)).ok_or_else(too_big)?;
        let states = (steps + 1).checked_mul(2 * batch).and_then(|n| n.checked_mul(hidden)).ok_or_else(too_big)?;
        let weights = hidden.checked_mul(d.gh()).ok_or_else(too_big)?;
        super::check_u32(op, gates.max(states).max(weights))?;
        Ok(d)
    }

    fn params(&self, t: usize, has_bias: bool, has_rec: bool, dy_offset: usize) -> Params {
        Params::of(&PARAMS)
            .set_u32("t", t)
            .set_u32("steps", self.steps)
            .set_u32("batch", self.batch)
            .set_u32("hidden", self.hidden)
            .set_u32("reverse", self.reverse as usize)
            .set_u32("has_bias", has_bias as usize)
            .set_u32("has_rec", has_rec as usize)
            .set_u32("dy_offset", dy_offset)
    }
}

/// What [`recurrent_forward`] keeps for [`recurrent_backward`], and where the
/// outputs are: all states in one buffer (handles are cheap to clone).
#[derive(Clone, Debug)]
pub struct RecurrentSaved {
    dims: SeqDims,
    has_bias: bool,
    states: Buffer,
    gates: Option<Buffer>,
}

impl RecurrentSaved {
    /// The cell.
    pub fn kind(&self) -> RecurrentKind {
        self.dims.kind
    }

    /// Sequence length T.
    pub fn steps(&self) -> usize {
        self.dims.steps
    }

    /// Batch size B.
    pub fn batch(&self) -> usize {
        self.dims.batch
    }

    /// Hidden size H.
    pub fn hidden(&self) -> usize {
        self.dims.hidden
    }

    /// Whether the sequence ran from t = T−1 down to 0.
    pub fn reverse(&self) -> bool {
        self.dims.reverse
    }

    /// Whether the forward had a `b_hh` (and the backward returns `db_hh`).
    pub fn has_bias(&self) -> bool {
        self.has_bias
    }

    /// Every state, dense with shape [`states_shape`](Self::states_shape):
    /// `[K·(T+1), B, H]`, K = 2 for the LSTM (hidden states, then cell
    /// states) and 1 otherwise. In each block of T+1 slots the initial state
    /// is slot 0 (forward) or T (reverse) and the state after time t is slot
    /// t+1 (forward) or t (reverse): the outputs are one contiguous run.
    pub fn states(&self) -> &Buffer {
        &self.states
    }

    /// Shape of [`states`](Self::states).
    pub fn states_shape(&self) -> [usize; 3] {
        let d = &self.dims;
        [d.blocks() * (d.steps + 1), d.batch, d.hidden]
    }

    /// First slot of the outputs y in [`states`](Self::states): y is slots
    /// `output_start()..output_start() + T` of dim 0.
    pub fn output_start(&self) -> usize {
        usize::from(!self.dims.reverse)
    }

    /// Slot of h_n along dim 0 of [`states`](Self::states); c_n (LSTM) is
    /// T + 1 slots later.
    pub fn final_slot(&self) -> usize {
        self.dims.last_slot()
    }

    /// The outputs `y`: a `[T, B, H]` view of [`states`](Self::states).
    pub fn output_layout(&self) -> Layout {
        let d = &self.dims;
        let mut l = Layout::contiguous(&[d.steps, d.batch, d.hidden]);
        l.offset = self.output_start() * d.bh();
        l
    }

    /// The final hidden state `h_n`: a `[B, H]` view of [`states`](Self::states).
    pub fn h_n_layout(&self) -> Layout {
        self.dims.slot_view(0, self.dims.last_slot())
    }

    /// The final cell state `c_n` (LSTM only): a `[B, H]` view of [`states`](Self::states).
    pub fn c_n_layout(&self) -> Option<Layout> {
        (self.dims.kind == RecurrentKind::Lstm).then(|| self.dims.slot_view(1, self.dims.last_slot()))
    }

    /// The gate values saved per time, `[T, B, 4H]` (LSTM i, f, g, o; GRU
    /// r, z, n and `hn = hw_n + b_hn`); `None` for the RNN, whose backward
    /// needs only the outputs.
    pub fn gates(&self) -> Option<&Buffer> {
        self.gates.as_ref()
    }
}

/// Gradients from [`recurrent_backward`], all dense.
#[derive(Debug)]
pub struct RecurrentGrads {
    /// Gradient of `xw`, `[T, B, G·H]`.
    pub dxw: Buffer,
    /// Gradient of `W_hh`, `[G·H, H]`.
    pub dw_hh: Buffer,
    /// Gradient of `b_hh`, `[G·H]`; `None` when the forward had no `b_hh`.
    pub db_hh: Option<Buffer>,
    /// Gradient of `h0`, `[B, H]`.
    pub dh0: Buffer,
    /// Gradient of `c0`, `[B, H]` (LSTM only).
    pub dc0: Option<Buffer>,
}

/// `recurrent.wgsl`'s `Params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "recurrent",
    fields: &[
        ("t", Kind::U32),
        ("steps", Kind::U32),
        ("batch", Kind::U32),
        ("hidden", Kind::U32),
        ("reverse", Kind::U32),
        ("has_bias", Kind::U32),
        ("has_rec", Kind::U32),
        ("dy_offset", Kind::U32),
    ],
};

/// Records one fused kernel launch over the `B·H` units; its `hw` or
/// `dh_rec` input holds `parts` slices to add ([`step_slices`]).
fn launch(
    g: &GpuContext,
    d: &SeqDims,
    (entry, parts): (&'static str, usize),
    params: Params,
    inputs: &[&Buffer],
    outputs: &[&Buffer],
) -> Result<()> {
    let constants = [("KIND", d.kind.code() as f64), ("PARTS", parts as f64)];
    // On CPU adapters the inputs are read through textures: a whole-sequence
    // input (xw, dy, the states, the saved gates) is copied once and bound
    // again at every step while nothing writes it (texture_operands.rs).
    let shader = g.texture_variant("recurrent", inputs.iter().map(|b| b.len_bytes()));
    dispatch(g, shader, entry, &constants, &params, inputs, outputs, groups(d.bh(), WG))
}

/// One forward step at time `t`: the cell math after `hw = h_prev @ W_hhᵀ`
/// (`hw.1` slices of it to add, [`sliced_product`]), writing the new states
/// into `states` and the gate values into `saved` (`saved` is a placeholder
/// for the RNN). Buffers are whole-sequence.
fn cell_forward(
    d: &SeqDims,
    t: usize,
    xw: &Buffer,
    (hw, parts): (&Buffer, usize),
    b_hh: Option<&Buffer>,
    states: &Buffer,
    saved: &Buffer,
) -> Result<()> {
    run(
        xw.device(),
        // Without a bias `hw` is bound again as a placeholder (two read-only bindings may alias).
        |g| {
            launch(
                g,
                d,
                ("cell_forward", parts),
                d.params(t, b_hh.is_some(), false, 0),
                &[xw, hw, b_hh.unwrap_or(hw)],
                &[states, saved],
            )
        },
        || {
            debug_assert_eq!(parts, 1, "products are cut into slices on GPUs only");
            let (hx, hh) = (xw.host(), hw.host());
            let hb = b_hh.map(|b| b.host());
            let (mut hs, mut hg) = (states.host_mut(), saved.host_mut());
            let (xs, hws, bs) = (f32s(&hx), f32s(&hh), hb.as_ref().map(|b| f32s(b)));
            let (st, sv) = (f32s_mut(&mut hs), f32s_mut(&mut hg));
            if xw.device().runs_fast_cpu() {
                return crate::cpu::recurrent::forward(d, t, xs, hws, bs, st, sv);
            }
            twin::forward_step(d, t, xs, hws, bs, st, sv);
        },
    )
}

/// One backward step at time `t` (see `recurrent.wgsl`): reads `dy[t]`, the
/// carries and `dh_rec` (the previous step's `dhw @ W_hh` in as many
/// slices as it says, `None` on the first step), writes `dxw[t]`, `dhw[t]`
/// (GRU) and the new carries. `placeholder` is bound for the buffers a
/// kind does not use.
#[allow(clippy::too_many_arguments)]
fn cell_backward(
    d: &SeqDims,
    t: usize,
    (dy, dy_offset): (&Buffer, usize),
    dh_rec: Option<(&Buffer, usize)>,
    saved: &RecurrentSaved,
    dxw: &Buffer,
    dhw: Option<&Buffer>,
    carry: &Buffer,
    placeholder: &Buffer,
) -> Result<()> {
    let states = &saved.states;
    run(
        dy.device(),
        |g| {
            let (rec, parts) = dh_rec.unwrap_or((dy, 1));
            let ins = [dy, rec, states, saved.gates.as_ref().unwrap_or(states)];
            launch(
                g,
                d,
                ("cell_backward", parts),
                d.params(t, false, dh_rec.is_some(), dy_offset),
                &ins,
                &[dxw, dhw.unwrap_or(placeholder), carry],
            )
        },
        || {
            debug_assert!(dh_rec.is_none_or(|r| r.1 == 1), "products are cut into slices on GPUs only");
            let (hy, hs) = (dy.host(), states.host());
            let (hr, hg) = (dh_rec.map(|b| b.0.host()), saved.gates.as_ref().map(|b| b.host()));
            let (mut hdx, mut hc) = (dxw.host_mut(), carry.host_mut());
            let mut hdh = dhw.map(|b| b.host_mut());
            let (dys, st) = (&f32s(&hy)[dy_offset..], f32s(&hs));
            let (rec, sv) = (hr.as_ref().map(|b| f32s(b)), hg.as_ref().map(|b| f32s(b)));
            let (dx, ca) = (f32s_mut(&mut hdx), f32s_mut(&mut hc));
            let dhws = hdh.as_mut().map(|b| f32s_mut(b));
            let inputs = BackwardIn { dys, rec, st, sv };
            if dy.device().runs_fast_cpu() {
                return crate::cpu::recurrent::backward(d, t, &inputs, dx, dhws, ca);
            }
            twin::backward_step(d, t, &inputs, dx, dhws, ca);
        },
    )
}

/// Runs a whole sequence of one direction, PyTorch semantics (module docs).
///
/// * `xw`: `[T, B, G·H]`, the input projection `x W_ihᵀ + b_ih` for every time;
/// * `w_hh`: `[G·H, H]`; `b_hh`: `[G·H]`, optional;
/// * `h0`: `[B, H]`; `c0`: `[B, H]`, required for the LSTM and refused otherwise;
/// * `reverse`: process t = T−1 down to 0 (`h0` is the state before the first
///   step processed); outputs still sit at their time index.
///
/// G = [`RecurrentKind::gates`]. Buffers must hold at least these many f32
/// (dense row-major). Returns what the backward needs, which also holds the
/// outputs: [`RecurrentSaved::output_layout`] (y, `[T, B, H]`),
/// [`h_n_layout`](RecurrentSaved::h_n_layout) and
/// [`c_n_layout`](RecurrentSaved::c_n_layout) are views of its
/// [`states`](RecurrentSaved::states).
///
/// T = 0 is allowed: no step runs, y is empty and h_n = h0 (c_n = c0), as
/// the recurrence defines. H = 0 is an error.
#[allow(clippy::too_many_arguments)]
pub fn recurrent_forward(
    kind: RecurrentKind,
    xw: &Buffer,
    w_hh: &Buffer,
    b_hh: Option<&Buffer>,
    h0: &Buffer,
    c0: Option<&Buffer>,
    t: usize,
    b: usize,
    h: usize,
    reverse: bool,
) -> Result<RecurrentSaved> {
    const OP: &str = "recurrent_forward";
    let d = SeqDims::new(OP, kind, t, b, h, reverse)?;
    let gh = d.gh();
    xw.check_len(OP, "xw [T, B, G·H]", t * b * gh, 4)?;
    w_hh.check_len(OP, "w_hh [G·H, H]", gh * h, 4)?;
    if let Some(bias) = b_hh {
        bias.check_len(OP, "b_hh [G·H]", gh, 4)?;
    }
    h0.check_len(OP, "h0 [B, H]", b * h, 4)?;
    check_cell_state(OP, kind, "c0", c0)?;
    if let Some(c) = c0 {
        c.check_len(OP, "c0 [B, H]", b * h, 4)?;
    }
    let dev = xw.device();
    let mut all = vec![w_hh, h0];
    all.extend(b_hh.into_iter().chain(c0));
    Buffer::check_same_device(OP, dev, &all)?;

    let states = Buffer::alloc(dev, (d.blocks() * (t + 1) * d.bh()) as u64 * 4)?;
    let bh_view = Layout::contiguous(&[b, h]);
    copy::copy_into(h0, &bh_view, &states, &d.slot_view(0, d.first_slot()))?;
    if let Some(c) = c0 {
        copy::copy_into(c, &bh_view, &states, &d.slot_view(1, d.first_slot()))?;
    }
    let gates = if kind.saves_gates() { Some(Buffer::alloc(dev, (t * b * SAVED * h) as u64 * 4)?) } else { None };
    // The RNN's `saved` binding needs a buffer; a word suffices, it is never touched.
    let placeholder = if gates.is_none() { Some(Buffer::alloc(dev, 4)?) } else { None };
    let saved_buf = gates.as_ref().or(placeholder.as_ref()).expect("gates or placeholder");
    // The step's product hw = h_prev @ W_hhᵀ: [B, H] @ [H, G·H].
    let slices = step_slices(dev, b, h, gh)?;
    let in_store = (slices == 1).then(|| cell_in_store(&d, &[xw, w_hh, h0, &states, saved_buf])).flatten();
    if let Some(kernel) = in_store {
        forward_in_store(kernel, &d, xw, w_hh, b_hh, h0, &states, saved_buf)?;
        return Ok(RecurrentSaved { dims: d, has_bias: b_hh.is_some(), states, gates });
    }
    // W_hhᵀ as a view: [H, G·H] with strides (1, H).
    let w_t = Layout { shape: [h, gh].into(), strides: [1, h].into(), offset: 0 };
    if dev.runs_fast_cpu() && kind == RecurrentKind::Lstm {
        // The whole sequence in one pass, the batch rows split over the
        // cores once (`cpu::recurrent::lstm_forward_sequence`, which
        // packs W_hhᵀ once for every step's product).
        run(
            dev,
            |_| unreachable!("the CPU backend's sequence runs on the host"),
            || {
                let (hx, hw) = (xw.host(), w_hh.host());
                let hb = b_hh.map(|b| b.host());
                let (mut hs, mut hg) = (states.host_mut(), saved_buf.host_mut());
                let (xs, w, bs) = (f32s(&hx), f32s(&hw), hb.as_ref().map(|b| f32s(b)));
                crate::cpu::recurrent::lstm_forward_sequence(&d, xs, w, bs, f32s_mut(&mut hs), f32s_mut(&mut hg));
            },
        )?;
        return Ok(RecurrentSaved { dims: d, has_bias: b_hh.is_some(), states, gates });
    }
    for i in 0..t {
        let time = d.time(i);
        let hw = sliced_product((&states, &d.slot_view(0, d.slots(time).0)), (w_hh, &w_t), slices)?;
        cell_forward(&d, time, xw, (&hw, slices), b_hh, &states, saved_buf)?;
    }
    Ok(RecurrentSaved { dims: d, has_bias: b_hh.is_some(), states, gates })
}

/// Whether an LSTM sequence runs each step's cell in its recurrent
/// product's store (`matmul::cell_product`), and on which kernel family:
/// one launch per step instead of two, each way. On GPUs with fusion on
/// (`Device::set_fusion`), when the launches can bind `buffers` whole;
/// otherwise (`None`) the product and the cell kernel of `recurrent.wgsl`
/// run apart. Unit tests choose for themselves (`tests::FORCED`).
fn cell_in_store(d: &SeqDims, buffers: &[&Buffer]) -> Option<MatmulKernel> {
    let lstm = d.kind == RecurrentKind::Lstm;
    #[cfg(test)]
    if let Some(forced) = tests::FORCED.with(std::cell::Cell::get) {
        return forced.filter(|_| lstm);
    }
    let (dev, kernel) = (buffers[0].device(), MatmulKernel::Auto);
    let on = lstm && dev.gpu_ctx().is_some_and(GpuContext::fusion_enabled);
    (on && matmul::cell_product_runs(kernel, dev, buffers)).then_some(kernel)
}

/// Partial outputs that fill about 64 workgroups of the tiled kernel's
/// 32 x 128 tile (a step's product with up to 32 batch rows takes it).
const SLICED_OUTPUTS: usize = 64 * 32 * 128;

/// The fewest K values a slice of a step's product keeps: two of the tiled
/// kernel's staged depths.
const SLICE_DEPTH: usize = 32;

/// How many slices of K a step's recurrent product `[m, k] @ [k, n]` runs
/// in on `dev`: the slices' products run as one batched launch
/// (`matmul::matmul_partials`) and the cell kernel adds them, in order, so
/// every run gives the same bits (`PARTS` in `recurrent.wgsl`).
///
/// A step's product has few outputs (B x G·H forward, B x H backward) and
/// a long K, and the steps run one after another: whole, it fills a
/// handful of a GPU's workgroups, each walking all of K. On an H200 the
/// LSTM bench's (B 32, H 256) backward product took 200 µs a step on its 2
/// workgroups and the forward 60 µs on 8, 94% of the step's device time
/// (docs/history/gpu-h200-2026-11-26-session30.log), at the per-thread
/// rate of the large products that reach 27 TFLOP/s: the time is the
/// launch's few threads. Sliced ([`rule`]), a step's products get about 64
/// workgroups for 1-2 MB of partial sums a step; where products are cut
/// at all is `matmul::k_slices`' (GPUs that are no CPU adapter, or
/// `WGRAD_MATMUL_SPLIT_K`), as for every other product.
fn step_slices(dev: &crate::Device, m: usize, k: usize, n: usize) -> Result<usize> {
    #[cfg(test)]
    if let Some(forced) = tests::SLICES.with(std::cell::Cell::get).filter(|_| dev.gpu_ctx().is_some()) {
        return Ok(largest_divisor(k, forced));
    }
    matmul::k_slices(matmul::MatmulConfig::default(), dev, |cap| rule(m, k, n, cap))
}

/// [`step_slices`]' count with at most `cap` slices: enough for
/// [`SLICED_OUTPUTS`] partial sums, each slice at least [`SLICE_DEPTH`]
/// deep. Shallower and fewer than a plain product's (`matmul::split_k`):
/// a step waits for the step before, so its latency is what counts.
fn rule(m: usize, k: usize, n: usize, cap: usize) -> usize {
    slices_for(k, SLICED_OUTPUTS.div_ceil((m * n).max(1)), SLICE_DEPTH, cap)
}

/// `a @ b` (2-D views) as `slices` products over consecutive ranges of K,
/// `[slices, m, n]` ([`step_slices`]; 1: the product itself, `[m, n]`).
fn sliced_product((a, la): (&Buffer, &Layout), (b, lb): (&Buffer, &Layout), slices: usize) -> Result<Buffer> {
    #[cfg(test)]
    if slices > 1 {
        tests::SLICED.with(|c| c.set(c.get() + 1));
    }
    matmul::matmul_partials(a, la, b, lb, slices)
}

/// The LSTM forward with each step's cell in the store of the product
/// `h_prev @ W_hhᵀ`, whose W_hh has its rows interleaved per unit (row
/// 4u + k is gate k of unit u, a copy made once) so that the four columns
/// a store holds are one unit's gates. Where A is bound as a buffer (GPUs)
/// the new h also goes to one of two `[B, H]` buffers, the next step's A;
/// read through a texture (CPU adapters), A is h_prev's slot of the states.
#[allow(clippy::too_many_arguments)]
fn forward_in_store(
    kernel: MatmulKernel,
    d: &SeqDims,
    xw: &Buffer,
    w_hh: &Buffer,
    b_hh: Option<&Buffer>,
    h0: &Buffer,
    states: &Buffer,
    saved: &Buffer,
) -> Result<()> {
    let (h, gh, bh) = (d.hidden, d.gh(), d.bh());
    // [G, H, H] read as [H, G, H]: row u·G + k is row k·H + u of W_hh.
    let interleave = Layout { shape: [h, 4, h].into(), strides: [h, h * h, 1].into(), offset: 0 };
    let w_il = copy::contiguous(w_hh, &interleave)?;
    let w_t = Layout { shape: [h, gh].into(), strides: [1, h].into(), offset: 0 };
    // Read through textures (copies), A can be h_prev's slot of the states
    // the launch writes; bound as a buffer it must be another buffer.
    let textures = matmul::cell_reads_textures(kernel, xw.device(), &[xw, &w_il, states, b_hh.unwrap_or(xw)]);
    let len = if textures { 4 } else { bh as u64 * 4 };
    let next = [Buffer::alloc(xw.device(), len)?, Buffer::alloc(xw.device(), len)?];
    for i in 0..d.steps {
        let time = d.time(i);
        let (prev, out) = d.slots(time);
        let (a, a_view) = match (textures, i) {
            (true, _) => (states, d.slot_view(0, prev)),
            (false, 0) => (h0, Layout::contiguous(&[d.batch, h])),
            (false, _) => (&next[(i - 1) % 2], Layout::contiguous(&[d.batch, h])),
        };
        let cell = matmul::CellStore {
            backward: false,
            inputs: [b_hh.unwrap_or(xw), xw, xw],
            outputs: [states, saved, &next[i % 2]],
            next: !textures,
            bias: b_hh.is_some(),
            params: [h, time * d.batch * gh, prev * bh, out * bh, d.cell_offset(), 0],
        };
        matmul::cell_product(kernel, a, &a_view, &w_il, &w_t, cell)?;
    }
    Ok(())
}

/// Errors unless a cell state is given exactly for the LSTM.
fn check_cell_state(op: &'static str, kind: RecurrentKind, what: &str, c: Option<&Buffer>) -> Result<()> {
    match (kind, c) {
        (RecurrentKind::Lstm, None) => Err(Error::invalid(op, format!("lstm needs {what}, the initial cell state"))),
        (RecurrentKind::Lstm, Some(_)) | (_, None) => Ok(()),
        (k, Some(_)) => Err(Error::invalid(op, format!("{what} given for {}, which has no cell state", k.name()))),
    }
}

/// Backward of [`recurrent_forward`]: gradients of `xw`, `w_hh`, `b_hh`,
/// `h0` and `c0` from `dy` (`[T, B, H]`, the gradient of the outputs y) and
/// optional gradients of the final states `dh_n`, `dc_n` (`[B, H]`; `dc_n`
/// for the LSTM only). `w_hh` is the forward's.
///
/// `dh_n` adds to the gradient of the last output processed, which is the
/// same value as h_n; a caller whose `dy` already includes it passes `None`.
/// Per step: one fused kernel, one matmul `dh_prev = dhw_t @ W_hh`. After
/// the loop `dW_hh = dHWᵀ @ H_prev` over all T·B rows is one matmul, and
/// `db_hh` one column sum of `dHW` (dHW = dxw for the RNN and LSTM; the GRU's
/// differs in the n block).
pub fn recurrent_backward(
    saved: &RecurrentSaved,
    w_hh: &Buffer,
    dy: &Buffer,
    dh_n: Option<&Buffer>,
    dc_n: Option<&Buffer>,
) -> Result<RecurrentGrads> {
    recurrent_backward_at(saved, w_hh, (dy, 0), dh_n.map(|g| (g, 0)), dc_n.map(|g| (g, 0)))
}

/// [`recurrent_backward`] with `dy`, `dh_n` and `dc_n` each starting at an
/// element offset of its buffer: where they lie in the gradient of all the
/// [`states`](RecurrentSaved::states) (dy at
/// [`output_layout`](RecurrentSaved::output_layout)'s offset, the final
/// states at their slots), read in place instead of copied out.
pub fn recurrent_backward_at(
    saved: &RecurrentSaved,
    w_hh: &Buffer,
    (dy, offset): (&Buffer, usize),
    dh_n: Option<(&Buffer, usize)>,
    dc_n: Option<(&Buffer, usize)>,
) -> Result<RecurrentGrads> {
    const OP: &str = "recurrent_backward";
    let d = saved.dims;
    let (t, b, h, gh, bh) = (d.steps, d.batch, d.hidden, d.gh(), d.bh());
    dy.check_len(OP, "dy [T, B, H] from its offset", offset + t * bh, 4)?;
    super::check_u32(OP, offset + t * bh)?;
    w_hh.check_len(OP, "w_hh [G·H, H]", gh * h, 4)?;
    if let Some((g, at)) = dh_n {
        g.check_len(OP, "dh_n [B, H] from its offset", at + bh, 4)?;
    }
    if dc_n.is_some() && d.kind != RecurrentKind::Lstm {
        return Err(Error::invalid(OP, format!("dc_n given for {}, which has no cell state", d.kind.name())));
    }
    if let Some((g, at)) = dc_n {
        g.check_len(OP, "dc_n [B, H] from its offset", at + bh, 4)?;
    }
    let dev = saved.states.device();
    let mut all = vec![w_hh, dy];
    all.extend(dh_n.into_iter().chain(dc_n).map(|(g, _)| g));
    Buffer::check_same_device(OP, dev, &all)?;

    let dxw = Buffer::alloc(dev, (t * b * gh) as u64 * 4)?;
    let dhw = if d.kind == RecurrentKind::Gru { Some(Buffer::alloc(dev, (t * b * gh) as u64 * 4)?) } else { None };
    let placeholder = Buffer::alloc(dev, 4)?;
    // carry = [carry_h; carry_c], starting as [dh_n; dc_n] (zeros where
    // not given): the first given padded into both slots, the second
    // copied into its own.
    let bh_view = Layout::contiguous(&[b, h]);
    let carry_h = bh_view.clone();
    let carry_c = Layout { offset: bh, ..bh_view.clone() };
    let slot = |at: usize| Layout { shape: [1, b, h].into(), strides: [bh, h, 1].into(), offset: at };
    let carry = match (dh_n, dc_n) {
        (None, None) => fill::fill(dev, 2 * bh, 0.0)?,
        (None, Some((g, at))) => copy::pad(g, &slot(at), &[2, b, h], 0, 1)?,
        (Some((g, at)), c) => {
            let carry = copy::pad(g, &slot(at), &[2, b, h], 0, 0)?;
            if let Some((gc, at)) = c {
                copy::copy_into(gc, &Layout { offset: at, ..bh_view.clone() }, &carry, &carry_c)?;
            }
            carry
        }
    };
    let dhw_all = dhw.as_ref().unwrap_or(&dxw);
    let w_view = Layout::contiguous(&[gh, h]);
    let mut rec: Option<Buffer> = None;
    // The step's product dh_rec = dhw_t @ W_hh: [B, G·H] @ [G·H, H].
    let slices = step_slices(dev, b, gh, h)?;
    let in_store = (slices == 1)
        .then(|| {
            let gates = saved.gates.as_ref().unwrap_or(&saved.states);
            cell_in_store(&d, &[dy, w_hh, &saved.states, gates, &dxw, &carry])
        })
        .flatten();
    if let Some(kernel) = in_store.filter(|_| t > 0) {
        rec = Some(backward_in_store(kernel, &d, saved, w_hh, (dy, offset), &dxw, &carry, &placeholder)?);
    }
    // The CPU backend's LSTM: the whole sequence in one pass, the batch
    // rows split over the cores once (`cpu::recurrent::lstm_backward_sequence`).
    let whole = dev.runs_fast_cpu() && d.kind == RecurrentKind::Lstm && t > 0;
    if whole {
        let dh0 = Buffer::alloc(dev, bh as u64 * 4)?;
        let gates = saved.gates.as_ref().expect("the LSTM saves its gates");
        run(
            dev,
            |_| unreachable!("the CPU backend's sequence runs on the host"),
            || {
                let (hy, hs, hg, hw) = (dy.host(), saved.states.host(), gates.host(), w_hh.host());
                let (mut hdx, mut hc, mut hd) = (dxw.host_mut(), carry.host_mut(), dh0.host_mut());
                let inputs = BackwardIn { dys: &f32s(&hy)[offset..], rec: None, st: f32s(&hs), sv: Some(f32s(&hg)) };
                let (dx, ca, d0) = (f32s_mut(&mut hdx), f32s_mut(&mut hc), f32s_mut(&mut hd));
                crate::cpu::recurrent::lstm_backward_sequence(&d, &inputs, f32s(&hw), dx, ca, d0);
            },
        )?;
        rec = Some(dh0);
    }
    let mut parts = 1;
    for i in (0..t).rev().filter(|_| in_store.is_none() && !whole) {
        let time = d.time(i);
        let dh_rec = rec.as_ref().map(|r| (r, parts));
        cell_backward(&d, time, (dy, offset), dh_rec, saved, &dxw, dhw.as_ref(), &carry, &placeholder)?;
        // The last product is dh0's: whole, not in slices.
        parts = if i == 0 { 1 } else { slices };
        rec = Some(sliced_product((dhw_all, &d.gate_rows(time)), (w_hh, &w_view), parts)?);
    }
    let dh0 = match rec {
        None => copy::contiguous(&carry, &carry_h)?,
        // The GRU's z·dh bypasses W_hh.
        Some(r) if d.kind == RecurrentKind::Gru => {
            super::binary::binary(super::binary::BinaryOp::Add, &carry, &carry_h, &r, &bh_view)?.0
        }
        Some(r) => r,
    };
    let dc0 = if d.kind == RecurrentKind::Lstm { Some(copy::contiguous(&carry, &carry_c)?) } else { None };

    // One product over every step: dW_hh = dHWᵀ [G·H, T·B] @ H_prev [T·B, H].
    // The states before times 0..T are slots 0..T (forward) or 1..T+1 (reverse).
    let rows = t * b;
    let dw_hh = if rows == 0 {
        fill::fill(dev, gh * h, 0.0)?
    } else {
        let dhw_t = Layout { shape: [gh, rows].into(), strides: [1, gh].into(), offset: 0 };
        let mut h_prev = Layout::contiguous(&[rows, h]);
        h_prev.offset = usize::from(d.reverse) * bh;
        matmul::matmul(dhw_all, &dhw_t, &saved.states, &h_prev)?.0
    };
    let db_hh = if saved.has_bias {
        Some(reduce::reduce(reduce::ReduceOp::Sum, dhw_all, &Layout::contiguous(&[rows, gh]), &[0], false)?.0)
    } else {
        None
    };
    Ok(RecurrentGrads { dxw, dw_hh, db_hh, dh0, dc0 })
}

/// The LSTM backward with each step's cell in the store of the product
/// that gives it dh_rec (`dgates_{t'} @ W_hh`, t' the step processed
/// before): the first step processed (which carries dh_n) runs the cell
/// kernel, every other step one launch, and a last plain product gives
/// dh0, which this returns. Where A is bound as a buffer (GPUs) the gate
/// gradients also go to one of two `[B, 4H]` buffers, the next product's
/// A; read through a texture (CPU adapters), A is the dxw rows themselves.
#[allow(clippy::too_many_arguments)]
fn backward_in_store(
    kernel: MatmulKernel,
    d: &SeqDims,
    saved: &RecurrentSaved,
    w_hh: &Buffer,
    (dy, offset): (&Buffer, usize),
    dxw: &Buffer,
    carry: &Buffer,
    placeholder: &Buffer,
) -> Result<Buffer> {
    let (t, b, h, gh, bh) = (d.steps, d.batch, d.hidden, d.gh(), d.bh());
    let gates = saved.gates.as_ref().expect("the LSTM saves its gates");
    let first = d.time(t - 1);
    cell_backward(d, first, (dy, offset), None, saved, dxw, None, carry, placeholder)?;
    let w_view = Layout::contiguous(&[gh, h]);
    let a_view = Layout::contiguous(&[b, gh]);
    // Read through textures, A can be the dxw rows the previous launch
    // wrote; bound as a buffer it must be a copy (one, then the store's).
    let textures = matmul::cell_reads_textures(kernel, dy.device(), &[gates, dy, &saved.states, dxw, w_hh]);
    let dg = if t > 1 && !textures {
        [copy::contiguous(dxw, &d.gate_rows(first))?, Buffer::alloc(dy.device(), (b * gh) as u64 * 4)?]
    } else {
        [placeholder.clone(), placeholder.clone()]
    };
    for (n, i) in (0..t - 1).rev().enumerate() {
        let time = d.time(i);
        let (prev, out) = d.slots(time);
        let [read, write] = if n % 2 == 0 { [&dg[0], &dg[1]] } else { [&dg[1], &dg[0]] };
        let (a, view) = if textures { (dxw, d.gate_rows(d.time(i + 1))) } else { (read, a_view.clone()) };
        let cell = matmul::CellStore {
            backward: true,
            inputs: [gates, dy, &saved.states],
            outputs: [dxw, carry, write],
            next: !textures,
            bias: false,
            params: [h, time * b * gh, prev * bh, out * bh, (t + 1) * bh, offset + time * bh],
        };
        matmul::cell_product(kernel, a, &view, w_hh, &w_view, cell)?;
    }
    Ok(matmul::matmul(dxw, &d.gate_rows(d.time(0)), w_hh, &w_view)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, fresh_gpu_or_skip, Rng};
    use crate::Device;

    thread_local! {
        /// Set by a test: the kernel of the cell-in-store products
        /// (`Some(None)`: the two-launch path) instead of the device's choice.
        pub(super) static FORCED: std::cell::Cell<Option<Option<MatmulKernel>>> = const { std::cell::Cell::new(None) };
        /// Set by a test: the slices of K of every step's product on a GPU
        /// (`step_slices`), instead of the rule's.
        pub(super) static SLICES: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
        /// Products `sliced_product` ran in more than one slice.
        pub(super) static SLICED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Everything a sequence of `kind` computes, read back (states, saved
    /// gates (the LSTM and GRU), then the gradients of xw, W_hh, b_hh, h0
    /// and, for the LSTM, c0), and the launches it recorded, on the path
    /// `forced` picks, each step's product in `slices` slices of K.
    fn sequence_run(
        dev: &Device,
        kind: RecurrentKind,
        (t, b, h): (usize, usize, usize),
        reverse: bool,
        (forced, slices): (Option<MatmulKernel>, usize),
    ) -> (Vec<Vec<f32>>, u64) {
        let mut r = Rng::new((t * 131 + b * 17 + h) as u64);
        let (s, gh, lstm) = (1.0 / (h as f32).sqrt(), kind.gates() * h, kind == RecurrentKind::Lstm);
        let mut up = |n: usize, lo: f32, hi: f32| Buffer::from_f32(dev, &r.vec(n, lo, hi)).unwrap();
        let (xw, w, bias) = (up(t * b * gh, -1.0, 1.0), up(gh * h, -s, s), up(gh, -0.5, 0.5));
        let (h0, c0, dy) = (up(b * h, -1.0, 1.0), up(b * h, -1.0, 1.0), up(t * b * h, -1.0, 1.0));
        let (dh_n, dc_n) = (up(b * h, -1.0, 1.0), up(b * h, -1.0, 1.0));
        dev.synchronize().unwrap();
        FORCED.with(|f| f.set(Some(forced)));
        SLICES.with(|f| f.set(Some(slices)));
        let before = dev.stats().dispatches;
        let c0 = lstm.then_some(&c0);
        let saved = recurrent_forward(kind, &xw, &w, Some(&bias), &h0, c0, t, b, h, reverse).unwrap();
        let g = recurrent_backward(&saved, &w, &dy, Some(&dh_n), lstm.then_some(&dc_n)).unwrap();
        dev.synchronize().unwrap();
        FORCED.with(|f| f.set(None));
        SLICES.with(|f| f.set(None));
        let launches = dev.stats().dispatches - before;
        let bufs = [Some(saved.states()), saved.gates(), Some(&g.dxw), Some(&g.dw_hh), g.db_hh.as_ref(), Some(&g.dh0)];
        let out = bufs.into_iter().flatten().chain(g.dc0.as_ref()).map(|x| x.to_f32().unwrap()).collect();
        (out, launches)
    }

    /// [`sequence_run`] for the LSTM, products whole.
    fn lstm_run(
        dev: &Device,
        (t, b, h): (usize, usize, usize),
        reverse: bool,
        forced: Option<MatmulKernel>,
    ) -> (Vec<Vec<f32>>, u64) {
        sequence_run(dev, RecurrentKind::Lstm, (t, b, h), reverse, (forced, 1))
    }

    /// Every kind with each step's product in slices of K (the GPUs' path,
    /// forced here on any adapter) matches the CPU reference: states,
    /// saved gates and every gradient, both directions, more batch rows
    /// than one tile, T = 1, slices of 1 to 4 values of K; the same
    /// launches as the products whole, and every step's product but dh0's
    /// cut. Fails when the kernel adds the slices wrongly or not at all.
    #[test]
    fn products_in_slices_of_k_match_the_reference() {
        let Some(dev) = fresh_gpu_or_skip("products_in_slices_of_k_match_the_reference") else { return };
        let cpu = Device::cpu_reference();
        let kinds = [RecurrentKind::RnnTanh, RecurrentKind::RnnRelu, RecurrentKind::Lstm, RecurrentKind::Gru];
        for kind in kinds {
            for ((t, b, h), reverse, slices) in
                [((4, 3, 6), false, 3), ((3, 33, 4), true, 4), ((1, 2, 6), false, 2), ((2, 5, 4), false, 4)]
            {
                let what = format!("{} T={t} B={b} H={h} reverse={reverse} slices={slices}", kind.name());
                let (want, _) = sequence_run(&cpu, kind, (t, b, h), reverse, (None, 1));
                let (_, whole) = sequence_run(&dev, kind, (t, b, h), reverse, (None, 1));
                SLICED.with(|c| c.set(0));
                let (got, launches) = sequence_run(&dev, kind, (t, b, h), reverse, (None, slices));
                assert_eq!(SLICED.with(std::cell::Cell::get), 2 * t - 1, "{what}: products cut");
                assert_eq!(launches, whole, "{what}: launches");
                assert_eq!(got.len(), want.len(), "{what}: outputs");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_close(&format!("{what}: output {i}"), g, w, 1e-4, 1e-5);
                }
            }
        }
    }

    /// The rule cuts a step's product into slices at least `SLICE_DEPTH`
    /// deep that divide K, enough of them for `SLICED_OUTPUTS` partial
    /// sums where K allows, at most the cap; and only on GPUs that are no
    /// CPU adapter unless a cap is set (lavapipe: none).
    #[test]
    fn the_rule_slices_only_long_products_with_few_outputs() {
        let cases = [
            // The LSTM bench's products (B 32, H 256): backward, forward, capped.
            ((32, 1024, 256, usize::MAX), 32),
            ((32, 256, 1024, usize::MAX), 8),
            ((32, 1024, 256, 6), 4),
            ((32, 1024, 256, 1), 1),
            // Enough outputs already; K too short to cut; K = 100 (divisors 2, 4, 5...).
            ((256, 1024, 1024, usize::MAX), 1),
            ((32, 31, 1024, usize::MAX), 1),
            ((32, 100, 256, usize::MAX), 2),
        ];
        for ((m, k, n, cap), want) in cases {
            assert_eq!(rule(m, k, n, cap), want, "{m} x {k} x {n}, cap {cap}");
        }
        assert_eq!(step_slices(&Device::cpu(), 32, 1024, 256).unwrap(), 1);
        assert_eq!(step_slices(&Device::cpu_reference(), 32, 1024, 256).unwrap(), 1);
        let Some(dev) = fresh_gpu_or_skip("the_rule_slices_only_long_products_with_few_outputs") else { return };
        let cap = crate::ops::matmul::split_k_cap().unwrap();
        let on = dev.gpu_ctx().is_some_and(|g| !g.is_cpu_adapter()) || cap.is_some();
        let want = if on { rule(32, 1024, 256, cap.unwrap_or(usize::MAX)) } else { 1 };
        assert_eq!(step_slices(&dev, 32, 1024, 256).unwrap(), want);
        SLICES.with(|f| f.set(Some(6)));
        assert_eq!(step_slices(&dev, 32, 1024, 256).unwrap(), 4, "forced: the largest divisor up to 6");
        SLICES.with(|f| f.set(None));
    }

    /// The LSTM with each step's cell in its recurrent product's store, on
    /// both kernel families (the tiled one is the GPUs'; it runs on any
    /// adapter), matches the two-launch path: states, saved gates and every
    /// gradient, both directions, awkward sizes (H not a multiple of 4, more
    /// batch rows than one tile), T = 1; and it records 2T − 3 launches
    /// fewer (T − 1 each way, less the interleaved W_hh copy and, where A
    /// is a buffer, the first gate gradients' copy). Fails when the store's cell math or offsets
    /// are wrong, or when the path is not taken.
    #[test]
    fn lstm_cell_in_the_products_store_matches_the_two_launch_path() {
        let Some(dev) = fresh_gpu_or_skip("lstm_cell_in_the_products_store_matches_the_two_launch_path") else {
            return;
        };
        let names = ["states", "gates", "dxw", "dw_hh", "db_hh", "dh0", "dc0"];
        for ((t, b, h), reverse) in [((5, 3, 7), false), ((4, 2, 5), true), ((1, 2, 3), false), ((3, 33, 6), false)] {
            let (want, two) = lstm_run(&dev, (t, b, h), reverse, None);
            for kernel in [MatmulKernel::Tiled, MatmulKernel::Subgroup].into_iter().filter(|k| k.runs_on(&dev)) {
                let (got, one) = lstm_run(&dev, (t, b, h), reverse, Some(kernel));
                for ((name, g), w) in names.iter().zip(&got).zip(&want) {
                    assert_close(&format!("{kernel:?} T={t} B={b} H={h} reverse={reverse}: {name}"), g, w, 1e-5, 1e-5);
                }
                // Through textures the first gate gradients need no copy.
                let probe = Buffer::alloc(&dev, 4).unwrap();
                let textures = matmul::cell_reads_textures(kernel, &dev, &[&probe]) as u64;
                if t >= 2 {
                    assert_eq!(one + 2 * t as u64 - 3 + textures, two, "{kernel:?} T={t}: launches");
                }
            }
        }
    }

    /// The shader's `KIND` numbering is `RecurrentKind::code`.
    #[test]
    fn kind_codes_match_the_shader() {
        let src = crate::shaders::raw("recurrent");
        assert!(src.contains("// 0 rnn_tanh, 1 rnn_relu, 2 lstm, 3 gru"));
        let kinds = [RecurrentKind::RnnTanh, RecurrentKind::RnnRelu, RecurrentKind::Lstm, RecurrentKind::Gru];
        for (i, k) in kinds.into_iter().enumerate() {
            assert_eq!(k.code() as usize, i);
            assert!(src.contains(&format!("{i} {}", k.name())), "{}", k.name());
        }
    }

    #[test]
    fn slots_put_outputs_in_time_order() {
        for reverse in [false, true] {
            let d = SeqDims::new("test", RecurrentKind::Gru, 5, 2, 3, reverse).unwrap();
            // Processing order visits every time once; each step's previous
            // slot is the slot the step before it wrote.
            let order: Vec<usize> = (0..5).map(|i| d.time(i)).collect();
            let mut last = d.first_slot();
            for &t in &order {
                let (prev, out) = d.slots(t);
                assert_eq!(prev, last);
                last = out;
            }
            assert_eq!(last, d.last_slot());
        }
    }
}

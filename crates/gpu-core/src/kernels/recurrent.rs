//! What a recurrent sequence is: the cell ([`RecurrentKind`]), its sizes
//! and the layout of its state and saved-gate buffers ([`SeqDims`]), shared by
//! the launches (`ops/recurrent.rs`) and the fast path
//! (`cpu/recurrent.rs`); and the reference twins of one step each way
//! ([`forward_step`], [`backward_step`]), in f64.

use super::io::{Binding, IoLibrary, Storage};
use super::variants::{FamilyShaders, Variant};

use crate::layout::Layout;

/// Values the forward saves per (time, batch row, hidden unit) for the
/// LSTM and GRU: LSTM i, f, g, o; GRU r, z, n and hn (the RNN saves none).
pub(crate) const SAVED: usize = 4;

/// Which recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecurrentKind {
    /// Elman RNN, `h = tanh(a)`.
    RnnTanh,
    /// Elman RNN, `h = relu(a)`.
    RnnRelu,
    /// LSTM, gate blocks in PyTorch's order i, f, g, o.
    Lstm,
    /// GRU, gate blocks in PyTorch's order r, z, n.
    Gru,
}

impl RecurrentKind {
    /// Gate blocks of `H` rows in `W_ih`, `W_hh` and the biases: 1, 4 or 3.
    pub fn gates(self) -> usize {
        match self {
            RecurrentKind::RnnTanh | RecurrentKind::RnnRelu => 1,
            RecurrentKind::Lstm => 4,
            RecurrentKind::Gru => 3,
        }
    }

    /// The cell's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            RecurrentKind::RnnTanh => "rnn_tanh",
            RecurrentKind::RnnRelu => "rnn_relu",
            RecurrentKind::Lstm => "lstm",
            RecurrentKind::Gru => "gru",
        }
    }

    /// The `KIND` override of `recurrent.wgsl`.
    pub(crate) fn code(self) -> u32 {
        self as u32
    }

    /// Whether the forward keeps per-step gate values for the backward.
    pub(crate) fn saves_gates(self) -> bool {
        matches!(self, RecurrentKind::Lstm | RecurrentKind::Gru)
    }
}

/// Sizes of one sequence, checked once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeqDims {
    pub(crate) kind: RecurrentKind,
    pub(crate) steps: usize,
    pub(crate) batch: usize,
    pub(crate) hidden: usize,
    pub(crate) reverse: bool,
}

impl SeqDims {
    pub(crate) fn bh(&self) -> usize {
        self.batch * self.hidden
    }

    pub(crate) fn gh(&self) -> usize {
        self.kind.gates() * self.hidden
    }

    /// Where an LSTM's cell states start in `states`: after the `steps + 1`
    /// hidden states.
    pub(crate) fn cell_offset(&self) -> usize {
        (self.steps + 1) * self.bh()
    }

    /// Slots of `states` holding the state before time `t` and after it.
    pub(crate) fn slots(&self, t: usize) -> (usize, usize) {
        if self.reverse {
            (t + 1, t)
        } else {
            (t, t + 1)
        }
    }

    /// `[B, G·H]` view of time `t`'s rows of a whole-sequence `[T, B, G·H]`
    /// buffer (xw, dxw).
    pub(crate) fn gate_rows(&self, t: usize) -> Layout {
        let mut l = Layout::contiguous(&[self.batch, self.gh()]);
        l.offset = t * self.batch * self.gh();
        l
    }

    /// Slot of the initial state.
    pub(crate) fn first_slot(&self) -> usize {
        if self.reverse {
            self.steps
        } else {
            0
        }
    }

    /// Slot of the final state (h_n, c_n).
    pub(crate) fn last_slot(&self) -> usize {
        if self.reverse {
            0
        } else {
            self.steps
        }
    }

    /// The time processed at position `i` of the forward loop.
    pub(crate) fn time(&self, i: usize) -> usize {
        if self.reverse {
            self.steps - 1 - i
        } else {
            i
        }
    }

    /// Blocks of `[T+1, B, H]` in `states`: hidden states, plus cell states for the LSTM.
    pub(crate) fn blocks(&self) -> usize {
        if self.kind == RecurrentKind::Lstm {
            2
        } else {
            1
        }
    }

    /// `[B, H]` view of slot `slot` of block `block` of `states`.
    pub(crate) fn slot_view(&self, block: usize, slot: usize) -> Layout {
        let mut l = Layout::contiguous(&[self.batch, self.hidden]);
        l.offset = (block * (self.steps + 1) + slot) * self.bh();
        l
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// One forward step at time `t` of `torch.nn.RNN` / `LSTM` / `GRU`
/// (`ops/recurrent.rs`'s gate math, in f64): from the input projections
/// `xs` (`[T, B, G·H]`), this step's `hws = h_prev @ W_hhᵀ` (`[B, G·H]`)
/// and the bias `bs`, writes the new states into `st` and the gate values
/// into `sv` (whole-sequence buffers, [`SeqDims`]'s layout).
pub(crate) fn forward_step(
    d: &SeqDims,
    t: usize,
    xs: &[f32],
    hws: &[f32],
    bs: Option<&[f32]>,
    st: &mut [f32],
    sv: &mut [f32],
) {
    let (h, gh, bh) = (d.hidden, d.gh(), d.bh());
    let (prev, out) = d.slots(t);
    let c_off = d.cell_offset();
    for b in 0..d.batch {
        for j in 0..h {
            let i = b * h + j;
            let x = |k: usize| xs[(t * d.batch + b) * gh + k * h + j] as f64;
            let r = |k: usize| hws[b * gh + k * h + j] as f64 + bs.map_or(0.0, |bs| bs[k * h + j] as f64);
            let s0 = (t * d.batch + b) * SAVED * h + j;
            let (hp, ip, io) = (st[prev * bh + i] as f64, prev * bh + i, out * bh + i);
            let hn = match d.kind {
                RecurrentKind::RnnTanh => (x(0) + r(0)).tanh(),
                RecurrentKind::RnnRelu => crate::kernels::unary::relu(x(0) + r(0)),
                RecurrentKind::Lstm => {
                    let (ig, fg) = (sigmoid(x(0) + r(0)), sigmoid(x(1) + r(1)));
                    let (gg, og) = ((x(2) + r(2)).tanh(), sigmoid(x(3) + r(3)));
                    let c = fg * st[c_off + ip] as f64 + ig * gg;
                    st[c_off + io] = c as f32;
                    for (k, v) in [ig, fg, gg, og].into_iter().enumerate() {
                        sv[s0 + k * h] = v as f32;
                    }
                    og * c.tanh()
                }
                RecurrentKind::Gru => {
                    let (rg, zg, hn) = (sigmoid(x(0) + r(0)), sigmoid(x(1) + r(1)), r(2));
                    let n = (x(2) + rg * hn).tanh();
                    for (k, v) in [rg, zg, n, hn].into_iter().enumerate() {
                        sv[s0 + k * h] = v as f32;
                    }
                    (1.0 - zg) * n + zg * hp
                }
            };
            st[io] = hn as f32;
        }
    }
}

/// Read-only inputs of one backward step.
pub(crate) struct BackwardIn<'a> {
    /// `dy`, `[T, B, H]`.
    pub dys: &'a [f32],
    /// The previous step's `dhw @ W_hh`, if any.
    pub rec: Option<&'a [f32]>,
    /// The forward's states.
    pub st: &'a [f32],
    /// The forward's saved gates (LSTM, GRU).
    pub sv: Option<&'a [f32]>,
}

/// One backward step at time `t` of [`forward_step`] (in f64): reads
/// `dy[t]`, the carries `ca` (dh | dc) and the previous step's
/// `dhw @ W_hh`, writes `dx` (= dxw[t]), `dhws` (= dhw[t], GRU) and the
/// new carries.
pub(crate) fn backward_step(
    d: &SeqDims,
    t: usize,
    inputs: &BackwardIn,
    dx: &mut [f32],
    mut dhws: Option<&mut [f32]>,
    ca: &mut [f32],
) {
    let BackwardIn { dys, rec, st, sv } = *inputs;
    let (h, gh, bh) = (d.hidden, d.gh(), d.bh());
    let (prev, out) = d.slots(t);
    let c_off = d.cell_offset();
    for b in 0..d.batch {
        for j in 0..h {
            let i = b * h + j;
            let x0 = (t * d.batch + b) * gh + j;
            let gate =
                |k: usize| sv.expect("LSTM and GRU save gates")[(t * d.batch + b) * SAVED * h + j + k * h] as f64;
            let dh = dys[t * bh + i] as f64 + ca[i] as f64 + rec.map_or(0.0, |r| r[i] as f64);
            ca[i] = 0.0;
            match d.kind {
                RecurrentKind::RnnTanh => {
                    let y = st[out * bh + i] as f64;
                    dx[x0] = (dh * (1.0 - y * y)) as f32;
                }
                RecurrentKind::RnnRelu => {
                    dx[x0] = if crate::kernels::unary::relu_passes(st[out * bh + i]) { dh as f32 } else { 0.0 }
                }
                RecurrentKind::Lstm => {
                    let (ig, fg, gg, og) = (gate(0), gate(1), gate(2), gate(3));
                    let tc = (st[c_off + out * bh + i] as f64).tanh();
                    let dc = ca[bh + i] as f64 + dh * og * (1.0 - tc * tc);
                    let cp = st[c_off + prev * bh + i] as f64;
                    let pre = [
                        dc * gg * ig * (1.0 - ig),
                        dc * cp * fg * (1.0 - fg),
                        dc * ig * (1.0 - gg * gg),
                        dh * tc * og * (1.0 - og),
                    ];
                    for (k, v) in pre.into_iter().enumerate() {
                        dx[x0 + k * h] = v as f32;
                    }
                    ca[bh + i] = (dc * fg) as f32;
                }
                RecurrentKind::Gru => {
                    let (rg, zg, n, hn) = (gate(0), gate(1), gate(2), gate(3));
                    let dn = dh * (1.0 - zg) * (1.0 - n * n);
                    let dr = dn * hn * rg * (1.0 - rg);
                    let dz = dh * (st[prev * bh + i] as f64 - n) * zg * (1.0 - zg);
                    let dhw = dhws.as_mut().expect("GRU has a separate dhw");
                    for (k, (vx, vh)) in [(dr, dr), (dz, dz), (dn, dn * rg)].into_iter().enumerate() {
                        dx[x0 + k * h] = vx as f32;
                        dhw[x0 + k * h] = vh as f32;
                    }
                    ca[i] = (dh * zg) as f32;
                }
            }
        }
    }
}

/// The shaders this family derives from its files by swapping includes,
/// and its storage bindings (`shaders.rs` collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[Variant::new("recurrent_tex", "recurrent", &[("recurrent_inputs_f32", "recurrent_inputs_tex")])],
    io: &[IoLibrary {
        stem: "recurrent_inputs",
        storages: Storage::F32_TEX,
        // Each entry point binds its own inputs, so they share numbers.
        bindings: &[
            // cell_forward
            Binding::load("xw", 1),
            Binding::load("hw", 2),
            Binding::load("bias", 3),
            // cell_backward
            Binding::load("dy", 1),
            Binding::load("dh_rec", 2),
            Binding::load("states", 3),
            Binding::load("saved", 4),
        ],
    }],
};

//! What a recurrent sequence is: the cell ([`RecurrentKind`]), its sizes
//! and the layout of its state and saved-gate buffers ([`SeqDims`]), shared by
//! the launches and twins (`ops/recurrent.rs`) and the fast path
//! (`cpu/recurrent.rs`).

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

/// The shaders this family derives from its files by swapping includes,
/// and the inputs its texture variants read through textures (`shaders.rs`
/// collects every family's).
pub(crate) const SHADERS: FamilyShaders = FamilyShaders {
    variants: &[Variant::new("recurrent_tex", "recurrent", &[("recurrent_inputs_f32", "recurrent_inputs_tex")])],
    texture_inputs: &[("recurrent_tex", "cell_forward", &[0, 1, 2]), ("recurrent_tex", "cell_backward", &[0, 1, 2, 3])],
};

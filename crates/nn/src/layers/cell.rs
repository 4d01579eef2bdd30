//! Single-step recurrent cells (`nn.RNNCell`, `nn.LSTMCell`, `nn.GRUCell`),
//! for decoders and hand-written loops that feed each step's output back in.
//!
//! A cell step is [`Tensor::recurrent`] over a sequence of length one, so it
//! runs the same fused gate kernels as the sequence layers.

use std::marker::PhantomData;

use wgrad_autograd::{DType, RecurrentKind, Tensor};

use crate::construction::{copy_builder, Built, Init};

use crate::Module;

/// One recurrent step: `weight_ih [G·H, I]`, `weight_hh [G·H, H]` and
/// optional `bias_ih`, `bias_hh [G·H]` (G = 1, 4, 3 for RNN, LSTM, GRU),
/// initialised U(−1/√H, 1/√H) as in PyTorch.
#[derive(Module)]
pub struct RecurrentCell {
    kind: RecurrentKind,
    /// `[G·H, input_size]`.
    #[param]
    pub weight_ih: Tensor,
    /// `[G·H, hidden_size]`.
    #[param]
    pub weight_hh: Tensor,
    /// `[G·H]`, if the cell has biases.
    #[param]
    pub bias_ih: Option<Tensor>,
    /// `[G·H]`, if the cell has biases.
    #[param]
    pub bias_hh: Option<Tensor>,
}

/// What a [`CellBuilder`] builds: the cell type, sizes and bias.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellOptions {
    /// RNN (tanh or ReLU), LSTM or GRU.
    pub kind: RecurrentKind,
    /// Input features.
    pub input_size: usize,
    /// Hidden-state features.
    pub hidden_size: usize,
    /// With `bias_ih` and `bias_hh`.
    pub bias: bool,
}

/// Options of an [`RNNCell`](crate::RNNCell), [`LSTMCell`](crate::LSTMCell),
/// [`GRUCell`](crate::GRUCell) or a [`RecurrentCell`] of a kind chosen at run
/// time (`L`); [`build`](Self::build) makes it.
pub struct CellBuilder<L> {
    options: CellOptions,
    class: PhantomData<fn() -> L>,
}
copy_builder!(CellBuilder);

impl<L> CellBuilder<L> {
    pub(crate) fn new(kind: RecurrentKind, input_size: usize, hidden_size: usize) -> Self {
        CellBuilder { options: CellOptions { kind, input_size, hidden_size, bias: true }, class: PhantomData }
    }

    /// Whether the cell has biases (default true).
    pub fn bias(mut self, yes: bool) -> Self {
        self.options.bias = yes;
        self
    }
}

impl<L: Built<CellOptions>> CellBuilder<L> {
    /// The cell, every weight and bias drawn from U(−1/√H, 1/√H) in
    /// PyTorch's order.
    ///
    /// # Panics
    /// For zero sizes.
    pub fn build(self, init: &mut Init) -> L {
        L::built(self.options, init)
    }
}

impl crate::construction::sealed::Sealed for RecurrentCell {}

impl Built<CellOptions> for RecurrentCell {
    fn built(options: CellOptions, init: &mut Init) -> Self {
        RecurrentCell::new(options, init)
    }
}

impl RecurrentCell {
    /// A cell whose kind is chosen at run time; otherwise use
    /// [`RNNCell`](crate::RNNCell), [`LSTMCell`](crate::LSTMCell) or
    /// [`GRUCell`](crate::GRUCell).
    pub fn builder(kind: RecurrentKind, input_size: usize, hidden_size: usize) -> CellBuilder<RecurrentCell> {
        CellBuilder::new(kind, input_size, hidden_size)
    }

    pub(crate) fn new(o: CellOptions, init: &mut Init) -> Self {
        let (kind, input_size, hidden_size) = (o.kind, o.input_size, o.hidden_size);
        assert!(input_size > 0 && hidden_size > 0, "RecurrentCell: sizes must be positive");
        let rows = kind.gates() * hidden_size;
        let bound = 1.0 / (hidden_size as f32).sqrt();
        let mut param = |shape: &[usize]| {
            let t = Tensor::zeros(shape, init.device()).requires_grad_();
            crate::init::uniform_(&t, -bound, bound, init.generator());
            t
        };
        RecurrentCell {
            kind,
            weight_ih: param(&[rows, input_size]),
            weight_hh: param(&[rows, hidden_size]),
            bias_ih: o.bias.then(|| param(&[rows])),
            bias_hh: o.bias.then(|| param(&[rows])),
        }
    }

    /// Features of the hidden state.
    pub fn hidden_size(&self) -> usize {
        self.weight_hh.shape()[1]
    }

    /// One step from `x [B, I]` and the state `h [B, H]` (and `c [B, H]` for
    /// an LSTM); zeros when `None`. Returns the new `h` and, for an LSTM, `c`.
    ///
    /// # Panics
    /// On shape mismatches, or a cell state given to (or missing from) an LSTM.
    pub fn step(&self, x: &Tensor, state: Option<(&Tensor, Option<&Tensor>)>) -> (Tensor, Option<Tensor>) {
        let shape = x.shape();
        let input = self.weight_ih.shape()[1];
        assert!(shape.len() == 2 && shape[1] == input, "RecurrentCell: expects input [B, {input}], got {shape:?}");
        let (b, h) = (shape[0], self.hidden_size());
        let zeros = || Tensor::zeros(&[b, h], &x.device());
        let lstm = self.kind == RecurrentKind::Lstm;
        let (h0, c0) = match state {
            Some((h0, c0)) => {
                assert_eq!(c0.is_some(), lstm, "RecurrentCell: a cell state is given exactly when the cell is an LSTM");
                (h0.clone(), c0.cloned())
            }
            None => (zeros(), lstm.then(zeros)),
        };
        // The input bias rides in the product's store (one launch fewer);
        // the recurrence reads f32 (under autocast the product is f16).
        let xw = x.linear(&self.weight_ih, self.bias_ih.as_ref()).to_dtype(DType::F32);
        let xw = xw.reshape(&[1, b, self.kind.gates() * h]);
        let r = xw.recurrent(self.kind, &self.weight_hh, self.bias_hh.as_ref(), &h0, c0.as_ref(), false);
        (r.h_n, r.c_n)
    }
}

impl Module for RecurrentCell {
    /// The new hidden state from a zero state.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.step(x, None).0
    }

    fn describe(&self) -> String {
        let name = match self.kind {
            RecurrentKind::RnnTanh | RecurrentKind::RnnRelu => "RNNCell",
            RecurrentKind::Lstm => "LSTMCell",
            RecurrentKind::Gru => "GRUCell",
        };
        format!("{name}({}, {})", self.weight_ih.shape()[1], self.hidden_size())
    }
}

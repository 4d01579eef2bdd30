//! Multi-layer, optionally bidirectional RNN, LSTM and GRU layers
//! (`nn.RNN`, `nn.LSTM`, `nn.GRU`).
//!
//! Each layer and direction is two steps: the input projection of every time
//! step at once (one big matmul, `x W_ihᵀ + b_ih`), then
//! [`Tensor::recurrent`], which runs the time loop with one fused gate kernel
//! per step and computes the recurrent weight's gradient in one matmul after
//! the loop. Parameter names, shapes, gate order and initialisation follow
//! PyTorch, so its state dicts load as they are.

use std::sync::Mutex;

use std::marker::PhantomData;

use wgrad_autograd::{DType, Generator, RecurrentKind, Tensor};

use crate::construction::{copy_builder, Built, Init};
use crate::module::{join, Module, ModuleFields};

/// Sizes and options of a recurrent layer, PyTorch's constructor arguments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentConfig {
    /// Features per time step of the input.
    pub input_size: usize,
    /// Features of the hidden state (per direction).
    pub hidden_size: usize,
    /// Stacked layers; layer `l + 1` reads layer `l`'s output.
    pub num_layers: usize,
    /// Whether the layers have `bias_ih` and `bias_hh`.
    pub bias: bool,
    /// Input and output are `[batch, time, features]` instead of `[time, batch, features]`.
    pub batch_first: bool,
    /// Dropout probability on each layer's output except the last (training only).
    pub dropout: f32,
    /// Also run each layer backwards in time and concatenate both outputs.
    pub bidirectional: bool,
}

impl RecurrentConfig {
    fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
}

/// The recurrent state between calls: `h` is `[layers·directions, batch,
/// hidden]` (no batch dim for unbatched input), `c` the same for an LSTM.
#[derive(Clone)]
pub struct RecurrentState {
    /// Hidden state of every layer and direction, in PyTorch's order
    /// (layer 0 forward, layer 0 reverse, layer 1 forward, ...).
    pub h: Tensor,
    /// The LSTM's cell state, shaped like `h`; `None` for RNN and GRU.
    pub c: Option<Tensor>,
}

impl RecurrentState {
    /// The same values cut from the graph: the next chunk of a long sequence
    /// starts from here without back-propagating into the previous one
    /// (truncated back-propagation through time).
    pub fn detach(&self) -> RecurrentState {
        RecurrentState { h: self.h.detach(), c: self.c.as_ref().map(Tensor::detach) }
    }
}

/// One direction of one layer: PyTorch's `weight_ih_l{k}{_reverse}` etc.
struct Direction {
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Option<Tensor>,
    b_hh: Option<Tensor>,
}

/// A multi-layer RNN, LSTM or GRU: the implementation shared by
/// [`RNN`](crate::RNN), [`LSTM`](crate::LSTM) and [`GRU`](crate::GRU), which
/// are what users build (or [`Recurrent::builder`] for a kind chosen at run time).
///
/// [`Module::forward`] returns the output sequence only; use
/// [`forward_with_state`](Self::forward_with_state) for initial and final
/// states.
pub struct Recurrent {
    kind: RecurrentKind,
    config: RecurrentConfig,
    /// `layers[l][d]`, d = 0 forward, 1 reverse.
    layers: Vec<Vec<Direction>>,
    training: bool,
    gen: Mutex<Generator>,
}

/// What a [`RecurrentBuilder`] builds: the cell type and the sizes and options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecurrentOptions {
    /// RNN (tanh or ReLU), LSTM or GRU.
    pub kind: RecurrentKind,
    /// Sizes and options.
    pub config: RecurrentConfig,
}

/// Options of an [`RNN`](crate::RNN), [`LSTM`](crate::LSTM), [`GRU`](crate::GRU)
/// or a [`Recurrent`] of a kind chosen at run time (`L`), with PyTorch's
/// defaults; [`build`](Self::build) makes it.
pub struct RecurrentBuilder<L> {
    options: RecurrentOptions,
    class: PhantomData<fn() -> L>,
}
copy_builder!(RecurrentBuilder);

impl<L> RecurrentBuilder<L> {
    /// One unidirectional layer with biases, time-major, no dropout.
    pub(crate) fn new(kind: RecurrentKind, input_size: usize, hidden_size: usize) -> Self {
        let config = RecurrentConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
        };
        RecurrentBuilder { options: RecurrentOptions { kind, config }, class: PhantomData }
    }

    pub(crate) fn kind(mut self, kind: RecurrentKind) -> Self {
        self.options.kind = kind;
        self
    }

    /// Stacked layers (default 1); layer `l + 1` reads layer `l`'s output.
    pub fn num_layers(mut self, n: usize) -> Self {
        self.options.config.num_layers = n;
        self
    }

    /// Whether the layers have `bias_ih` and `bias_hh` (default true).
    pub fn bias(mut self, yes: bool) -> Self {
        self.options.config.bias = yes;
        self
    }

    /// `[batch, time, features]` input and output (default false: time-major).
    pub fn batch_first(mut self, yes: bool) -> Self {
        self.options.config.batch_first = yes;
        self
    }

    /// Dropout on each layer's output except the last, in training (default 0).
    pub fn dropout(mut self, p: f32) -> Self {
        self.options.config.dropout = p;
        self
    }

    /// Also run each layer backwards in time (default false).
    pub fn bidirectional(mut self, yes: bool) -> Self {
        self.options.config.bidirectional = yes;
        self
    }
}

impl<L: Built<RecurrentOptions>> RecurrentBuilder<L> {
    /// The layer, every weight and bias drawn from U(−1/√H, 1/√H) in
    /// PyTorch's order.
    ///
    /// # Panics
    /// For zero sizes or layers, or a dropout probability outside [0, 1].
    pub fn build(self, init: &mut Init) -> L {
        L::built(self.options, init)
    }
}

impl crate::construction::sealed::Sealed for Recurrent {}

impl Built<RecurrentOptions> for Recurrent {
    fn built(options: RecurrentOptions, init: &mut Init) -> Self {
        Recurrent::new(options, init)
    }
}

impl Recurrent {
    /// A layer whose kind is chosen at run time (a model that is an LSTM or
    /// a GRU by configuration); otherwise use [`RNN`](crate::RNN),
    /// [`LSTM`](crate::LSTM) or [`GRU`](crate::GRU).
    pub fn builder(kind: RecurrentKind, input_size: usize, hidden_size: usize) -> RecurrentBuilder<Recurrent> {
        RecurrentBuilder::new(kind, input_size, hidden_size)
    }

    /// The layer of `options.kind`, every weight and bias drawn from
    /// U(−1/√H, 1/√H) as in PyTorch.
    pub(crate) fn new(options: RecurrentOptions, init: &mut Init) -> Self {
        let (kind, c) = (options.kind, options.config);
        assert!(
            c.input_size > 0 && c.hidden_size > 0 && c.num_layers > 0,
            "{}: input_size, hidden_size and num_layers must be positive, got {c:?}",
            kind_name(kind)
        );
        assert!((0.0..=1.0).contains(&c.dropout), "{}: dropout must be in [0, 1], got {}", kind_name(kind), c.dropout);
        let (h, g) = (c.hidden_size, kind.gates());
        let bound = 1.0 / (h as f32).sqrt();
        let mut param = |shape: &[usize]| {
            let t = Tensor::zeros(shape, init.device()).requires_grad_();
            crate::init::uniform_(&t, -bound, bound, init.generator());
            t
        };
        let layers = (0..c.num_layers)
            .map(|l| {
                let input = if l == 0 { c.input_size } else { h * c.directions() };
                (0..c.directions())
                    .map(|_| Direction {
                        w_ih: param(&[g * h, input]),
                        w_hh: param(&[g * h, h]),
                        b_ih: c.bias.then(|| param(&[g * h])),
                        b_hh: c.bias.then(|| param(&[g * h])),
                    })
                    .collect()
            })
            .collect();
        Recurrent { kind, config: c, layers, training: true, gen: Mutex::new(init.generator().fork()) }
    }

    /// The layer's sizes and options.
    pub fn config(&self) -> &RecurrentConfig {
        &self.config
    }

    /// The cell type.
    pub fn kind(&self) -> RecurrentKind {
        self.kind
    }

    /// Runs the layer from `state` (zeros when `None`) over `x`: `[T, B, I]`,
    /// or `[B, T, I]` with `batch_first`, or unbatched `[T, I]`. Returns the
    /// last layer's outputs (`[T, B, D·H]`, batch-first if so configured) and
    /// the final state of every layer and direction, like PyTorch's
    /// `output, h_n` / `output, (h_n, c_n)`.
    ///
    /// # Panics
    /// When `x`'s feature size is not `input_size`, or `state` has the wrong
    /// shape or lacks (or has) an LSTM cell state.
    pub fn forward_with_state(&self, x: &Tensor, state: Option<&RecurrentState>) -> (Tensor, RecurrentState) {
        let name = kind_name(self.kind);
        let c = &self.config;
        let shape = x.shape();
        assert!(
            matches!(shape.len(), 2 | 3) && shape[shape.len() - 1] == c.input_size,
            "{name}: expects input [T, B, {i}] (or [B, T, {i}] batch-first, or unbatched [T, {i}]), got {shape:?}",
            i = c.input_size
        );
        let unbatched = shape.len() == 2;
        let mut seq = if unbatched {
            x.unsqueeze(1)
        } else if c.batch_first {
            x.transpose(0, 1)
        } else {
            x.clone()
        };
        let batch = seq.shape()[1];
        let slots = c.num_layers * c.directions();
        let want: Vec<usize> = if unbatched { vec![slots, c.hidden_size] } else { vec![slots, batch, c.hidden_size] };
        let initial = |t: &Tensor, what: &str, i: usize| {
            assert_eq!(t.shape(), want, "{name}: initial {what} has shape {:?}, expected {want:?}", t.shape());
            t.narrow(0, i, 1).reshape(&[batch, c.hidden_size])
        };
        if let Some(s) = state {
            let lstm = self.kind == RecurrentKind::Lstm;
            assert_eq!(s.c.is_some(), lstm, "{name}: a cell state is given exactly when the layer is an LSTM");
        }
        // The zero state only when no state is given (it costs a fill launch).
        let zeros = state.is_none().then(|| Tensor::zeros(&[batch, c.hidden_size], &x.device()));
        let (mut hs, mut cs) = (Vec::with_capacity(slots), Vec::with_capacity(slots));
        for (l, layer) in self.layers.iter().enumerate() {
            if l > 0 && self.training && c.dropout > 0.0 {
                seq = seq.dropout(c.dropout, true, &mut self.gen.lock().unwrap());
            }
            let (t, input) = (seq.shape()[0], seq.shape()[2]);
            let flat = seq.reshape(&[t * batch, input]);
            let mut outs = Vec::with_capacity(layer.len());
            for (d, dir) in layer.iter().enumerate() {
                let slot = l * c.directions() + d;
                let h0 = state.map_or_else(|| zeros.clone().unwrap(), |s| initial(&s.h, "h", slot));
                let c0 = match (self.kind, state) {
                    (RecurrentKind::Lstm, Some(s)) => Some(initial(s.c.as_ref().unwrap(), "c", slot)),
                    (RecurrentKind::Lstm, None) => zeros.clone(),
                    _ => None,
                };
                // The input bias rides in the product's store: no separate
                // add over the whole [T·B, G·H] projection. The recurrence
                // reads f32 (under autocast the product is f16).
                // Where b_hh adds to the gates exactly as b_ih does (not
                // the GRU, whose reset gate scales b_hn), both ride in that
                // store as one sum: the recurrent steps read no bias, and the
                // backward sums the gate gradients over all rows once, not
                // twice (the sum's gradient goes to both unchanged).
                let (b_ih, b_hh) = match (&dir.b_ih, &dir.b_hh) {
                    (Some(bi), Some(bh)) if self.kind != RecurrentKind::Gru => (Some(bi + bh), None),
                    (bi, bh) => (bi.clone(), bh.as_ref()),
                };
                let xw = flat.linear(&dir.w_ih, b_ih.as_ref()).to_dtype(DType::F32);
                let xw = xw.reshape(&[t, batch, self.kind.gates() * c.hidden_size]);
                let r = xw.recurrent(self.kind, &dir.w_hh, b_hh, &h0, c0.as_ref(), d == 1);
                outs.push(r.output);
                hs.push(r.h_n);
                cs.extend(r.c_n);
            }
            seq = if outs.len() == 1 { outs.pop().unwrap() } else { Tensor::cat(&[&outs[0], &outs[1]], 2) };
        }
        let stack = |v: &[Tensor]| {
            let refs: Vec<&Tensor> = v.iter().collect();
            let s = Tensor::stack(&refs, 0);
            if unbatched {
                s.reshape(&[slots, c.hidden_size])
            } else {
                s
            }
        };
        let state = RecurrentState { h: stack(&hs), c: (!cs.is_empty()).then(|| stack(&cs)) };
        let out = if unbatched {
            seq.squeeze(1)
        } else if c.batch_first {
            seq.transpose(0, 1)
        } else {
            seq
        };
        (out, state)
    }

    /// The layer's inter-layer dropout stream (for exact-resume checkpoints).
    pub fn generator(&self) -> Generator {
        *self.gen.lock().unwrap()
    }

    /// Restores the dropout stream.
    pub fn set_generator(&self, gen: Generator) {
        *self.gen.lock().unwrap() = gen;
    }
}

fn kind_name(kind: RecurrentKind) -> &'static str {
    match kind {
        RecurrentKind::RnnTanh | RecurrentKind::RnnRelu => "RNN",
        RecurrentKind::Lstm => "LSTM",
        RecurrentKind::Gru => "GRU",
    }
}

// Hand-written: PyTorch's names (`weight_ih_l0_reverse`) are computed from
// the layer and direction indices, not taken from fields.
impl ModuleFields for Recurrent {
    fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        for (l, layer) in self.layers.iter().enumerate() {
            for (d, dir) in layer.iter().enumerate() {
                let suffix = format!("l{l}{}", if d == 1 { "_reverse" } else { "" });
                f(&join(prefix, &format!("weight_ih_{suffix}")), &dir.w_ih);
                f(&join(prefix, &format!("weight_hh_{suffix}")), &dir.w_hh);
                if let (Some(bi), Some(bh)) = (&dir.b_ih, &dir.b_hh) {
                    f(&join(prefix, &format!("bias_ih_{suffix}")), bi);
                    f(&join(prefix, &format!("bias_hh_{suffix}")), bh);
                }
            }
        }
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl Module for Recurrent {
    fn random_stream(&self) -> Option<&Mutex<Generator>> {
        Some(&self.gen)
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with_state(x, None).0
    }

    fn describe(&self) -> String {
        let c = &self.config;
        let mut s = format!("{}({}, {}", kind_name(self.kind), c.input_size, c.hidden_size);
        if c.num_layers != 1 {
            s += &format!(", num_layers={}", c.num_layers);
        }
        if self.kind == RecurrentKind::RnnRelu {
            s += ", nonlinearity='relu'";
        }
        if !c.bias {
            s += ", bias=False";
        }
        if c.batch_first {
            s += ", batch_first=True";
        }
        if c.dropout > 0.0 {
            s += &format!(", dropout={}", c.dropout);
        }
        if c.bidirectional {
            s += ", bidirectional=True";
        }
        s + ")"
    }
}

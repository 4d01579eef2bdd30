//! Tracing: a record of every op a function runs, with its attributes,
//! for exporters (ONNX) that rebuild the computation elsewhere.
//!
//! The autograd graph is not that record: its nodes keep an op name and a
//! backward closure, not the stride of a convolution or the axes of a
//! reduction, and ops on tensors that need no gradient are not in it at
//! all. While [`trace`] runs a function, each op the function calls
//! directly appends one [`TracedOp`]; the ops that op runs internally (a
//! `linear` built from a matmul and an add, the views of a recurrent
//! layer's states) are not recorded, so each record is one whole op at the
//! level a user wrote it.
//!
//! Tracing costs one thread-local read per op when it is off (no write).
//! It must not change what an op computes.

use std::cell::{Cell, RefCell};

use wgrad_gpu_core::ops::reduce::ReduceOp;

use crate::ops::conv::{Conv2dOptions, ConvTranspose2dOptions};
use crate::{BinaryOp, DType, PoolWindow, RecurrentKind, Resize, Result, Tensor, UnaryOp};

/// (vertical, horizontal), as the pooling ops take their sizes.
pub type Pair = (usize, usize);

/// One op and the attributes that fix what it computes. Shapes that an op
/// produces (a reshape's target, an expand's) are the output's shape, not
/// an attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceOp {
    /// A tensor made inside the traced function from host data or a fill
    /// (`zeros`, `full`, `from_vec`, `arange`): its value is the output's.
    /// `fill` is the value when every element has it (a `zeros`, a `full`).
    Constant {
        /// The one value of a filled tensor; `None` for arbitrary data.
        fill: Option<f32>,
    },
    /// An elementwise function (`relu`, `exp`, `affine`...). Input: x.
    Unary(UnaryOp),
    /// A broadcasting binary op (`add`, `maximum`, `lt`...). Inputs: a, b.
    Binary(BinaryOp),
    /// `where(cond, a, b)`, cond nonzero picks a. Inputs: cond, a, b.
    Where,
    /// A change of element type. Input: x.
    Cast(DType),
    /// The same values: `contiguous`, `detach`. Input: x.
    Identity,
    /// `a @ b` with NumPy batching, times `scale`. Inputs: a, b.
    MatMul {
        /// 1 for a plain `matmul`.
        scale: f32,
    },
    /// `x wᵀ + b`. Inputs: x, w, b (optional).
    Linear,
    /// 2-D convolution. Inputs: x `[N, C, H, W]` (or unbatched `[C, H, W]`), w, b (optional).
    Conv2d(Conv2dOptions),
    /// 1-D convolution. Inputs: x `[N, C, L]`, w, b (optional).
    Conv1d {
        /// Step between outputs.
        stride: usize,
        /// Zeros before and after.
        padding: (usize, usize),
        /// Distance between taps.
        dilation: usize,
        /// Channel groups.
        groups: usize,
    },
    /// 2-D transposed convolution. Inputs: x, w, b (optional).
    ConvTranspose2d(ConvTranspose2dOptions),
    /// Max pooling (−∞ padding). Input: x. With `indices`, a second
    /// output holds the argmax positions.
    MaxPool2d {
        /// Kernel, stride, padding, dilation and `ceil_mode`.
        window: PoolWindow,
        /// Whether the op also returned the indices.
        indices: bool,
    },
    /// Average pooling. Input: x.
    AvgPool2d {
        /// Kernel, stride, zero padding and `ceil_mode` (no dilation).
        window: PoolWindow,
        /// Whether padded zeros count in the divisor.
        count_include_pad: bool,
    },
    /// Adaptive average pooling to `out` (PyTorch's window rule). Input: x.
    AdaptiveAvgPool2d {
        /// Output (height, width).
        out: Pair,
    },
    /// The positions that sort `dim` (`torch.argsort`, stable), U32.
    /// Input: x.
    ArgSort {
        /// The dim sorted along.
        dim: usize,
        /// Largest first.
        descending: bool,
    },
    /// Running sums along `dim` (`torch.cumsum`). Input: x.
    CumSum {
        /// The dim summed along.
        dim: usize,
    },
    /// Resizing the last two dims (`F.interpolate`): the output size, the
    /// scale factors it came from if any, the mode. Input: x.
    Interpolate(Resize),
    /// Batch normalization. Inputs: x, running_mean, running_var, weight,
    /// bias (each but x optional).
    BatchNorm {
        /// Batch statistics (and running-stat updates) instead of running ones.
        training: bool,
        /// Running-stat momentum.
        momentum: f32,
        /// Added to the variance.
        eps: f32,
    },
    /// Layer normalization over the trailing `normalized_shape`. Inputs:
    /// x, weight, bias (optional).
    LayerNorm {
        /// The trailing dims normalized together.
        normalized_shape: Vec<usize>,
        /// Added to the variance.
        eps: f32,
    },
    /// RMS normalization over the trailing `normalized_shape`. Inputs: x,
    /// weight (optional).
    RmsNorm {
        /// The trailing dims normalized together.
        normalized_shape: Vec<usize>,
        /// Added to the mean square.
        eps: f32,
    },
    /// Group normalization. Inputs: x, weight, bias (optional).
    GroupNorm {
        /// Channel groups.
        groups: usize,
        /// Added to the variance.
        eps: f32,
    },
    /// Softmax along `dim` (non-negative). Input: x.
    Softmax {
        /// The normalized dim.
        dim: usize,
        /// `log_softmax`.
        log: bool,
    },
    /// A reduction over `axes` (non-negative, sorted; empty = all).
    /// Input: x. ArgMax/ArgMin give U32 indices.
    Reduce {
        /// Sum, mean, max, min, argmax, argmin or var.
        op: ReduceOp,
        /// The reduced dims.
        axes: Vec<usize>,
        /// Whether reduced dims stay as size 1.
        keepdim: bool,
    },
    /// The same elements in the output's shape (`reshape`, `view`,
    /// `flatten`, `squeeze`, `unsqueeze`). Input: x.
    Reshape,
    /// Dims reordered: output dim i is input dim `dims[i]`. Input: x.
    Permute {
        /// The permutation.
        dims: Vec<usize>,
    },
    /// Elements `start, start + step, ...` (`len` of them) along `dim`
    /// (`narrow`, `slice`, `slice_step`). Input: x.
    Slice {
        /// The sliced dim (non-negative).
        dim: usize,
        /// First index.
        start: usize,
        /// Elements kept.
        len: usize,
        /// Distance between kept indices (1 for a narrow).
        step: usize,
    },
    /// Size-1 dims repeated to the output's shape. Input: x.
    Expand,
    /// Inputs joined along `dim` (non-negative, of the output);
    /// `stack` inserts that dim first.
    Concat {
        /// The joined dim of the output.
        dim: usize,
        /// `stack` rather than `cat`.
        stack: bool,
    },
    /// Rows of x picked along `dim` by U32 indices. Inputs: x, indices.
    IndexSelect {
        /// The indexed dim (non-negative).
        dim: usize,
    },
    /// `torch.gather`: out[..i..] = x[..index[..i..]..] along `dim`. Inputs: x, index.
    Gather {
        /// The gathered dim (non-negative).
        dim: usize,
    },
    /// Embedding lookup of U32 ids. Inputs: ids, weight.
    Embedding,
    /// Dropout; the identity when not training. Input: x.
    Dropout {
        /// Drop probability.
        p: f32,
        /// Whether elements were dropped.
        training: bool,
    },
    /// `softmax(q kᵀ · scale + mask) v`. Inputs: q, k, v, mask (optional).
    Attention {
        /// Query i sees keys j ≤ i.
        causal: bool,
        /// The scores' scale (`1/√D` resolved).
        scale: f32,
    },
    /// A recurrent cell over a sequence ([`Tensor::recurrent`]). Inputs: xw
    /// `[T, B, G·H]`, w_hh, b_hh (optional), h0, c0 (optional). Outputs:
    /// the states `[T, B, H]`, h_n, c_n (LSTM).
    Recurrent {
        /// RNN, LSTM or GRU.
        kind: RecurrentKind,
        /// t = T−1 down to 0.
        reverse: bool,
    },
    /// Rotary position embedding. Inputs: x, cos, sin.
    Rotary,
    /// An op the trace records but that has no meaning outside a training
    /// step (a loss, an augmentation, a [`custom_op`](Tensor::custom_op)).
    Opaque(&'static str),
}

impl TraceOp {
    /// A short name for messages (`conv2d`, `unary relu`).
    pub fn name(&self) -> String {
        match self {
            TraceOp::Unary(op) => op.op_name().to_string(),
            TraceOp::Binary(op) => op.op_name().to_string(),
            TraceOp::Reduce { op, .. } => op.name().to_string(),
            TraceOp::Opaque(name) => (*name).to_string(),
            other => {
                let debug = format!("{other:?}");
                let end = debug.find([' ', '(', '{']).unwrap_or(debug.len());
                debug[..end].to_string()
            }
        }
    }
}

/// One op as it ran: what it was, what it read and what it made.
#[derive(Clone, Debug)]
pub struct TracedOp {
    /// The op and its attributes.
    pub op: TraceOp,
    /// Its inputs in the order [`TraceOp`] documents; `None` for an
    /// optional input not given.
    pub inputs: Vec<Option<Tensor>>,
    /// Its outputs (most ops have one).
    pub outputs: Vec<Tensor>,
}

thread_local! {
    /// The ops recorded so far, while a trace runs on this thread.
    static RECORD: RefCell<Vec<TracedOp>> = const { RefCell::new(Vec::new()) };
    /// 0 while no trace runs on this thread (the only value an op reads
    /// then); during a trace, 1 + the number of ops running, so that only
    /// the outermost records.
    static LEVEL: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` and returns its result with every op it ran, in order, with
/// the id of the first tensor made during the run (tensors below it
/// existed before: inputs, parameters, constants the function captured).
///
/// # Panics
/// When a trace is already running on this thread.
pub fn trace<R>(f: impl FnOnce() -> R) -> (R, Vec<TracedOp>, u64) {
    assert!(!is_tracing(), "wgrad: trace() inside a running trace");
    /// Ends the trace however `f` ends (a panic included).
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            LEVEL.set(0);
            RECORD.with_borrow_mut(Vec::clear);
        }
    }
    LEVEL.set(1);
    let stop = Stop;
    let first_id = crate::tensor::next_id();
    let out = f();
    let ops = RECORD.take();
    drop(stop);
    (out, ops, first_id)
}

/// Whether a trace is running on this thread.
pub fn is_tracing() -> bool {
    LEVEL.get() != 0
}

/// Marks one op running: ops it calls while this lives are not recorded.
/// Create it first thing in an op, then [`record`](Self::record) the result.
/// Outside a trace it costs one thread-local read.
pub(crate) struct Scope {
    /// Whether this scope raised [`LEVEL`] (a trace was running).
    counted: bool,
    /// Whether this op is the outermost of a trace: the one that records.
    records: bool,
}

/// Opens an op's [`Scope`].
pub(crate) fn scope() -> Scope {
    let level = LEVEL.get();
    if level == 0 {
        return Scope { counted: false, records: false };
    }
    LEVEL.set(level + 1);
    Scope { counted: true, records: level == 1 }
}

impl Scope {
    /// Records the op (when tracing and outermost); `op` is only built then.
    /// An op that returned one of its inputs unchanged (a `contiguous` of
    /// dense data, a `to_dtype` to the same type, dropout when not
    /// training) made no new tensor and is not recorded: its readers read
    /// that input.
    pub fn record(&self, op: impl FnOnce() -> TraceOp, inputs: &[Option<&Tensor>], outputs: &[&Tensor]) {
        if !self.records {
            return;
        }
        if outputs.iter().any(|o| inputs.iter().flatten().any(|i| i.id() == o.id())) {
            return;
        }
        let traced = TracedOp {
            op: op(),
            inputs: inputs.iter().map(|t| t.cloned()).collect(),
            outputs: outputs.iter().map(|t| (*t).clone()).collect(),
        };
        RECORD.with_borrow_mut(|ops| ops.push(traced));
    }

    /// Records an op whose inputs are all given, and returns its one output.
    pub fn output(&self, op: impl FnOnce() -> TraceOp, inputs: &[&Tensor], out: Tensor) -> Tensor {
        if self.records {
            let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
            self.record(op, &inputs, &[&out]);
        }
        out
    }

    /// [`output`](Self::output) for an op with optional inputs.
    pub fn output_opt(&self, op: impl FnOnce() -> TraceOp, inputs: &[Option<&Tensor>], out: Tensor) -> Tensor {
        self.record(op, inputs, &[&out]);
        out
    }

    /// [`output`](Self::output) for a fallible op: only a result is recorded.
    pub fn result(&self, op: impl FnOnce() -> TraceOp, inputs: &[&Tensor], out: Result<Tensor>) -> Result<Tensor> {
        out.map(|t| self.output(op, inputs, t))
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        // A trace that ended (its Stop reset the level) while this scope
        // lived has nothing left to count.
        if self.counted && LEVEL.get() > 1 {
            LEVEL.set(LEVEL.get() - 1);
        }
    }
}

//! A deferred product's store as the fuser sees it (see `tails.rs`): the
//! tail it can take and the launch it rebuilds for one. The op that
//! recorded the product implements [`ProductStore`] (`ops::matmul`), so the
//! recorder knows no op.

use smallvec::SmallVec;

use super::window::Window;
use crate::kernels::unary::UnaryOp;

/// What a product's store does after its own epilogue, as the fuser found it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Tail {
    /// An op of the unary table applied to the stored values.
    pub activation: Option<UnaryOp>,
    /// Whether the values before the activation are stored too.
    pub pre: bool,
    /// Whether a residual is added (after the activation, or before it
    /// where the store says so: [`Takes::residual_first`]).
    pub residual: bool,
    /// Whether the values are multiplied by ReLU's derivative at a second
    /// tensor `y` (`v · (y > 0)`, a ReLU's gradient), last.
    pub relu_grad: bool,
    /// An f16 store's tail: the values are rounded to f16 before each step
    /// (the unfused steps read the stored f16 and round their results).
    pub rounds: bool,
}

/// What a product's store can take in its tail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Takes {
    /// A ReLU whose input nothing holds (the store's `relu` switch).
    pub relu: bool,
    /// Any op of the unary table, the values before it stored or not.
    pub activation: bool,
    /// A residual.
    pub residual: bool,
    /// The residual is added before the activation (batch norm's
    /// `relu(bn(x) + r)`), not after it (`r + act(x @ w)`).
    pub residual_first: bool,
    /// A ReLU's gradient (the backward of `relu(f(x))` where `f`'s
    /// backward is this product).
    pub relu_grad: bool,
    /// The store writes f16: its readers read it through widens and round
    /// their results with narrows, which the tail takes too.
    pub rounds: bool,
}

/// One launch of a product with its tail: what the recorder binds and runs.
/// Its inputs are the deferred launch's, padded with the first one to
/// `inputs`, with the residual and the ReLU gradient's `y` put in the slots
/// the store names; its outputs the result, then, with `binds_pre`, the
/// values before the activation.
pub(crate) struct ProductLaunch {
    pub shader: &'static str,
    pub entry: &'static str,
    pub constants: SmallVec<[(&'static str, f64); 32]>,
    pub params: SmallVec<[u32; 64]>,
    /// Per binding (the deferred launch's inputs, then the outputs).
    pub windows: SmallVec<[Option<Window>; 8]>,
    pub workgroups: u32,
    /// How many inputs it binds.
    pub inputs: usize,
    /// The input slot of the residual, when the tail adds one.
    pub residual_slot: Option<usize>,
    /// The input slot of the ReLU gradient's `y`, when the tail has one.
    pub relu_grad_slot: Option<usize>,
    /// Whether it binds a second output after the result (the values
    /// before the activation; the result fills it when they are not stored).
    pub binds_pre: bool,
}

/// Sets to 1 each of `constants` named in `switches` with its flag on (a
/// store's tail turns its kernel's boolean overrides on).
pub(crate) fn switch_on(constants: &mut [(&'static str, f64)], switches: &[(&str, bool)]) {
    for c in constants.iter_mut() {
        if switches.iter().any(|&(name, on)| on && c.0 == name) {
            c.1 = 1.0;
        }
    }
}

/// A deferred product's launch, rebuilt for a tail: implemented by the op
/// that recorded it (the matmul's store, `ops::matmul`; batch norm's,
/// `ops::batch_norm`), so the recorder
/// knows no op.
pub(crate) trait ProductStore: Send {
    /// Its shader, entry point and workgroups without a tail (the deferred
    /// launch's, for profiles and the replay key).
    fn recorded(&self) -> (&'static str, &'static str, u32);
    /// What the store can take.
    fn takes(&self) -> Takes;
    /// The constants of its launch without a tail (what a replay matches
    /// it by; the deferred launch keeps none of its own).
    fn constants(&self) -> &[(&'static str, f64)];
    /// The launch storing the result through `tail`.
    fn launch(&self, tail: &Tail) -> ProductLaunch;
}

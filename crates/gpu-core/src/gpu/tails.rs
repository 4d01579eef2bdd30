//! The fuser's second rule: elementwise launches that read a product's
//! result merge into the product's store (its *tail*), so that
//! `relu(x @ w + b)`, `gelu(x @ w + b)` and `r + (x @ w + b)` are one
//! launch each, whoever wrote them: the layers and the user write the
//! plain ops, and the fuser finds the epilogue at the settle.
//!
//! A product that one launch binds whole and stores itself (f32, or f16
//! rounded in its store) is deferred like an elementwise launch ([`Node::Product`], carrying a [`ProductStore`]
//! that can rebuild its launch with a tail, `product_store.rs`). At the settle, [`tails`]
//! follows its result through the run: while the value so far has exactly
//! one reader in the run, which reads it densely (element `i` for element
//! `i`), the reader merges into the store when it is
//! - an op of the unary table, first in the tail: the activation. When a
//!   tensor holds the value before it (a gradient reads it: a GELU's input)
//!   the store writes it too; a ReLU with nothing holding its input is the
//!   store's own `relu` switch (no new pipeline);
//! - an add of a dense tensor of the same size: the residual (`x + f(x)`),
//!   after the activation, or before it in a store that says so (batch
//!   norm's `relu(bn(x) + r)`), when nothing holds the value before it
//!   (the store has no place to write it) and the residual is computed
//!   before the product (it is read by the product's launch, encoded at
//!   the product's place in the run);
//! - a ReLU's gradient `g · (y > 0)` whose `g` is the value, last: the
//!   backward of `relu(bn(x) + r)` or `max_pool(relu(x))` stores the
//!   masked gradient straight from the convolution's input gradient or
//!   the pooling's backward (`BackwardStore`), under the same conditions as the residual
//!   (`y`, dense, computed before the product; nothing holds `g`).
//!
//! A store of f16 values (mixed precision: batch norm's, a matmul's or a
//! convolution's) is read through widens, and its readers' results are
//! rounded by narrows: it takes those casts too and rounds where they do,
//! its operands (an f16 residual, `y`) are read through the widens it
//! takes, and its tail ends at a narrow.
//!
//! The merged readers' launches vanish; the last one's output is what the
//! product's launch writes, and the product's own result buffer is never
//! backed unless a tensor holds it. Which merges happen depends only on the
//! run's structure and on which values tensors hold, which the replay key
//! records (`replay.rs`), so a replayed step merges as its recording did.

use smallvec::SmallVec;

use super::fusion::{held, Access, Deferred, Merge, Node};
use super::product_store::{Tail, Takes};
use crate::kernels::binary::BinaryOp;
use crate::kernels::unary::UnaryOp;

/// Which launches of a run a product's tail merged, and where its buffers are.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TailPlan {
    pub tail: Tail,
    /// The merged readers, in order; the last one's output is the result.
    pub absorbed: SmallVec<[usize; 2]>,
    /// The launch whose output holds the values before the activation.
    pub pre: Option<usize>,
    /// The residual: input `slot` of launch `launch`.
    pub residual: Option<(usize, usize)>,
    /// The ReLU gradient's `y`: input `slot` of launch `launch`.
    pub relu_grad: Option<(usize, usize)>,
    /// Launches merged besides the chain (an f16 residual's widen).
    pub operands: SmallVec<[usize; 1]>,
}

/// The tail of every product in `run` (`None` for other launches) and
/// whether each launch is merged into one, with the elementwise merges in
/// `into` that a merged reader took part in undone: its producers are
/// computed and stored before the product, and it is not computed inside a
/// later consumer.
pub(crate) fn tails(run: &[Deferred], into: &mut [Option<Merge>]) -> (Vec<Option<TailPlan>>, Vec<bool>) {
    let mut plans: Vec<Option<TailPlan>> = (0..run.len()).map(|_| None).collect();
    let mut absorbed = vec![false; run.len()];
    for p in (0..run.len()).filter(|&p| run[p].product.is_some()) {
        let plan = tail(run, p);
        for &c in plan.absorbed.iter().chain(&plan.operands) {
            absorbed[c] = true;
            into[c] = None;
            for m in into.iter_mut() {
                if m.is_some_and(|m| m.consumer == c) {
                    *m = None;
                }
            }
        }
        plans[p] = Some(plan);
    }
    (plans, absorbed)
}

/// The launches of `run` after `from` that read its output: (launch, slot).
fn readers(run: &[Deferred], from: usize) -> SmallVec<[(usize, usize); 2]> {
    let id = run[from].output.id();
    let mut found = SmallVec::new();
    for (c, d) in run.iter().enumerate().skip(from + 1) {
        for (slot, b) in d.inputs.iter().enumerate() {
            if b.id() == id {
                found.push((c, slot));
            }
        }
    }
    found
}

/// Whether input `slot` of launch `c`, an operand a tail would bind next
/// to product `p`'s inputs, is read densely and computed before the product
/// (or outside the run): the product's launch, encoded at its place in the
/// run, reads it.
fn ready(run: &[Deferred], p: usize, c: usize, slot: usize) -> bool {
    let id = run[c].inputs[slot].id();
    let early = run[..c].iter().rposition(|q| q.output.id() == id).is_none_or(|q| q < p);
    early && run[c].fusable.access[slot] == Access::Dense
}

/// The widen in `run` (after product `p`, before launch `c`) producing
/// input `slot` of `c` that only `c` reads, from f16 computed before the
/// product: an f16 residual, bound as it is in an f16 store.
fn widened_operand(run: &[Deferred], p: usize, c: usize, slot: usize) -> Option<usize> {
    let id = run[c].inputs[slot].id();
    let w = run[..c].iter().rposition(|q| q.output.id() == id).filter(|&w| w > p)?;
    let only_c = readers(run, w)[..] == [(c, slot)];
    (run[w].fusable.node == Node::Widen && only_c && !held(&run[w]) && ready(run, p, w, 0)).then_some(w)
}

/// What a reader merged into a store does there.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// An f16 store's widen or narrow.
    Cast,
    Activation(UnaryOp),
    /// Adds input `slot` of launch `launch`: `(launch, slot)`.
    Residual((usize, usize)),
    /// Masks by ReLU's derivative at input `slot` of launch `launch`.
    ReluGrad((usize, usize)),
}

/// The tail of product `p`: its readers merge while each is the value's
/// only reader, reads it densely, and comes later in the store's order
/// (activation and residual in the order the store takes them, then a
/// ReLU's gradient). A store of f16 values ([`Takes::rounds`]) is read
/// through widens and its readers' f16 results through narrows: it takes
/// those too, rounding where they do, and its tail ends at a narrow.
fn tail(run: &[Deferred], p: usize) -> TailPlan {
    let takes = run[p].product.as_ref().map_or(Takes::default(), |s| s.takes());
    let n = run[p].fusable.n;
    let mut plan = TailPlan::default();
    // The plan up to the last narrow, for an f16 store.
    let mut rounded = TailPlan::default();
    let (mut at, mut last_rank) = (p, 0);
    loop {
        let [(c, slot)] = readers(run, at)[..] else { break };
        let d = &run[c];
        if d.fusable.access[slot] != Access::Dense || d.fusable.n != n || d.product.is_some() {
            break;
        }
        let holds = held(&run[at]);
        let (activation_rank, residual_rank) = if takes.residual_first { (2, 1) } else { (1, 2) };
        // An operand read next to the value (the residual, a ReLU
        // gradient's y): an f32 tensor, or in an f16 store the f16 tensor
        // that a widen of the run reads (the widen merges too).
        let operand = |slot: usize| match takes.rounds {
            true => widened_operand(run, p, c, slot).map(|w| (w, 0)),
            false => ready(run, p, c, slot).then_some((c, slot)),
        };
        // A ReLU's switch, a residual and a ReLU's gradient store only the
        // result, so nothing may hold what they read.
        let (rank, step) = match d.fusable.node {
            // An f16 store's casts (the values in between are f32).
            Node::Widen | Node::Narrow if takes.rounds && !holds => (last_rank, Step::Cast),
            Node::Unary(op) if takes.activation || op == UnaryOp::Relu && takes.relu && !holds => {
                (activation_rank, Step::Activation(op))
            }
            Node::Binary(BinaryOp::Add) if takes.residual && !holds => match operand(1 - slot) {
                Some(r) => (residual_rank, Step::Residual(r)),
                None => break,
            },
            // Inputs x, y, g: the product's value is the gradient, and the
            // ReLU's derivative reads y alone.
            Node::UnaryGrad(UnaryOp::Relu) if takes.relu_grad && !holds && slot == 2 => match operand(1) {
                Some(y) => (3, Step::ReluGrad(y)),
                None => break,
            },
            _ => break,
        };
        if step != Step::Cast && rank <= last_rank {
            break;
        }
        let t = &mut plan.tail;
        match step {
            Step::Activation(op) => {
                (t.activation, t.pre) = (Some(op), holds);
                plan.pre = holds.then_some(at);
            }
            Step::Residual(operand) => {
                t.residual = true;
                plan.residual = Some(operand);
                // An f16 residual's widen merges with the add.
                plan.operands.extend((operand.0 != c).then_some(operand.0));
            }
            Step::ReluGrad(y) => {
                t.relu_grad = true;
                plan.relu_grad = Some(y);
                plan.operands.extend((y.0 != c).then_some(y.0));
                // x, which the derivative does not read, widened too (the
                // rule binds y for it): that widen has no reader left.
                if y.0 != c {
                    plan.operands.extend(widened_operand(run, p, c, 0));
                }
            }
            Step::Cast => {}
        }
        plan.absorbed.push(c);
        (at, last_rank) = (c, rank);
        if d.fusable.node == Node::Narrow {
            rounded = plan.clone();
        }
    }
    if takes.rounds {
        rounded.tail.rounds = !rounded.absorbed.is_empty();
        rounded
    } else {
        plan
    }
}

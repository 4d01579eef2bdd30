//! The recorded graph and reverse-mode backward.
//!
//! Every op that has an input requiring a gradient attaches a [`Node`] to its
//! output: the inputs (edges) and a closure that maps the output's gradient to
//! the inputs' gradients. `backward` orders the graph topologically, walks it
//! from the output, and records the gradient ops into the same pending GPU
//! batch as the forward pass. Each node is dropped as soon as it has run
//! (unless the graph is retained), which releases the activations it saved.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};

use crate::{DType, Tensor};

/// Maps (output gradient, inputs, output) to one optional gradient per input.
pub(crate) type BackwardFn = Box<dyn Fn(&Tensor, &[Tensor], &Tensor) -> Vec<Option<Tensor>> + Send + Sync>;

/// How a tensor was produced.
pub(crate) struct Node {
    /// Op name for error messages.
    pub op: &'static str,
    /// The inputs the rule reads, and [edges](Tensor::edge) to the others.
    pub inputs: Vec<Tensor>,
    /// The output's buffer, when the rule reads the output.
    pub output: Option<wgrad_gpu_core::Buffer>,
    pub backward: BackwardFn,
    /// `Some((dim, start))` when the output is `narrow(dim, start, ..)` of
    /// the one input: backward then hands the output's gradient on as a
    /// slice of the input's (see [`Pending`]) instead of running
    /// `backward`, which pads it with zeros to the input's shape.
    pub narrowed: Option<(usize, usize)>,
}

/// Which values an op's backward rule reads besides the output gradient:
/// its node holds those and only [edges](Tensor::edge) to the rest (their
/// identity, shape and dtype), so an activation no rule reads is freed as
/// soon as the forward pass drops it, as PyTorch keeps only what a
/// `grad_fn` saved, and the fuser does not store it. A rule that reads a
/// value it does not declare panics (an edge has no data), in every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Saves {
    /// Bit `i`: input `i`'s data.
    inputs: u32,
    /// The output's data.
    output: bool,
}

impl Saves {
    /// Every input and the output: what a rule may read unless it says otherwise.
    pub const ALL: Saves = Saves { inputs: u32::MAX, output: true };
    /// Shapes and dtypes only (an add's rule: the gradient passes through).
    pub const NOTHING: Saves = Saves { inputs: 0, output: false };

    /// The inputs whose flag is set, and not the output.
    pub const fn inputs<const N: usize>(read: [bool; N]) -> Saves {
        let mut inputs = 0;
        let mut i = 0;
        while i < N {
            if read[i] {
                inputs |= 1 << i;
            }
            i += 1;
        }
        Saves { inputs, output: false }
    }

    /// These inputs, and the output too.
    pub const fn and_output(self) -> Saves {
        Saves { output: true, ..self }
    }

    /// Whether the rule reads input `i`'s data.
    pub fn input(self, i: usize) -> bool {
        i >= 32 || self.inputs >> i & 1 == 1
    }

    /// Whether the rule reads the output's data.
    pub fn output(self) -> bool {
        self.output
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless inside [`no_grad`] (per thread).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Whether an op on `inputs` is recorded for the backward: gradients are
/// enabled and some input requires one.
pub(crate) fn records(inputs: &[&crate::Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

/// Runs `f` without recording gradients, like `with torch.no_grad():`.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Disables gradient recording until dropped.
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    /// Turns recording off for this thread.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let previous = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { previous }
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

thread_local! {
    /// The last walk's node count, and its set of seen ids (kept cleared
    /// with its capacity): a training loop walks graphs of one size, so a
    /// walk allocates each of its lists once.
    static LAST_WALK: Cell<usize> = const { Cell::new(0) };
    static SEEN: Cell<HashSet<u64>> = Cell::new(HashSet::new());
}

/// Tensors reachable from `root` through nodes, outputs before their inputs.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    // Iterative post-order DFS: deep graphs (long unrolled RNNs) must not
    // overflow the stack.
    let hint = LAST_WALK.get();
    let mut order = Vec::with_capacity(hint);
    // A walk inside a backward rule (double backward) takes an empty set.
    let mut seen = SEEN.take();
    seen.clear();
    let mut stack: Vec<(Tensor, bool)> = Vec::with_capacity(hint.max(1));
    stack.push((root.clone(), false));
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        let at = stack.len();
        t.for_each_node_input(|i| {
            if i.requires_grad() && !seen.contains(&i.id()) {
                stack.push((i.clone(), false));
            }
        });
        // Below its inputs, so that it is emitted after them.
        stack.insert(at, (t, true));
    }
    order.reverse();
    LAST_WALK.set(order.len());
    seen.clear();
    SEEN.set(seen);
    order
}

/// `a + b` for two gradients of one tensor: f16 gradients (of an f16 cast
/// read by two ops) are added in f32 and rounded once, like PyTorch's f16
/// accumulation.
fn accumulate(a: &Tensor, b: &Tensor) -> Tensor {
    match a.dtype() {
        DType::F16 => (&a.to_dtype(DType::F32) + &b.to_dtype(DType::F32)).to_dtype(DType::F16),
        _ => a + b,
    }
}

/// A gradient waiting for its tensor's turn in the walk.
enum Pending {
    /// The whole gradient.
    Whole(Tensor),
    /// Gradients of narrows of the tensor along `dim`, each with its start
    /// (self-attention's q, k and v narrowed from one packed projection).
    /// On the CPU backend, padding each with zeros and adding the pads
    /// costs passes over the whole tensor per slice; slices that tile the
    /// dim are joined by one concatenation instead when the tensor's turn
    /// comes (as PyTorch's `split` backward does). On a GPU the fuser
    /// reads the pads in place in one launch of the adds, fewer launches
    /// than a copy per slice, so the pads stay.
    Slices { dim: usize, parts: Vec<(usize, Tensor)> },
}

impl Pending {
    /// `self` with `more` added; slices of one dim stay slices.
    fn add(self, more: Pending, like: &Tensor) -> Pending {
        match (self, more) {
            (Pending::Slices { dim, mut parts }, Pending::Slices { dim: d, parts: more }) if d == dim => {
                parts.extend(more);
                Pending::Slices { dim, parts }
            }
            (a, b) => Pending::Whole(accumulate(&a.whole(like), &b.whole(like))),
        }
    }

    /// The gradient of `like` as one tensor of its shape and dtype.
    fn whole(self, like: &Tensor) -> Tensor {
        let (dim, mut parts) = match self {
            Pending::Whole(g) => return g,
            Pending::Slices { dim, parts } => (dim, parts),
        };
        let _scope = wgrad_gpu_core::profile::scope(|| "narrow backward".into());
        let shape = like.shape();
        if parts.len() == 1 && parts[0].0 == 0 && parts[0].1.shape()[dim] == shape[dim] {
            return parts.pop().expect("one slice").1;
        }
        if !like.device().is_gpu() {
            let mut order: Vec<usize> = (0..parts.len()).collect();
            order.sort_unstable_by_key(|&i| parts[i].0);
            let mut end = 0;
            let tiles = order.iter().all(|&i| {
                let fits = parts[i].0 == end;
                end += parts[i].1.shape()[dim];
                fits
            }) && end == shape[dim];
            if tiles {
                let ordered: Vec<&Tensor> = order.iter().map(|&i| &parts[i].1).collect();
                return Tensor::cat(&ordered, dim as isize);
            }
        }
        // Each slice padded and the pads added, in the order they came.
        let padded = |(start, g): (usize, Tensor)| {
            let p = g.pad_into(&shape, dim, start);
            if p.dtype() == like.dtype() {
                p
            } else {
                p.to_dtype(like.dtype())
            }
        };
        let mut parts = parts.into_iter().map(padded);
        let first = parts.next().expect("a pending gradient has a slice");
        parts.fold(first, |sum, p| accumulate(&sum, &p))
    }
}

/// Backpropagates `grad` (shaped like `root`) through the graph of `root`,
/// accumulating into the `.grad()` of every leaf that requires a gradient.
pub(crate) fn backward(root: &Tensor, grad: Tensor, retain_graph: bool) {
    let _guard = NoGradGuard::new();
    // Each backward rule runs in the dtypes its forward recorded, never recast.
    let _no_autocast = crate::autocast::AutocastGuard::new(false);
    let order = topological_order(root);
    // At most one gradient per node waits at a time.
    let mut grads: HashMap<u64, Pending> = HashMap::with_capacity(order.len());
    let grad = if grad.dtype() == root.dtype() { grad } else { grad.to_dtype(root.dtype()) };
    grads.insert(root.id(), Pending::Whole(grad));
    // Consuming the order drops our handle on each tensor once it is done.
    for t in order {
        let Some(g) = grads.remove(&t.id()) else { continue };
        let g = g.whole(&t);
        if t.is_leaf() {
            t.accumulate_grad(&g);
            crate::grad_hook::leaf_finished(&t);
            continue;
        }
        let node = t.take_node(retain_graph).unwrap_or_else(|| {
            panic!(
                "backward: trying to backward through the graph a second time (its saved tensors were freed); \
                 call backward_retain_graph() on the first backward if you need a second one"
            )
        });
        if let (Some((dim, start)), false) = (node.narrowed, crate::anomaly::is_anomaly_enabled()) {
            let input = &node.inputs[0];
            if input.requires_grad() {
                let g = if g.dtype() == input.dtype() { g } else { g.to_dtype(input.dtype()) };
                let slice = Pending::Slices { dim, parts: vec![(start, g)] };
                let pending = match grads.remove(&input.id()) {
                    Some(prev) => prev.add(slice, input),
                    None => slice,
                };
                grads.insert(input.id(), pending);
            }
            if retain_graph {
                t.put_node(node);
            }
            continue;
        }
        // Kernels recorded from here on compute this node's gradients.
        let _anomaly_scope = crate::anomaly::backward_of(node.op);
        // The output as its rule reads it: `t` may be an edge itself.
        let out = match &node.output {
            Some(b) => Tensor::from_parts(b.clone(), t.layout(), t.dtype()),
            None => t.edge(),
        };
        let input_grads = {
            let _scope = wgrad_gpu_core::profile::scope(|| format!("{} backward", node.op));
            (node.backward)(&g, &node.inputs, &out)
        };
        if crate::anomaly::is_anomaly_enabled() {
            let from: Vec<&Tensor> =
                [&g].into_iter().chain(&node.inputs).chain([&out]).filter(|t| t.has_data()).collect();
            crate::anomaly::check_gradients(node.op, &from, &input_grads);
        }
        assert_eq!(
            input_grads.len(),
            node.inputs.len(),
            "wgrad internal: {} returned the wrong number of gradients",
            node.op
        );
        for (input, ig) in node.inputs.iter().zip(input_grads) {
            let Some(ig) = ig else { continue };
            if !input.requires_grad() {
                continue;
            }
            // A gradient has its tensor's dtype (an f16 activation gets an
            // f16 gradient even from a rule that computed it in f32).
            let ig = if ig.dtype() == input.dtype() { ig } else { ig.to_dtype(input.dtype()) };
            assert_eq!(
                ig.shape(),
                input.shape(),
                "wgrad internal: {} produced a gradient of shape {:?} for an input of shape {:?}",
                node.op,
                ig.shape(),
                input.shape()
            );
            let pending = match grads.remove(&input.id()) {
                Some(prev) => prev.add(Pending::Whole(ig), input),
                None => Pending::Whole(ig),
            };
            grads.insert(input.id(), pending);
        }
        if retain_graph {
            t.put_node(node);
        }
        // `node` (and the activations its closure captured) drops here.
    }
}

//! The fuser's planner: which deferred elementwise launches merge into one
//! generated kernel.
//!
//! Elementwise launches (unary, `unary_grad`, binary, `where`, and the float
//! casts `f16_to_f32` / `f32_to_f16`) are not encoded when recorded: the batch keeps them as a *run* of [`Deferred`]
//! launches until any other command (another kernel, an upload, a copy, a
//! readback, the submit) must be encoded after them. Then [`plan`] turns the
//! run into expression trees, one per launch that must really run, and the
//! batch encodes each tree as one launch (`fused_wgsl.rs` writes its kernel).
//!
//! A producer P merges into its consumer C when
//! - C reads P's output densely (element `i` of C reads element `i` of P,
//!   the same element count): no index map to compose;
//! - no other launch of the run reads it, so it is computed once, inside C;
//!   when a tensor still holds it (a live handle outside the run: saved for
//!   backward, kept by the user) the fused kernel also stores it, otherwise
//!   the value lives in registers only and its buffer is never backed;
//! - and, by construction, nothing between P and C writes P's inputs: a run
//!   holds only elementwise launches, which write only their fresh outputs,
//!   and every in-place kernel (an optimizer step, a running-statistics
//!   update, a copy) ends the run before it is encoded.
//!
//! The casts add element types to the picture. Every value in registers is
//! an f32; packed f16 storage (two halves per u32 word) appears only at the
//! edges of a tree:
//! - a *widen* ([`Node::Widen`], `f16_to_f32`) reads its f16 input as a leaf
//!   (`half_at(l[j / 2], j)`), so `relu(widen(x16))` never writes the f32
//!   copy unless a tensor still holds it. Widening moves no element, so its
//!   consumer may read it through any index map `A` (a strided or broadcast
//!   view, a shorter count) when it is not stored: the f16 leaf is then read
//!   at `A(i)`, and its dense f16 leaf becomes a strided one;
//! - a *gather* ([`Node::Gather`], `copy::contiguous` of a strided view)
//!   reads its input as a leaf through the view's index map and computes
//!   nothing, so `relu(contiguous(xᵀ))` reads xᵀ in place; it merges only
//!   into a consumer that reads it densely;
//! - a *narrow* ([`Node::Narrow`], `f32_to_f16`) is a tree's root (its
//!   packed output is read by nothing in registers), and that tree runs
//!   one thread per output word: each evaluates elements `2k` and `2k + 1`
//!   (the second masked past `n`) and stores the word whole, since two
//!   threads storing halves of one word would race. The one exception is a
//!   narrow that a widen reads back densely and nothing else holds (mixed
//!   precision's `widen(narrow(x))` between two f16 ops): it merges into
//!   the widen as the rounding it is, in registers.
//!
//! A *reduction* ([`Node::Reduce`], a sum or mean over the trailing dims
//! of a dense tensor) is recorded through the fuser too, so that the
//! elementwise tree producing its input is evaluated inside it, a
//! prologue: `mean((a - b)²)` is one launch (plus the short sum of a long
//! reduction's partials), which reads a and b and writes no difference or
//! square unless a tensor holds them (each element is visited once, so a
//! held intermediate is stored as in any fused kernel). Alone it runs the
//! kernel it was recorded with; merged, its generated kernel adds in the
//! same order as `reduce.wgsl`'s `main`, so results are bit-identical.
//!
//! A *pad* ([`Node::Pad`], `copy::pad`: a view written into zeros, narrow's
//! backward) is a gather whose map reaches its input only inside a region:
//! outside it the element is 0 and nothing is read. It reads a leaf, or,
//! when it reads its input as blocks, the tree that computes it, evaluated
//! at the element the pad wants (a gradient, or the dense copy of a
//! permuted one read through the gather's map), and merges into a
//! consumer that reads it densely, so the gradients of a tensor's narrowed
//! parts (attention's q, k and v cut from one projection) add up in one
//! launch instead of a fill, a copy and an add per part. It has no kernel
//! of its own: alone, it runs as a generated kernel of one node, and it is
//! only deferred when its buffers fit one binding (its map's offset wraps
//! in u32 below the region, which the ranged kernels' windows do not model).

use smallvec::SmallVec;

use super::handle::BufferHandle;
use super::product_store::ProductStore;
use crate::kernels::binary::BinaryOp;
use crate::kernels::unary::UnaryOp;

/// What one elementwise launch computes, as the fuser sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Node {
    /// `f(x)` (inputs: x).
    Unary(UnaryOp),
    /// `g * f'(x)` given `y = f(x)` (inputs: x, y, g).
    UnaryGrad(UnaryOp),
    /// `f(a, b)` (inputs: a, b).
    Binary(BinaryOp),
    /// `c != 0 ? a : b` (inputs: c, a, b).
    Where,
    /// An f16 widened to f32, exactly (inputs: x, packed f16).
    Widen,
    /// An f32 rounded to f16, nearest even, ±inf past ±65504 (inputs: x);
    /// its output is packed f16.
    Narrow,
    /// A strided view copied out dense, word for word (inputs: x, read
    /// through its access): `copy::contiguous`.
    Gather,
    /// A view written into zeros (inputs: x, read through its access:
    /// `[outer, dim, inner]` blocks with the view's strides when those dims
    /// coalesce, see [`reads_blocks`], else the view's map over the whole
    /// output; either from an offset wrapped below `lo`): element `i` is
    /// read when `lo <= (i / inner) % dim < hi`, else 0 (`copy::pad`,
    /// narrow's backward).
    Pad {
        /// Elements per step of the padded dim (the product of the dims after it).
        inner: usize,
        /// Size of the padded dim.
        dim: usize,
        /// The region along it: `lo..hi`.
        lo: usize,
        /// See `lo`.
        hi: usize,
        /// Whether the view is every element of its buffer exactly once (a
        /// permutation of it, as a gradient is): only then may a tree
        /// evaluated inside the pad store a value a tensor holds, since
        /// elements the pad never reads would be left unwritten.
        covers: bool,
    },
    /// The sum (or mean) of each of `rows` runs of `m` consecutive
    /// elements of a dense input (inputs: x, read densely; `n` = rows · m),
    /// in `chunks` ranges of `chunk` per row: `reduce.wgsl`'s `main` with
    /// 256 threads, whose partial sums (a mean's divided by m) are its
    /// output. Only ever a root: an elementwise tree producing its input
    /// is evaluated inside it, a prologue (`ops::reduce`).
    Reduce {
        /// Divide by m.
        mean: bool,
        /// Outputs.
        rows: usize,
        /// Elements per output.
        m: usize,
        /// Elements per workgroup.
        chunk: usize,
        /// Workgroups per output.
        chunks: usize,
    },
    /// A matrix product (or a convolution's) stored as f32, one launch
    /// binding it whole: a root that nothing merges into, whose readers
    /// may merge into its store (`tails.rs`; inputs: as its launch binds).
    Product,
}

impl Node {
    /// A short name for fused-kernel labels and profiles (`relu`, `add`, `relu'`).
    pub fn name(self) -> String {
        match self {
            Node::Unary(op) => op.name().to_lowercase(),
            Node::UnaryGrad(op) => format!("{}'", op.name().to_lowercase()),
            Node::Binary(op) => op.name().to_lowercase(),
            Node::Where => "where".into(),
            Node::Widen => "f16_to_f32".into(),
            Node::Narrow => "f32_to_f16".into(),
            Node::Gather => "contiguous".into(),
            Node::Pad { .. } => "pad".into(),
            Node::Reduce { mean, .. } => if mean { "mean" } else { "sum" }.into(),
            Node::Product => "product".into(),
        }
    }
}

/// How a launch reads one input for its output element `i`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Access {
    /// Element `i`.
    Dense,
    /// Element `offset + Σ_d idx_d(i) · strides[d]` over the (coalesced) `shape`.
    Strided { shape: crate::layout::Dims, strides: crate::layout::Dims, offset: usize },
}

impl Access {
    /// The access of a view of `shape` with `strides` and `offset`: dense when
    /// it is the contiguous row-major layout at offset 0.
    pub fn of(shape: &[usize], strides: &[usize], offset: usize) -> Access {
        let mut dense = offset == 0;
        let mut expect = 1;
        for d in (0..shape.len()).rev() {
            dense &= shape[d] == 1 || strides[d] == expect;
            expect *= shape[d];
        }
        if dense {
            Access::Dense
        } else {
            Access::Strided { shape: shape.into(), strides: strides.into(), offset }
        }
    }
}

/// The fuser's view of an elementwise launch: its node, its `n` outputs
/// (written densely) and how it reads each input.
#[derive(Clone, Debug)]
pub(crate) struct Fusable {
    pub node: Node,
    pub n: usize,
    /// Inline: one per input, at most three.
    pub access: SmallVec<[Access; 3]>,
}

/// A recorded elementwise launch (or product, see `tails.rs`) not yet
/// encoded: the original launch (what runs when it fuses with nothing) and
/// its [`Fusable`] description. Holds buffer handles, so its buffers stay
/// alive until it is encoded.
pub(crate) struct Deferred {
    pub shader: &'static str,
    pub entry: &'static str,
    pub constants: SmallVec<[(&'static str, f64); 4]>,
    pub params: SmallVec<[u32; 32]>,
    pub inputs: SmallVec<[BufferHandle; 4]>,
    pub output: BufferHandle,
    pub workgroups: u32,
    pub fusable: Fusable,
    /// Its profile record, made when it was recorded (so that its op name,
    /// scope and FLOPs are those of the op that recorded it), while profiling.
    pub record: Option<usize>,
    /// A product's store ([`Node::Product`]), which rebuilds its launch
    /// with the tail the fuser finds.
    pub product: Option<Box<dyn ProductStore>>,
}

/// A value in a fused expression: launch `launch`'s input `slot` read from
/// memory, or the result of launch `launch` computed in place.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// `run[launch].inputs[slot]`, read through `run[launch].fusable.access[slot]`.
    Leaf { launch: usize, slot: usize },
    /// `run[launch]`'s node applied to its arguments (one per input slot).
    Node { launch: usize, args: Vec<Expr> },
}

impl Expr {
    /// The launches this expression evaluates, producers first.
    pub fn launches(&self) -> Vec<usize> {
        match self {
            Expr::Leaf { .. } => Vec::new(),
            Expr::Node { launch, args } => {
                let mut v: Vec<usize> = args.iter().flat_map(Expr::launches).collect();
                v.push(*launch);
                v
            }
        }
    }

    /// How many launches this expression merges.
    pub fn nodes(&self) -> usize {
        match self {
            Expr::Leaf { .. } => 0,
            Expr::Node { args, .. } => 1 + args.iter().map(Expr::nodes).sum::<usize>(),
        }
    }

    /// Levels of launches below and including the root (1: the root alone).
    pub fn depth(&self) -> usize {
        match self {
            Expr::Leaf { .. } => 0,
            Expr::Node { args, .. } => 1 + args.iter().map(Expr::depth).max().unwrap_or(0),
        }
    }
}

/// Producer `p` is computed inside launch `consumer` as its input `slot`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Merge {
    pub consumer: usize,
    pub slot: usize,
    /// Whether the fused kernel also writes `p`'s output to memory: a tensor
    /// still holds it (saved for backward, kept by the user). When false the
    /// value lives only in registers and its buffer is never backed.
    pub store: bool,
}

/// Whether a fused kernel would have to store `d`'s output: a handle
/// beyond the run's two (the producer's and its one reader's) is a tensor
/// holding it, or it is backed already.
pub(crate) fn held(d: &Deferred) -> bool {
    d.output.handles() != 2 || d.output.is_backed()
}

/// Which producers merge into which consumer (`into[p]`).
pub(crate) fn merges(run: &[Deferred]) -> Vec<Option<Merge>> {
    use std::collections::HashMap;
    let producer: HashMap<usize, usize> = run.iter().enumerate().map(|(i, d)| (d.output.id(), i)).collect();
    let mut uses: Vec<Vec<(usize, usize)>> = vec![Vec::new(); run.len()];
    for (c, d) in run.iter().enumerate() {
        for (slot, b) in d.inputs.iter().enumerate() {
            if let Some(&p) = producer.get(&b.id()) {
                if p < c {
                    uses[p].push((c, slot));
                }
            }
        }
    }
    (0..run.len())
        .map(|p| {
            // One reader in the run.
            let [(consumer, slot)] = uses[p][..] else { return None };
            let c = &run[consumer].fusable;
            // No handle beyond the run's two (P's and C's): never stored.
            let store = held(&run[p]);
            // Reading densely the same number of elements: no index map to compose.
            let aligned = c.access[slot] == Access::Dense && c.n == run[p].fusable.n;
            let fits = match run[p].fusable.node {
                // A narrow that a widen reads back, its f16 stored nowhere:
                // the rounding, computed in registers.
                Node::Narrow => aligned && !store && c.node == Node::Widen,
                // Partial sums: only ever a root; a product's readers merge
                // into it instead (`tails.rs`).
                Node::Reduce { .. } | Node::Product => false,
                // Moves no element: read through C's map, unless all of it is stored.
                Node::Widen => aligned || !store,
                // A pad reading its input as blocks evaluates it at the
                // element it wants, inside its region only, each element
                // once (a gradient computed, or copied out of a permuted
                // view, then padded: one launch).
                _ if !store && reads_blocks(&run[consumer]) => true,
                _ => aligned,
            };
            // A widen's input is f16, which no value in registers is but a
            // narrow's rounding; a product reads its operands from memory.
            let takes = match c.node {
                Node::Widen => run[p].fusable.node == Node::Narrow,
                Node::Product => false,
                _ => true,
            };
            (fits && takes).then_some(Merge { consumer, slot, store })
        })
        .collect()
}

/// Whether `expr` holds a pad that does not read every element of its
/// input's buffer once (`covers`) and whose input is a tree storing a value
/// (some of which the pad would never compute): such a kernel is not
/// generated, and the pad's producers run as launches of their own.
pub(crate) fn stores_partly(run: &[Deferred], into: &[Option<Merge>], expr: &Expr) -> bool {
    let Expr::Node { launch, args } = expr else { return false };
    let stored = |l: &usize| into[*l].is_some_and(|m| m.store);
    match run[*launch].fusable.node {
        Node::Pad { covers: false, .. } => args[0].launches().iter().any(stored),
        _ => args.iter().any(|a| stores_partly(run, into, a)),
    }
}

/// Whether `d` is a pad reading its input as `[outer, dim, inner]` blocks
/// (`copy::pad` for views whose dims before and after the padded one
/// coalesce, which a dense input's always do).
pub(crate) fn reads_blocks(d: &Deferred) -> bool {
    match (d.fusable.node, &d.fusable.access[..]) {
        (Node::Pad { inner, dim, .. }, [Access::Strided { shape, .. }]) => {
            shape.len() == 3 && shape[1] == dim && shape[2] == inner
        }
        _ => false,
    }
}

/// The expression launch `root` computes once the merges in `into` are applied.
pub(crate) fn expression(run: &[Deferred], into: &[Option<Merge>], root: usize) -> Expr {
    let args = (0..run[root].inputs.len())
        .map(|slot| match into.iter().position(|m| m.is_some_and(|m| m.consumer == root && m.slot == slot)) {
            Some(p) => expression(run, into, p),
            None => Expr::Leaf { launch: root, slot },
        })
        .collect();
    Expr::Node { launch: root, args }
}

/// Keeps the top `levels` levels of `expr` (its root's, `levels` ≥ 1) and
/// undoes the merges of the launches right below them, each of which then
/// heads a kernel of its own: a long chain too large for one kernel runs
/// as a few large ones. `levels` 1 undoes every merge into the root.
pub(crate) fn keep_levels(into: &mut [Option<Merge>], expr: &Expr, levels: usize) {
    let Expr::Node { args, .. } = expr else { return };
    for arg in args {
        if let Expr::Node { launch, .. } = arg {
            if levels <= 1 {
                into[*launch] = None;
            } else {
                keep_levels(into, arg, levels - 1);
            }
        }
    }
}

/// Plans the kernel of `root` (a launch no consumer absorbs) and updates
/// `into` to match: the whole tree of merged producers under it when
/// `generate` accepts it; else the most levels of that tree it accepts
/// (too large for one kernel: the uniform block, the bindings), found by
/// bisection (a few generations, not one per level), the launches right
/// below heading kernels of their own; else `None`, `root` runs alone and
/// its producers run as launches of their own.
pub(crate) fn plan<G>(
    run: &[Deferred],
    into: &mut Vec<Option<Merge>>,
    root: usize,
    mut generate: impl FnMut(&[Option<Merge>], &Expr) -> Option<G>,
) -> Option<G> {
    let expr = expression(run, into, root);
    if expr.nodes() == 1 {
        return None;
    }
    if let Some(g) = generate(into, &expr) {
        return Some(g);
    }
    let (mut fits, mut fails) = (1, expr.depth());
    let mut best = None;
    while fails - fits > 1 {
        let levels = (fits + fails) / 2;
        let mut trial = into.clone();
        keep_levels(&mut trial, &expr, levels);
        match generate(&trial, &expression(run, &trial, root)) {
            Some(g) => (fits, best) = (levels, Some((trial, g))),
            None => fails = levels,
        }
    }
    let (kept, g) = best.unzip();
    match kept {
        Some(trial) => *into = trial,
        None => keep_levels(into, &expr, 1),
    }
    g
}

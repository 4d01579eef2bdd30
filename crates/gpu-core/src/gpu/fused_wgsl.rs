//! WGSL for one fused expression (see `fusion.rs`): a kernel with one thread
//! per output element that reads each leaf through its own index map and
//! evaluates the expression's nodes in registers.
//!
//! The expression is evaluated by `fn tree(i) -> f32` (element `i`, storing
//! the intermediates a tensor holds on the way). `main` stores its value at
//! `i`, or, when the root narrows to f16, runs one thread per output word
//! `k`, evaluates elements `2k` and `2k + 1` and stores the packed pair
//! (`half_bits` of `half.wgsl`, the same rounding as `cast.wgsl`). f16 leaves
//! (a widen's input) are bound as `array<u32>` and read with `half_at`.
//!
//! A *ranged* kernel (generated only when a buffer it binds is past the
//! binding limit, see `split.rs`) runs over a range of the elements with
//! windows of its buffers bound: word 0 of the uniform block is the range's
//! length, word 1 its first element (the `base` added to the thread index),
//! and each leaf has a word holding the first word of its window,
//! subtracted from every index into it. Kernels of work that fits carry
//! none of this.
//!
//! Node bodies come from the op tables' rows (`UnaryOp::wgsl_rows`,
//! `BinaryOp::wgsl_row`), the same text the unfused kernels' switches are
//! generated from, each wrapped in a function of its own so that the `let`s
//! of two rows cannot collide. Everything that varies between launches of
//! one structure (the size, op fields, leaf shapes, strides and offsets) is in
//! the uniform block, so the source, and with it the compiled pipeline, is
//! shared by every launch of that structure.

use std::fmt::Write;

use super::fusion::{reads_blocks, stores_partly, Access, Deferred, Expr, Merge, Node};
use super::launch::PARAMS_BYTES;
use super::split::LeafRead;

/// Words of the uniform block (read by the kernel as `p.w[k / 4][k % 4]`).
const WORDS: usize = PARAMS_BYTES as usize / 4;

/// A generated kernel and the launch data it needs.
pub(crate) struct Generated {
    /// The kernel's own WGSL, without the libraries of [`prelude`]: the
    /// pipeline cache key (hashing it per launch costs a fraction of
    /// hashing the whole source).
    pub body: String,
    /// The uniform block.
    pub params: Vec<u32>,
    /// The bound inputs, as (launch, slot) of the run, in binding order.
    pub leaves: Vec<(usize, usize)>,
    /// Whether it runs in ranges (see the module docs).
    pub ranged: bool,
    /// How each leaf is read, for the windows of a ranged kernel (empty otherwise).
    pub reads: Vec<LeafRead>,
    /// The uniform word of each leaf's window start (ranged kernels).
    pub shift_words: Vec<usize>,
    /// Whether the root narrows to packed f16.
    pub narrow: bool,
    /// The launches whose outputs it writes besides the root's, in binding
    /// order after the root's output.
    pub stored: Vec<usize>,
    /// The chain for profiles and debugging, e.g. `mul+add+relu`.
    pub name: String,
    /// Threads to launch: the element count, or the word count when the
    /// root narrows to packed f16.
    pub threads: usize,
    /// The run's launches it computes, producers first (the root last).
    pub members: Vec<usize>,
}

impl Generated {
    /// The whole WGSL module: [`prelude`], then [`body`](Self::body).
    pub fn source(&self) -> String {
        format!("{}{}", prelude(), self.body)
    }
}

/// The WGSL libraries every generated kernel uses, expanded once per process.
pub(crate) fn prelude() -> &'static str {
    static PRELUDE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PRELUDE.get_or_init(|| ["common", "unary_helpers", "half"].map(crate::shaders::source).concat())
}

struct Writer<'a> {
    run: &'a [Deferred],
    ranged: bool,
    into: &'a [Option<Merge>],
    stored: Vec<usize>,
    fns: String,
    body: String,
    params: Vec<u32>,
    leaves: Vec<(usize, usize)>,
    reads: Vec<LeafRead>,
    shift_words: Vec<usize>,
    /// The index maps of the consumers the expression being emitted is
    /// read through, outermost first.
    outer: Vec<Access>,
    names: Vec<String>,
    temps: usize,
    /// Index maps composed from consumers' reads (`jx0`, `jx1`, ..).
    maps: usize,
}

/// `p.w[..]` naming word `k` of the uniform block.
fn word(k: usize) -> String {
    format!("p.w[{}u][{}u]", k / 4, k % 4)
}

impl Writer<'_> {
    /// Appends a word to the uniform block and returns its WGSL read.
    fn push(&mut self, v: u32) -> String {
        self.params.push(v);
        word(self.params.len() - 1)
    }

    /// Emits the evaluation of `e` at element `at` (a WGSL u32) and returns
    /// the WGSL value naming it.
    fn emit(&mut self, e: &Expr, at: &str) -> String {
        let run = self.run;
        match e {
            Expr::Leaf { launch, slot } => self.leaf(*launch, *slot, at),
            Expr::Node { launch, args } => {
                let node = run[*launch].fusable.node;
                let f = if matches!(node, Node::Pad { .. }) {
                    self.pad(*launch, &args[0], at)
                } else {
                    self.node(*launch, args, at)
                };
                if self.into[*launch].is_some_and(|m| m.store) {
                    // Read densely, or inside a pad that visits each
                    // element of its input once (`stores_partly`).
                    debug_assert!(at == "i" || !self.ranged, "a stored value is read densely");
                    self.stored.push(*launch);
                    let at = if self.ranged { format!("{at} - {}", word(1)) } else { at.to_string() };
                    writeln!(self.body, "    z{}[{at}] = {f};", self.stored.len()).unwrap();
                }
                f
            }
        }
    }

    /// Emits launch `launch`'s node applied to its arguments `args` at
    /// element `at` and returns the WGSL value naming it.
    fn node(&mut self, launch: usize, args: &[Expr], at: &str) -> String {
        let run = self.run;
        let mut vals = Vec::new();
        for (slot, a) in args.iter().enumerate() {
            // A producer read through an index map (only a widen that
            // is not stored, see `merges`) is evaluated at the mapped element.
            let access = &run[launch].fusable.access[slot];
            let mapped = matches!((a, access), (Expr::Node { .. }, Access::Strided { .. }));
            let at = if mapped {
                let m = self.maps;
                self.maps += 1;
                let f = self.index_fn(&format!("jx{m}"), access);
                writeln!(self.body, "    let j{m} = {f}({at});").unwrap();
                if self.ranged {
                    self.outer.push(access.clone());
                }
                format!("j{m}")
            } else {
                at.to_string()
            };
            vals.push(self.emit(a, &at));
            if mapped && self.ranged {
                self.outer.pop();
            }
        }
        let node = run[launch].fusable.node;
        self.names.push(node.name());
        let f = format!("e{}", self.temps);
        self.temps += 1;
        if matches!(node, Node::Widen | Node::Gather) {
            // The leaf read already widened (or gathered) it, or it widens
            // a narrow's rounding.
            writeln!(self.body, "    let {f}v = {};", vals[0]).unwrap();
        } else if node == Node::Narrow {
            // Read back by a widen: rounded to f16 as the cast rounds and
            // widened as a leaf read widens (`round_half`).
            writeln!(self.body, "    let {f}v = round_half({});", vals[0]).unwrap();
        } else {
            self.node_fn(&f, node);
            writeln!(self.body, "    let {f}v = {f}({});", vals.join(", ")).unwrap();
        }
        format!("{f}v")
    }

    /// Emits `fn NAME(i: u32) -> u32`, the element `access` reads for
    /// element `i` (its shape, strides and offset in the uniform block), and
    /// returns NAME; the identity for a dense access.
    fn index_fn(&mut self, name: &str, access: &Access) -> String {
        let Access::Strided { shape, strides, offset } = access else {
            return String::new();
        };
        // Unrolled strided index, innermost dim first (as `strided_offset`).
        // What is left of `i` at the outermost dim is its index there
        // (`i` < the element count), so that dim costs no division: integer
        // division is a scalar loop per lane on CPU drivers and an emulated
        // sequence on GPUs, and a view at an offset (one coalesced dim)
        // then reads `offset + i · stride` with none at all.
        let mut f =
            format!("fn {name}(i: u32) -> u32 {{\n    var r = i;\n    var o = {};\n", self.push(*offset as u32));
        for d in (1..shape.len()).rev() {
            let (s, t) = (self.push(shape[d] as u32), self.push(strides[d] as u32));
            writeln!(f, "    o += (r % {s}) * {t};\n    r = r / {s};").unwrap();
        }
        if !shape.is_empty() {
            writeln!(f, "    o += r * {};", self.push(strides[0] as u32)).unwrap();
        }
        f += "    return o;\n}\n";
        self.fns += &f;
        name.to_string()
    }

    /// Emits pad `launch` (reading `arg`: a leaf, or the tree computing
    /// its input when it reads it as blocks) at element `at` and returns
    /// the WGSL value naming it. When its access is `[outer, dim, inner]`
    /// with the view's strides (`copy::pad`, for views that coalesce so)
    /// the region test and the read share their divisions: none when the
    /// padded dim is outermost and the view dense across it and the dims
    /// after it, one when `inner` or `outer` is 1, two otherwise (integer
    /// division is a scalar loop per lane on CPU drivers and an emulated
    /// sequence on GPUs).
    fn pad(&mut self, launch: usize, arg: &Expr, at: &str) -> String {
        let d = &self.run[launch];
        let (Node::Pad { inner, dim, lo, hi, .. }, [Access::Strided { shape, strides, offset }]) =
            (d.fusable.node, &d.fusable.access[..])
        else {
            unreachable!("wgrad internal: a pad reads its input through a strided map")
        };
        debug_assert!(!self.ranged, "pads are only deferred when their buffers fit one binding");
        self.names.push(d.fusable.node.name());
        let f = format!("e{}", self.temps);
        self.temps += 1;
        if !reads_blocks(d) {
            // Any other view (a leaf: see `merges`): the region test, then
            // the leaf's read through its map.
            let (s, dw) = (self.push(inner as u32), self.push(dim as u32));
            let (a, b) = (self.push(lo as u32), self.push(hi as u32));
            let value = self.leaf(launch, 0, at);
            writeln!(
                self.body,
                "    let {f}q = ({at} / {s}) % {dw};\n    var {f}v = 0.0;\n    if {f}q >= {a} && {f}q < {b} {{\n        \
                 {f}v = {value};\n    }}"
            )
            .unwrap();
            return format!("{f}v");
        }
        let (outer, [so, sd, si]) = (shape[0], [strides[0], strides[1], strides[2]]);
        let off = self.push(*offset as u32);
        let (inside, index) = if outer == 1 && sd == inner * si {
            // A range of elements, read at a fixed distance.
            let (a, b) = (self.push((lo * inner) as u32), self.push((hi * inner) as u32));
            let s = self.push(si as u32);
            (format!("{at} >= {a} && {at} < {b}"), format!("{off} + {at} * {s}"))
        } else {
            // at = (o · dim + q) · inner + r
            let a = if inner == 1 { at.to_string() } else { format!("({at} / {})", self.push(inner as u32)) };
            writeln!(self.body, "    let {f}a = {a};").unwrap();
            let dim_w = self.push(dim as u32);
            let (q, o) = if outer == 1 {
                (format!("{f}a"), "0u".to_string())
            } else {
                writeln!(self.body, "    let {f}o = {f}a / {dim_w};").unwrap();
                (format!("({f}a - {f}o * {dim_w})"), format!("{f}o"))
            };
            let r = if inner == 1 { "0u".to_string() } else { format!("({at} - {f}a * {})", self.push(inner as u32)) };
            writeln!(self.body, "    let {f}q = {q};").unwrap();
            let (a_w, b_w) = (self.push(lo as u32), self.push(hi as u32));
            let (so, sd, si) = (self.push(so as u32), self.push(sd as u32), self.push(si as u32));
            (format!("{f}q >= {a_w} && {f}q < {b_w}"), format!("{off} + {o} * {so} + {f}q * {sd} + {r} * {si}"))
        };
        let (prelude, value) = match arg {
            Expr::Leaf { .. } => {
                let k = self.leaves.len();
                self.leaves.push((launch, 0));
                (String::new(), format!("l{k}[{index}]"))
            }
            // The tree computing the pad's input (`merges`): evaluated,
            // inside the region only, at the element of its output the
            // pad reads.
            tree => {
                let j = format!("{f}s");
                let start = self.body.len();
                let v = self.emit(tree, &j);
                let lines = self.body.split_off(start);
                (format!("        let {j} = {index};\n{lines}"), v)
            }
        };
        writeln!(self.body, "    var {f}v = 0.0;\n    if {inside} {{\n{prelude}        {f}v = {value};\n    }}")
            .unwrap();
        format!("{f}v")
    }

    /// Binds launch `launch`'s input `slot` and returns its read for element
    /// `at`: an f32, or a widen's f16 input widened.
    fn leaf(&mut self, launch: usize, slot: usize, at: &str) -> String {
        let (run, k) = (self.run, self.leaves.len());
        self.leaves.push((launch, slot));
        let access = &run[launch].fusable.access[slot];
        let half = run[launch].fusable.node == Node::Widen;
        // A ranged kernel subtracts where the leaf's window starts.
        let shift = if self.ranged {
            let maps = self.outer.iter().chain([access]).cloned().collect();
            self.reads.push(LeafRead { maps, half });
            let w = self.push(0);
            self.shift_words.push(self.params.len() - 1);
            format!(" - {w}")
        } else {
            String::new()
        };
        let f = self.index_fn(&format!("ix{k}"), access);
        let ix = if f.is_empty() { at.to_string() } else { format!("{f}({at})") };
        if !half {
            return format!("l{k}[{ix}{shift}]");
        }
        writeln!(self.body, "    let h{k} = {ix};").unwrap();
        format!("half_at(l{k}[h{k} / 2u{shift}], h{k})")
    }

    /// Emits `fn NAME(..) -> f32` computing `node` from its table row.
    fn node_fn(&mut self, name: &str, node: Node) {
        let (signature, row, wrap) = match node {
            Node::Unary(op) => ("v: f32", Some(op.wgsl_rows().0), None),
            Node::UnaryGrad(op) => ("v: f32, y: f32, g: f32", Some(op.wgsl_rows().1), Some(op.gated())),
            Node::Binary(op) => ("x: f32, y: f32", Some(op.wgsl_row()), None),
            Node::Where => ("c: f32, a: f32, b: f32", None, None),
            Node::Widen | Node::Narrow | Node::Gather | Node::Pad { .. } | Node::Reduce { .. } | Node::Product => {
                unreachable!("wgrad internal: casts and gathers are leaf reads, root stores or roundings")
            }
        };
        let Some(row) = row else {
            writeln!(self.fns, "fn {name}({signature}) -> f32 {{ return select(b, a, c != 0.0); }}").unwrap();
            return;
        };
        let mut lets = String::new();
        if let Node::Unary(op) | Node::UnaryGrad(op) = node {
            let (a, b) = op.args();
            for (field, v) in row.fields.iter().zip([a, b]) {
                let w = self.push(v.to_bits());
                write!(lets, "let {field} = bitcast<f32>({w}); ").unwrap();
            }
        }
        let (stmts, expr) = row.split();
        // A derivative's row is f'(v); the function is the chain rule
        // (kernels/unary.rs `chain_rule`: a gated op's 0 stops g).
        let expr = match wrap {
            Some(false) => format!("g * ({expr})"),
            Some(true) => format!("select(0.0, g, ({expr}) != 0.0)"),
            None => expr.to_string(),
        };
        writeln!(self.fns, "fn {name}({signature}) -> f32 {{ {lets}{stmts}return {expr}; }}").unwrap();
    }
}

/// The kernel computing `expr` over `n` elements (writing the outputs that
/// `into` says to store), `ranged` or not (see the module docs), or `None`
/// when it needs more than `max_buffers` storage bindings or a larger
/// uniform block than one slot.
pub(crate) fn generate(
    run: &[Deferred],
    into: &[Option<Merge>],
    expr: &Expr,
    n: usize,
    (max_buffers, ranged): (usize, bool),
) -> Option<Generated> {
    let mut w = Writer {
        run,
        ranged,
        into,
        stored: Vec::new(),
        fns: String::new(),
        body: String::new(),
        // The element count, and a ranged kernel's first element.
        params: if ranged { vec![n as u32, 0] } else { vec![n as u32] },
        leaves: Vec::new(),
        reads: Vec::new(),
        shift_words: Vec::new(),
        outer: Vec::new(),
        names: Vec::new(),
        temps: 0,
        maps: 0,
    };
    // A root that narrows is the store: the tree computes its f32 input.
    let narrow = match expr {
        Expr::Node { launch, args } if run[*launch].fusable.node == Node::Narrow => Some(&args[0]),
        _ => None,
    };
    // A reduction root: the tree computes the element it adds.
    let reduce = match expr {
        Expr::Node { launch, args } => match run[*launch].fusable.node {
            node @ Node::Reduce { .. } => Some((node, &args[0])),
            _ => None,
        },
        Expr::Leaf { .. } => None,
    };
    // Pads and reductions are deferred only when their own buffers fit one
    // binding (a pad's map wraps below its region, which ranges do not
    // model; a reduction's workgroups are not elements): one whose tree
    // reads a leaf past the limit has the tree split off, to run alone. So
    // does a pad that would store part of a held value (`stores_partly`).
    let unranged = |l: &usize| matches!(run[*l].fusable.node, Node::Pad { .. } | Node::Reduce { .. });
    if (ranged && expr.launches().iter().any(unranged)) || stores_partly(run, into, expr) {
        return None;
    }
    let result = w.emit(narrow.or(reduce.map(|r| r.1)).unwrap_or(expr), "i");
    if let Some(node) = narrow.map(|_| Node::Narrow).or(reduce.map(|r| r.0)) {
        w.names.push(node.name());
    }
    // A reduction's sizes, as uniform words (the source depends on none).
    let reduce_words = reduce.map(|(node, _)| {
        let Node::Reduce { mean, rows, m, chunk, chunks } = node else { unreachable!() };
        let ws = [rows * chunks, rows, chunk, m].map(|v| w.push(v as u32));
        (mean, ws)
    });
    if w.leaves.len() + 1 + w.stored.len() > max_buffers || w.params.len() > WORDS {
        return None;
    }
    let mut src = format!("// Generated by the wgrad fuser: {}\n", w.names.join("+"));
    writeln!(src, "struct Params {{ w: array<vec4<u32>, {}> }}", WORDS / 4).unwrap();
    src += "@group(0) @binding(0) var<uniform> p: Params;\n";
    for (k, &(launch, _)) in w.leaves.iter().enumerate() {
        let ty = if run[launch].fusable.node == Node::Widen { "u32" } else { "f32" };
        writeln!(src, "@group(0) @binding({}) var<storage, read> l{k}: array<{ty}>;", k + 1).unwrap();
    }
    for k in 0..=w.stored.len() {
        let ty = if k == 0 && narrow.is_some() { "u32" } else { "f32" };
        writeln!(src, "@group(0) @binding({}) var<storage, read_write> z{k}: array<{ty}>;", w.leaves.len() + 1 + k)
            .unwrap();
    }
    src += &w.fns;
    if reduce.is_some() {
        src += "var<workgroup> sv: array<f32, 256>;\n";
    }
    writeln!(src, "fn tree(i: u32) -> f32 {{\n{}    return {result};\n}}", w.body).unwrap();
    src += "@compute @workgroup_size(256)\n\
            fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, \
            @builtin(local_invocation_index) lid: u32) {\n\
            \x20   let t = linear_workgroup(wid, nwg) * 256u + lid;\n";
    let n_word = word(0);
    let base = if ranged { format!("{} + ", word(1)) } else { String::new() };
    if let Some((mean, [groups, rows, chunk, m])) = reduce_words {
        // reduce.wgsl's `main` (WG 256) over the tree's elements, in its order.
        let total = if mean { format!("sv[0] / f32({m})") } else { "sv[0]".to_string() };
        writeln!(
            src,
            "    let w = linear_workgroup(wid, nwg);\n    if w >= {groups} {{\n        return;\n    }}\n    \
             let o = w % {rows};\n    let lo = (w / {rows}) * {chunk};\n    let hi = min({m}, lo + {chunk});\n    \
             var acc = 0.0;\n    for (var j = lo + lid; j < hi; j += 256u) {{\n        acc += tree(o * {m} + j);\n    }}\n    \
             sv[lid] = acc;\n    workgroupBarrier();\n    for (var s = 128u; s > 0u; s = s >> 1u) {{\n        \
             if lid < s {{\n            sv[lid] = sv[lid] + sv[lid + s];\n        }}\n        workgroupBarrier();\n    }}\n    \
             if lid == 0u {{\n        z0[w] = {total};\n    }}\n}}"
        )
        .unwrap();
    } else if narrow.is_some() {
        // One thread per word: elements 2t and 2t + 1 (masked past n), stored whole.
        writeln!(
            src,
            "    let e = 2u * t;\n    if e >= {n_word} {{\n        return;\n    }}\n    let i = {base}e;\n    \
             var hi = 0u;\n    if e + 1u < {n_word} {{\n        hi = half_bits(bitcast<u32>(tree(i + 1u)));\n    }}\n    \
             z0[t] = half_bits(bitcast<u32>(tree(i))) | (hi << 16u);\n}}"
        )
        .unwrap();
    } else {
        writeln!(src, "    if t >= {n_word} {{\n        return;\n    }}\n    z0[t] = tree({base}t);\n}}").unwrap();
    }
    Some(Generated {
        body: src,
        params: w.params,
        leaves: w.leaves,
        ranged,
        reads: w.reads,
        shift_words: w.shift_words,
        narrow: narrow.is_some(),
        stored: w.stored,
        name: w.names.join("+"),
        threads: match (narrow, reduce) {
            (Some(_), _) => n.div_ceil(2),
            (_, Some((Node::Reduce { rows, chunks, .. }, _))) => rows * chunks * 256,
            _ => n,
        },
        members: expr.launches(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::fusion::{expression, merges, Fusable};
    use crate::kernels::binary::BinaryOp;
    use crate::kernels::unary::UnaryOp;
    use crate::{Buffer, Device};

    /// A deferred launch for the planner (CPU buffers: only handles matter here).
    fn deferred(node: Node, inputs: Vec<Buffer>, access: Vec<Access>, output: Buffer) -> Deferred {
        let fusable = Fusable { node, n: 16, access: access.into() };
        let (shader, entry, constants, params, workgroups) =
            ("unary", "main", Default::default(), Default::default(), 1);
        let (inputs, output) = (inputs.iter().map(Buffer::handle).collect(), output.handle());
        Deferred { shader, entry, constants, params, inputs, output, workgroups, fusable, record: None, product: None }
    }

    fn validate(src: &str) {
        let module = naga::front::wgsl::parse_str(src)
            .unwrap_or_else(|e| panic!("generated kernel does not parse:\n{}", e.emit_to_string(src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("generated kernel does not validate:\n{}", e.emit_to_string(src)));
    }

    /// `where(c, u'(x, b(u(x), yᵀ), g), s)` for every unary and binary row: the
    /// planner merges the chain (storing `b`'s output, which a handle keeps)
    /// and the generated kernel validates with naga, adapter or not.
    #[test]
    fn generated_chains_of_every_row_validate() {
        let dev = Device::cpu();
        let buf = || Buffer::alloc(&dev, 64).unwrap();
        let strided = Access::Strided { shape: [4, 4].into(), strides: [1, 4].into(), offset: 0 };
        let scalar = Access::Strided { shape: [16].into(), strides: [0].into(), offset: 3 };
        for &u in UnaryOp::EXAMPLES {
            for &b in BinaryOp::ALL {
                let (x, y, g, c, s) = (buf(), buf(), buf(), buf(), buf());
                let (t0, t1, t2, t3) = (buf(), buf(), buf(), buf());
                let run = vec![
                    deferred(Node::Unary(u), vec![x.clone()], vec![Access::Dense], t0.clone()),
                    deferred(Node::Binary(b), vec![t0, y], vec![Access::Dense, strided.clone()], t1.clone()),
                    deferred(Node::UnaryGrad(u), vec![x, t1.clone(), g], vec![Access::Dense; 3], t2.clone()),
                    deferred(Node::Where, vec![c, t2, s], vec![Access::Dense, Access::Dense, scalar.clone()], t3),
                ];
                let into = merges(&run);
                let consumers: Vec<_> = into.iter().map(|m| m.map(|m| (m.consumer, m.store))).collect();
                assert_eq!(consumers, [Some((1, false)), Some((2, true)), Some((3, false)), None], "{u:?} {b:?}");
                let expr = expression(&run, &into, 3);
                let k = generate(&run, &into, &expr, 16, (16, false)).expect("fits");
                assert_eq!((k.leaves.len(), k.stored.as_slice()), (6, &[1][..]), "{u:?} {b:?}");
                validate(&k.source());
                // The ranged variant (past the binding limit) validates too.
                let r = generate(&run, &into, &expr, 16, (16, true)).expect("fits");
                assert_eq!((r.reads.len(), r.shift_words.len()), (6, 6), "{u:?} {b:?}");
                validate(&r.source());
                drop(t1);
            }
        }
    }

    /// `narrow(relu(widen(x)) + widen(y)ᵀ)`: both widens merge (the second
    /// through the consumer's transposed read, being stored by nothing), the
    /// narrow is the root, and the kernel reads two packed f16 leaves, runs
    /// one thread per word and validates with naga.
    #[test]
    fn cast_trees_read_f16_leaves_and_store_packed_words() {
        let dev = Device::cpu();
        let buf = || Buffer::alloc(&dev, 64).unwrap();
        let transposed = Access::Strided { shape: [4, 4].into(), strides: [1, 4].into(), offset: 0 };
        let (x, y, t0, t1, t2, t3) = (buf(), buf(), buf(), buf(), buf(), buf());
        let run = vec![
            deferred(Node::Widen, vec![x], vec![Access::Dense], t0.clone()),
            deferred(Node::Unary(UnaryOp::Relu), vec![t0], vec![Access::Dense], t1.clone()),
            deferred(Node::Widen, vec![y], vec![Access::Dense], t2.clone()),
            deferred(Node::Binary(BinaryOp::Add), vec![t1, t2], vec![Access::Dense, transposed], t3.clone()),
            deferred(Node::Narrow, vec![t3], vec![Access::Dense], buf()),
        ];
        let into = merges(&run);
        let consumers: Vec<_> = into.iter().map(|m| m.map(|m| (m.consumer, m.store))).collect();
        assert_eq!(consumers, [Some((1, false)), Some((3, false)), Some((3, false)), Some((4, false)), None]);
        let expr = expression(&run, &into, 4);
        assert_eq!(expr.nodes(), 5);
        for n in [16, 15] {
            let k = generate(&run, &into, &expr, n, (16, false)).expect("fits");
            assert_eq!((k.leaves.as_slice(), k.stored.len(), k.threads), (&[(0, 0), (2, 0)][..], 0, 8));
            assert_eq!(k.name, "f16_to_f32+relu+f16_to_f32+add+f32_to_f16");
            for decl in ["l0: array<u32>", "l1: array<u32>", "z0: array<u32>", "fn jx0(i: u32)"] {
                assert!(k.body.contains(decl), "{decl} missing:\n{}", k.body);
            }
            assert!(k.body.contains("z0[t] = half_bits(bitcast<u32>(tree(i)))"), "{}", k.body);
            validate(&k.source());
            let r = generate(&run, &into, &expr, n, (16, true)).expect("fits");
            assert!(r.narrow && r.body.contains("h0 / 2u - p.w["), "{}", r.body);
            validate(&r.source());
        }
    }

    /// Where the casts merge: a narrow's packed output feeds nothing in
    /// registers but a widen reading it back (the rounding), and only when
    /// nothing holds it; a widen a tensor still holds (so stored whole) is
    /// not read through a consumer's index map; read densely, it merges and
    /// its f32 copy is an extra output.
    #[test]
    fn casts_merge_only_where_their_types_and_stores_allow() {
        let dev = Device::cpu();
        let buf = || Buffer::alloc(&dev, 64).unwrap();
        let broadcast = Access::Strided { shape: [4, 4].into(), strides: [0, 1].into(), offset: 0 };
        let (x, kept) = (buf(), buf());
        let consumers =
            |run: &[Deferred]| -> Vec<_> { merges(run).iter().map(|m| m.map(|m| (m.consumer, m.store))).collect() };
        // With the narrowed value also held by a tensor (`hold`) or not.
        for hold in [false, true] {
            let (h, w) = (buf(), buf());
            let held = hold.then(|| h.clone());
            let run = vec![
                deferred(Node::Unary(UnaryOp::Neg), vec![x.clone()], vec![Access::Dense], buf()),
                deferred(Node::Narrow, vec![x.clone()], vec![Access::Dense], h.clone()),
                deferred(Node::Widen, vec![h], vec![Access::Dense], w.clone()),
                deferred(Node::Widen, vec![x.clone()], vec![Access::Dense], kept.clone()),
                deferred(
                    Node::Binary(BinaryOp::Mul),
                    vec![w, kept.clone()],
                    vec![Access::Dense, broadcast.clone()],
                    buf(),
                ),
            ];
            // A held narrow is stored and read from memory.
            let narrow = (!hold).then_some((2, false));
            assert_eq!(consumers(&run), [None, narrow, Some((4, false)), None, None], "hold {hold}");
            drop(held);
        }

        let (y, t) = (buf(), buf());
        let run = vec![
            deferred(Node::Widen, vec![x], vec![Access::Dense], kept.clone()),
            deferred(Node::Binary(BinaryOp::Mul), vec![kept.clone(), y], vec![Access::Dense; 2], t.clone()),
            deferred(Node::Narrow, vec![t], vec![Access::Dense], buf()),
        ];
        let into = merges(&run);
        assert_eq!(consumers(&run), [Some((1, true)), Some((2, false)), None], "kept widen read densely");
        let k = generate(&run, &into, &expression(&run, &into, 2), 16, (16, false)).expect("fits");
        assert_eq!((k.stored.as_slice(), k.threads), (&[0][..], 8));
        assert!(k.body.contains("z1: array<f32>") && k.body.contains("z1[i] = e0v;"), "{}", k.body);
        validate(&k.source());
        drop(kept);
    }

    /// A kernel whose leaf index maps overflow the uniform block is refused
    /// (the planner then splits it).
    #[test]
    fn oversized_kernels_are_refused() {
        let dev = Device::cpu();
        let buf = || Buffer::alloc(&dev, 64).unwrap();
        let wide = Access::Strided {
            shape: [1, 2, 1, 2, 1, 2, 1, 2].into(),
            strides: [8, 4, 8, 2, 8, 1, 8, 0].into(),
            offset: 0,
        };
        let mut run = Vec::new();
        let mut prev = buf();
        for _ in 0..6 {
            let out = buf();
            run.push(deferred(
                Node::Binary(BinaryOp::Add),
                vec![prev, buf()],
                vec![Access::Dense, wide.clone()],
                out.clone(),
            ));
            prev = out;
        }
        drop(prev);
        let into = merges(&run);
        let expr = expression(&run, &into, run.len() - 1);
        assert_eq!(expr.nodes(), 6);
        assert!(generate(&run, &into, &expr, 16, (16, false)).is_none(), "6 rank-8 leaves need 103 words");
    }
}

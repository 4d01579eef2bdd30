//! WGSL for one fused expression (see `fusion.rs`): a kernel with one thread
//! per output element that reads each leaf through its own index map and
//! evaluates the expression's nodes in registers.
//!
//! Node bodies come from the op tables' rows (`UnaryOp::wgsl_rows`,
//! `BinaryOp::wgsl_row`), the same text the unfused kernels' switches are
//! generated from, each wrapped in a function of its own so that the `let`s
//! of two rows cannot collide. Everything that varies between launches of
//! one structure (the size, op fields, leaf shapes, strides and offsets) is in
//! the uniform block, so the source, and with it the compiled pipeline, is
//! shared by every launch of that structure.

use std::fmt::Write;

use super::fusion::{Access, Deferred, Expr, Merge, Node};
use super::pipelines::PARAMS_BYTES;

/// Words of the uniform block (read by the kernel as `p.w[k / 4][k % 4]`).
const WORDS: usize = PARAMS_BYTES as usize / 4;

/// A generated kernel and the launch data it needs.
pub(crate) struct Generated {
    /// The full WGSL source (also the pipeline cache key).
    pub source: String,
    /// The uniform block.
    pub params: Vec<u32>,
    /// The bound inputs, as (launch, slot) of the run, in binding order.
    pub leaves: Vec<(usize, usize)>,
    /// The launches whose outputs it writes besides the root's, in binding
    /// order after the root's output.
    pub stored: Vec<usize>,
    /// The chain for profiles and debugging, e.g. `mul+add+relu`.
    pub name: String,
    /// The run's launches it computes, producers first (the root last).
    pub members: Vec<usize>,
}

struct Writer<'a> {
    run: &'a [Deferred],
    into: &'a [Option<Merge>],
    stored: Vec<usize>,
    fns: String,
    body: String,
    params: Vec<u32>,
    leaves: Vec<(usize, usize)>,
    names: Vec<String>,
    temps: usize,
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

    /// Emits the evaluation of `e` and returns the WGSL value naming it.
    fn emit(&mut self, e: &Expr) -> String {
        match e {
            Expr::Leaf { launch, slot } => self.leaf(*launch, *slot),
            Expr::Node { launch, args } => {
                let vals: Vec<String> = args.iter().map(|a| self.emit(a)).collect();
                let node = self.run[*launch].fusable.node;
                self.names.push(node.name());
                let f = format!("e{}", self.temps);
                self.temps += 1;
                self.node_fn(&f, node);
                writeln!(self.body, "    let {f}v = {f}({});", vals.join(", ")).unwrap();
                if self.into[*launch].is_some_and(|m| m.store) {
                    self.stored.push(*launch);
                    writeln!(self.body, "    z{}[i] = {f}v;", self.stored.len()).unwrap();
                }
                format!("{f}v")
            }
        }
    }

    /// Binds launch `launch`'s input `slot` and returns its read at element `i`.
    fn leaf(&mut self, launch: usize, slot: usize) -> String {
        let k = self.leaves.len();
        self.leaves.push((launch, slot));
        match &self.run[launch].fusable.access[slot] {
            Access::Dense => format!("l{k}[i]"),
            Access::Strided { shape, strides, offset } => {
                // Unrolled strided index, innermost dim first (as `strided_offset`).
                let mut f =
                    format!("fn ix{k}(i: u32) -> u32 {{\n    var r = i;\n    var o = {};\n", self.push(*offset as u32));
                for d in (0..shape.len()).rev() {
                    let (s, t) = (self.push(shape[d] as u32), self.push(strides[d] as u32));
                    writeln!(f, "    o += (r % {s}) * {t};\n    r = r / {s};").unwrap();
                }
                f += "    return o;\n}\n";
                self.fns += &f;
                format!("l{k}[ix{k}(i)]")
            }
        }
    }

    /// Emits `fn NAME(..) -> f32` computing `node` from its table row.
    fn node_fn(&mut self, name: &str, node: Node) {
        let (signature, row, wrap) = match node {
            Node::Unary(op) => ("v: f32", Some(op.wgsl_rows().0), None),
            Node::UnaryGrad(op) => ("v: f32, y: f32, g: f32", Some(op.wgsl_rows().1), Some("g * ")),
            Node::Binary(op) => ("x: f32, y: f32", Some(op.wgsl_row()), None),
            Node::Where => ("c: f32, a: f32, b: f32", None, None),
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
        let expr = match wrap {
            Some(w) => format!("{w}({expr})"),
            None => expr.to_string(),
        };
        writeln!(self.fns, "fn {name}({signature}) -> f32 {{ {lets}{stmts}return {expr}; }}").unwrap();
    }
}

/// The kernel computing `expr` over `n` elements (writing the outputs that
/// `into` says to store), or `None` when it needs more than `max_buffers`
/// storage bindings or a larger uniform block than one slot.
pub(crate) fn generate(
    run: &[Deferred],
    into: &[Option<Merge>],
    expr: &Expr,
    n: usize,
    max_buffers: usize,
) -> Option<Generated> {
    let mut w = Writer {
        run,
        into,
        stored: Vec::new(),
        fns: String::new(),
        body: String::new(),
        params: vec![n as u32],
        leaves: Vec::new(),
        names: Vec::new(),
        temps: 0,
    };
    let result = w.emit(expr);
    if w.leaves.len() + 1 + w.stored.len() > max_buffers || w.params.len() > WORDS {
        return None;
    }
    let mut src = format!("// Generated by the wgrad fuser: {}\n", w.names.join("+"));
    src += &crate::shaders::source("common");
    src += &crate::shaders::source("unary_helpers");
    writeln!(src, "struct Params {{ w: array<vec4<u32>, {}> }}", WORDS / 4).unwrap();
    src += "@group(0) @binding(0) var<uniform> p: Params;\n";
    for k in 0..w.leaves.len() {
        writeln!(src, "@group(0) @binding({}) var<storage, read> l{k}: array<f32>;", k + 1).unwrap();
    }
    for k in 0..=w.stored.len() {
        writeln!(src, "@group(0) @binding({}) var<storage, read_write> z{k}: array<f32>;", w.leaves.len() + 1 + k)
            .unwrap();
    }
    src += &w.fns;
    src += "@compute @workgroup_size(256)\n\
            fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, \
            @builtin(local_invocation_index) lid: u32) {\n\
            \x20   let i = linear_workgroup(wid, nwg) * 256u + lid;\n";
    writeln!(src, "    if i >= {} {{\n        return;\n    }}", word(0)).unwrap();
    src += &w.body;
    writeln!(src, "    z0[i] = {result};\n}}").unwrap();
    Some(Generated {
        source: src,
        params: w.params,
        leaves: w.leaves,
        stored: w.stored,
        name: w.names.join("+"),
        members: expr.launches(),
    })
}

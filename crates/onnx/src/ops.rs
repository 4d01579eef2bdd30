//! The op table: each traced wgrad op as ONNX nodes (opset 17).
//!
//! One arm per [`TraceOp`]; an op with no ONNX form is an error naming it,
//! never a node that computes something else. docs/interop.md lists the
//! table for users; keep the two in step.

use wgrad_autograd::{BinaryOp, DType, Interpolation, PoolWindow, ReduceOp, TraceOp, TracedOp, UnaryOp};

use crate::builder::{onnx_type, raw, Attr, Builder, FixedBatch};
use crate::proto::tensor_proto::DataType;

/// Why an op could not be written.
pub(crate) enum Problem {
    /// The batch dimension must be fixed (the export is retried so).
    Fixed(FixedBatch),
    /// The op has no ONNX form; the message says why.
    Unsupported(String),
    /// The export failed (the table's reason, placed in the trace).
    Failed(crate::Error),
}

impl From<FixedBatch> for Problem {
    fn from(f: FixedBatch) -> Self {
        Problem::Fixed(f)
    }
}

fn unsupported<T>(why: impl Into<String>) -> Result<T, Problem> {
    Err(Problem::Unsupported(why.into()))
}

/// One traced op being written: its record, the same op in the second
/// trace (for shapes that follow the batch), and its inputs' value names.
pub(crate) struct Ctx<'a> {
    pub op: &'a TracedOp,
    pub second: Option<&'a TracedOp>,
    pub ins: Vec<Option<String>>,
}

impl Ctx<'_> {
    /// Input `i`'s value name (a required input).
    pub fn x(&self, i: usize) -> String {
        self.ins[i].clone().expect("wgrad-onnx internal: a required input is missing")
    }

    /// Input `i`'s value name or "" (ONNX's omitted optional input).
    fn opt(&self, i: usize) -> String {
        self.ins.get(i).cloned().flatten().unwrap_or_default()
    }

    pub fn has(&self, i: usize) -> bool {
        self.ins.get(i).is_some_and(|x| x.is_some())
    }

    pub fn in_shape(&self, i: usize) -> Vec<usize> {
        self.op.inputs[i].as_ref().expect("a given input").shape().to_vec()
    }

    fn in_dtype(&self, i: usize) -> DType {
        self.op.inputs[i].as_ref().expect("a given input").dtype()
    }

    /// Output `i`'s shape in the first and the second trace.
    fn out_shapes(&self, i: usize) -> (Vec<usize>, Vec<usize>) {
        let first = self.op.outputs[i].shape().to_vec();
        let second = self.second.map_or_else(|| first.clone(), |s| s.outputs[i].shape().to_vec());
        (first, second)
    }
}

fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&x| x as i64).collect())
}

/// The attributes MaxPool and AveragePool share: the window, the same
/// padding on both sides, and `ceil_mode` (ONNX's rule for it is
/// PyTorch's: no window starts in the end padding).
fn pool_attrs(w: &PoolWindow) -> Vec<(&'static str, Attr)> {
    vec![
        ("kernel_shape", ints(&[w.kernel.0, w.kernel.1])),
        ("strides", ints(&[w.stride.0, w.stride.1])),
        ("pads", ints(&[w.padding.0, w.padding.1, w.padding.0, w.padding.1])),
        ("ceil_mode", Attr::Int(w.ceil_mode as i64)),
    ]
}

/// Writes one traced op; returns the value name of each output.
pub(crate) fn emit(b: &mut Builder, c: &Ctx) -> Result<Vec<String>, Problem> {
    let one = |v: String| Ok(vec![v]);
    match &c.op.op {
        TraceOp::Constant { fill } => constant(b, c, *fill),
        TraceOp::Unary(op) => one(unary(b, *op, &c.x(0))),
        TraceOp::Binary(op) => one(binary(b, c, *op)),
        TraceOp::Where => {
            let cond = b.op("Cast", &[&c.x(0)], vec![("to", Attr::Int(DataType::Bool as i64))]);
            one(b.op("Where", &[&cond, &c.x(1), &c.x(2)], vec![]))
        }
        TraceOp::Cast(to) => one(b.op("Cast", &[&c.x(0)], vec![("to", Attr::Int(onnx_type(*to) as i64))])),
        TraceOp::Identity => one(b.op("Identity", &[&c.x(0)], vec![])),
        TraceOp::MatMul { scale } => {
            let y = b.op("MatMul", &[&c.x(0), &c.x(1)], vec![]);
            one(scaled(b, y, *scale))
        }
        TraceOp::Linear => one(linear(b, c)),
        TraceOp::Conv2d(o) => {
            let attrs = vec![
                ("strides", ints(&[o.stride.0, o.stride.1])),
                // wgrad: [top, bottom, left, right]; ONNX: begins, then ends.
                ("pads", ints(&[o.padding[0], o.padding[2], o.padding[1], o.padding[3]])),
                ("dilations", ints(&[o.dilation.0, o.dilation.1])),
                ("group", Attr::Int(o.groups as i64)),
            ];
            one(batched(b, c, 4, |b, x| b.op("Conv", &[x, &c.x(1), &c.opt(2)], attrs)))
        }
        TraceOp::Conv1d { stride, padding, dilation, groups } => {
            let attrs = vec![
                ("strides", ints(&[*stride])),
                ("pads", ints(&[padding.0, padding.1])),
                ("dilations", ints(&[*dilation])),
                ("group", Attr::Int(*groups as i64)),
            ];
            one(batched(b, c, 3, |b, x| b.op("Conv", &[x, &c.x(1), &c.opt(2)], attrs)))
        }
        TraceOp::ConvTranspose2d(o) => {
            let attrs = vec![
                ("strides", ints(&[o.stride.0, o.stride.1])),
                ("pads", ints(&[o.padding.0, o.padding.1, o.padding.0, o.padding.1])),
                ("output_padding", ints(&[o.output_padding.0, o.output_padding.1])),
                ("dilations", ints(&[o.dilation.0, o.dilation.1])),
                ("group", Attr::Int(o.groups as i64)),
            ];
            one(batched(b, c, 4, |b, x| b.op("ConvTranspose", &[x, &c.x(1), &c.opt(2)], attrs)))
        }
        TraceOp::MaxPool2d { window: w, indices } => {
            if *indices {
                return unsupported(
                    "max_pool2d_with_indices: ONNX's MaxPool indices are flat over the whole tensor, not wgrad's \
                     per-plane indices; export max_pool2d",
                );
            }
            let mut attrs = pool_attrs(w);
            attrs.push(("dilations", ints(&[w.dilation.0, w.dilation.1])));
            one(batched(b, c, 4, |b, x| b.op("MaxPool", &[x], attrs)))
        }
        TraceOp::AvgPool2d { window: w, count_include_pad } => {
            let mut attrs = pool_attrs(w);
            attrs.push(("count_include_pad", Attr::Int(*count_include_pad as i64)));
            one(batched(b, c, 4, |b, x| b.op("AveragePool", &[x], attrs)))
        }
        TraceOp::ArgSort { dim, descending } => {
            // TopK of the whole dim, sorted; ONNX, like the kernel, puts
            // equal values in index order.
            let (first, second) = c.out_shapes(0);
            if first.len() > *dim && first[*dim] != second[*dim] {
                return unsupported("argsort along a dim that follows the batch size");
            }
            let n = first.get(*dim).copied().unwrap_or(1);
            let k = b.ints(&[n as i64]);
            let attrs = vec![
                ("axis", Attr::Int(*dim as i64)),
                ("largest", Attr::Int(*descending as i64)),
                ("sorted", Attr::Int(1)),
            ];
            let outs = b.node("TopK", &[&c.x(0), &k], 2, attrs);
            one(outs[1].clone())
        }
        TraceOp::CumSum { dim } => {
            let axis = b.ints(&[*dim as i64]);
            one(b.op("CumSum", &[&c.x(0), &axis], vec![]))
        }
        TraceOp::Interpolate(r) => {
            // Resize to the traced output's sizes, or by the scale factors
            // when the op had them (PyTorch steps sources by 1 / factor,
            // ONNX by 1 / scale: the same; sizes would step by in / out).
            let (mut first, mut second) = c.out_shapes(0);
            if first.len() == 3 {
                first.insert(0, 1);
                second.insert(0, 1);
            }
            let scales = r.scale_factor.map(|(h, w)| b.floats(&[1.0, 1.0, h as f32, w as f32], &[4]));
            let sizes = if scales.is_some() { None } else { Some(b.shape(&first, &second)?) };
            // `half_pixel`, not `pytorch_half_pixel`: the latter reads
            // pixel 0 for an output of length 1, where PyTorch reads the
            // middle; a source below 0 reads pixel 0 in both, as in PyTorch.
            let (mode, transform) = match r.mode {
                Interpolation::Nearest => ("nearest", "asymmetric"),
                Interpolation::Bilinear { align_corners: false } => ("linear", "half_pixel"),
                Interpolation::Bilinear { align_corners: true } => ("linear", "align_corners"),
            };
            let mut attrs = vec![("mode", Attr::Str(mode)), ("coordinate_transformation_mode", Attr::Str(transform))];
            if r.mode == Interpolation::Nearest {
                attrs.push(("nearest_mode", Attr::Str("floor")));
            }
            let (scales, sizes) = (scales.unwrap_or_default(), sizes.unwrap_or_default());
            one(batched(b, c, 4, |b, x| b.op("Resize", &[x, "", &scales, &sizes], attrs)))
        }
        TraceOp::AdaptiveAvgPool2d { out } => {
            let s = c.in_shape(0);
            let (h, w) = (s[s.len() - 2], s[s.len() - 1]);
            if *out == (1, 1) {
                return one(batched(b, c, 4, |b, x| b.op("GlobalAveragePool", &[x], vec![])));
            }
            if h % out.0 != 0 || w % out.1 != 0 {
                return unsupported(format!(
                    "adaptive_avg_pool2d from {h}x{w} to {}x{}: windows of unequal sizes have no ONNX pooling",
                    out.0, out.1
                ));
            }
            let k = [h / out.0, w / out.1];
            let attrs = vec![("kernel_shape", ints(&k)), ("strides", ints(&k))];
            one(batched(b, c, 4, |b, x| b.op("AveragePool", &[x], attrs)))
        }
        TraceOp::BatchNorm { training, eps, .. } => {
            if *training {
                return unsupported(
                    "batch_norm in training mode (batch statistics): call model.eval() before exporting",
                );
            }
            if !c.has(1) || !c.has(2) {
                return unsupported("batch_norm without running statistics has no inference form");
            }
            let ch = c.in_shape(0)[1];
            let scale = if c.has(3) { c.x(3) } else { b.floats(&vec![1.0; ch], &[ch]) };
            let bias = if c.has(4) { c.x(4) } else { b.floats(&vec![0.0; ch], &[ch]) };
            let attrs = vec![("epsilon", Attr::Float(*eps))];
            one(b.op("BatchNormalization", &[&c.x(0), &scale, &bias, &c.x(1), &c.x(2)], attrs))
        }
        TraceOp::LayerNorm { normalized_shape, eps } => {
            let n: usize = normalized_shape.iter().product();
            let scale = if c.has(1) { c.x(1) } else { b.floats(&vec![1.0; n], normalized_shape) };
            // A zero bias rather than none: ONNX Runtime 1.32 crashes
            // building a session for a LayerNormalization without one.
            let bias = if c.has(2) { c.x(2) } else { b.floats(&vec![0.0; n], normalized_shape) };
            let attrs = vec![("axis", Attr::Int(-(normalized_shape.len() as i64))), ("epsilon", Attr::Float(*eps))];
            one(b.op("LayerNormalization", &[&c.x(0), &scale, &bias], attrs))
        }
        TraceOp::RmsNorm { normalized_shape, eps } => {
            let rank = c.in_shape(0).len();
            let axes: Vec<usize> = (rank - normalized_shape.len()..rank).collect();
            let x = c.x(0);
            let sq = b.op("Mul", &[&x, &x], vec![]);
            let ms = b.op("ReduceMean", &[&sq], vec![("axes", ints(&axes)), ("keepdims", Attr::Int(1))]);
            let e = b.scalar(*eps);
            let ms = b.op("Add", &[&ms, &e], vec![]);
            let rms = b.op("Sqrt", &[&ms], vec![]);
            let y = b.op("Div", &[&x, &rms], vec![]);
            one(if c.has(1) { b.op("Mul", &[&y, &c.x(1)], vec![]) } else { y })
        }
        TraceOp::GroupNorm { groups, eps } => one(group_norm(b, c, *groups, *eps)),
        TraceOp::Softmax { dim, log } => {
            let ty = if *log { "LogSoftmax" } else { "Softmax" };
            one(b.op(ty, &[&c.x(0)], vec![("axis", Attr::Int(*dim as i64))]))
        }
        TraceOp::Reduce { op, axes, keepdim } => reduce(b, c, *op, axes, *keepdim).map(|v| vec![v]),
        TraceOp::Reshape => {
            let (first, second) = c.out_shapes(0);
            let shape = b.shape(&first, &second)?;
            one(b.op("Reshape", &[&c.x(0), &shape], vec![]))
        }
        TraceOp::Permute { dims } => one(b.op("Transpose", &[&c.x(0)], vec![("perm", ints(dims))])),
        TraceOp::Slice { dim, start, len, step } => {
            if *len == 0 {
                return unsupported("an empty slice");
            }
            let end = start + (len - 1) * step + 1;
            let (s, e, a, st) =
                (b.ints(&[*start as i64]), b.ints(&[end as i64]), b.ints(&[*dim as i64]), b.ints(&[*step as i64]));
            one(b.op("Slice", &[&c.x(0), &s, &e, &a, &st], vec![]))
        }
        TraceOp::Expand => {
            let (first, second) = c.out_shapes(0);
            let shape = b.shape(&first, &second)?;
            one(b.op("Expand", &[&c.x(0), &shape], vec![]))
        }
        TraceOp::Concat { dim, stack } => {
            let mut parts: Vec<String> = (0..c.ins.len()).map(|i| c.x(i)).collect();
            if *stack {
                let axes = b.ints(&[*dim as i64]);
                parts = parts.iter().map(|p| b.op("Unsqueeze", &[p, &axes], vec![])).collect();
            }
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            one(b.op("Concat", &refs, vec![("axis", Attr::Int(*dim as i64))]))
        }
        TraceOp::IndexSelect { dim } => {
            one(b.op("Gather", &[&c.x(0), &c.x(1)], vec![("axis", Attr::Int(*dim as i64))]))
        }
        TraceOp::Gather { dim } => {
            one(b.op("GatherElements", &[&c.x(0), &c.x(1)], vec![("axis", Attr::Int(*dim as i64))]))
        }
        TraceOp::Embedding => one(b.op("Gather", &[&c.x(1), &c.x(0)], vec![("axis", Attr::Int(0))])),
        TraceOp::Dropout { training, p } => {
            if *training && *p > 0.0 {
                return unsupported("dropout in training mode: call model.eval() before exporting");
            }
            one(b.op("Identity", &[&c.x(0)], vec![]))
        }
        TraceOp::Attention { causal, scale } => one(attention(b, c, *causal, *scale)),
        TraceOp::Recurrent { kind, reverse } => crate::recurrent::unroll(b, c, *kind, *reverse),
        TraceOp::Rotary => {
            // x·cos + rotate_half(x)·sin, rotate_half(x) = cat(−x₂, x₁).
            let x = c.x(0);
            let halves = b.node("Split", &[&x], 2, vec![("axis", Attr::Int(-1))]);
            let neg = b.op("Neg", &[&halves[1]], vec![]);
            let rot = b.op("Concat", &[&neg, &halves[0]], vec![("axis", Attr::Int(-1))]);
            let a = b.op("Mul", &[&x, &c.x(1)], vec![]);
            let r = b.op("Mul", &[&rot, &c.x(2)], vec![]);
            one(b.op("Add", &[&a, &r], vec![]))
        }
        TraceOp::Opaque(name) => unsupported(format!("{name} has no inference form in ONNX")),
    }
}

/// Wraps an op that needs a batch dim (ONNX's Conv, pooling) around an
/// unbatched input of rank `rank - 1`.
fn batched(b: &mut Builder, c: &Ctx, rank: usize, f: impl FnOnce(&mut Builder, &str) -> String) -> String {
    if c.in_shape(0).len() == rank {
        return f(b, &c.x(0));
    }
    let axes = b.ints(&[0]);
    let x = b.op("Unsqueeze", &[&c.x(0), &axes], vec![]);
    let y = f(b, &x);
    b.op("Squeeze", &[&y, &axes], vec![])
}

fn scaled(b: &mut Builder, y: String, scale: f32) -> String {
    if scale == 1.0 {
        return y;
    }
    let s = b.scalar(scale);
    b.op("Mul", &[&y, &s], vec![])
}

fn constant(b: &mut Builder, c: &Ctx, fill: Option<f32>) -> Result<Vec<String>, Problem> {
    let t = &c.op.outputs[0];
    let (first, second) = c.out_shapes(0);
    if first != second {
        let Some(v) = fill else {
            return Err(
                FixedBatch(format!("a tensor made from host data has a batch-dependent shape {first:?}")).into()
            );
        };
        let shape = b.shape(&first, &second)?;
        let bytes = match t.dtype() {
            DType::U32 => i64::from(v as u32).to_le_bytes().to_vec(),
            DType::F16 => half::f16::from_f32(v).to_le_bytes().to_vec(),
            DType::F32 => v.to_le_bytes().to_vec(),
        };
        let value = raw("value", vec![1], onnx_type(t.dtype()), bytes);
        let out = b.op("ConstantOfShape", &[&shape], vec![("value", Attr::Tensor(Box::new(value)))]);
        return Ok(vec![out]);
    }
    let name = format!("constant_{}", b.at);
    Ok(vec![b.initializer(t, &name)])
}

fn unary(b: &mut Builder, op: UnaryOp, x: &str) -> String {
    let simple = |b: &mut Builder, ty: &str| b.op(ty, &[x], vec![]);
    match op {
        UnaryOp::Neg => simple(b, "Neg"),
        UnaryOp::Abs => simple(b, "Abs"),
        UnaryOp::Sign => simple(b, "Sign"),
        UnaryOp::Exp => simple(b, "Exp"),
        UnaryOp::Log => simple(b, "Log"),
        UnaryOp::Sqrt => simple(b, "Sqrt"),
        UnaryOp::Rsqrt => {
            let s = simple(b, "Sqrt");
            b.op("Reciprocal", &[&s], vec![])
        }
        UnaryOp::Square => b.op("Mul", &[x, x], vec![]),
        UnaryOp::Reciprocal => simple(b, "Reciprocal"),
        UnaryOp::Sin => simple(b, "Sin"),
        UnaryOp::Cos => simple(b, "Cos"),
        UnaryOp::Tanh => simple(b, "Tanh"),
        UnaryOp::Sigmoid => simple(b, "Sigmoid"),
        UnaryOp::Relu => simple(b, "Relu"),
        UnaryOp::LeakyRelu(slope) => b.op("LeakyRelu", &[x], vec![("alpha", Attr::Float(slope))]),
        UnaryOp::Elu(alpha) => b.op("Elu", &[x], vec![("alpha", Attr::Float(alpha))]),
        // ONNX's default alpha and gamma are SELU's constants.
        UnaryOp::Selu => simple(b, "Selu"),
        UnaryOp::Gelu => {
            // x · ½(1 + erf(x/√2)): Gelu is an ONNX op only from opset 20.
            let k = b.scalar(std::f32::consts::FRAC_1_SQRT_2);
            let s = b.op("Mul", &[x, &k], vec![]);
            let e = b.op("Erf", &[&s], vec![]);
            let one = b.scalar(1.0);
            let e1 = b.op("Add", &[&e, &one], vec![]);
            let half = b.scalar(0.5);
            let hx = b.op("Mul", &[x, &half], vec![]);
            b.op("Mul", &[&hx, &e1], vec![])
        }
        UnaryOp::GeluTanh => {
            // ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
            let x3 = b.op("Mul", &[x, x], vec![]);
            let x3 = b.op("Mul", &[&x3, x], vec![]);
            let a = b.scalar(0.044715);
            let x3 = b.op("Mul", &[&x3, &a], vec![]);
            let inner = b.op("Add", &[x, &x3], vec![]);
            let k = b.scalar(0.797_884_6);
            let inner = b.op("Mul", &[&inner, &k], vec![]);
            let t = b.op("Tanh", &[&inner], vec![]);
            let one = b.scalar(1.0);
            let t1 = b.op("Add", &[&t, &one], vec![]);
            let half = b.scalar(0.5);
            let hx = b.op("Mul", &[x, &half], vec![]);
            b.op("Mul", &[&hx, &t1], vec![])
        }
        UnaryOp::Silu => {
            let s = simple(b, "Sigmoid");
            b.op("Mul", &[x, &s], vec![])
        }
        UnaryOp::Mish => {
            let sp = simple(b, "Softplus");
            let t = b.op("Tanh", &[&sp], vec![]);
            b.op("Mul", &[x, &t], vec![])
        }
        UnaryOp::Softplus { beta, threshold } => {
            // softplus(βx)/β, and x where βx > threshold.
            let bt = b.scalar(beta);
            let bx = b.op("Mul", &[x, &bt], vec![]);
            let sp = b.op("Softplus", &[&bx], vec![]);
            let soft = b.op("Div", &[&sp, &bt], vec![]);
            let th = b.scalar(threshold);
            let big = b.op("Greater", &[&bx, &th], vec![]);
            b.op("Where", &[&big, x, &soft], vec![])
        }
        UnaryOp::Clamp(lo, hi) => {
            let (l, h) = (b.scalar(lo), b.scalar(hi));
            b.op("Clip", &[x, &l, &h], vec![])
        }
        UnaryOp::Affine { scale, shift } => {
            let (s, t) = (b.scalar(scale), b.scalar(shift));
            let y = b.op("Mul", &[x, &s], vec![]);
            b.op("Add", &[&y, &t], vec![])
        }
        UnaryOp::Powf(p) => {
            let e = b.scalar(p);
            b.op("Pow", &[x, &e], vec![])
        }
    }
}

fn binary(b: &mut Builder, c: &Ctx, op: BinaryOp) -> String {
    let (x, y) = (c.x(0), c.x(1));
    let arith = |b: &mut Builder, ty: &str| b.op(ty, &[&x, &y], vec![]);
    let compare = |b: &mut Builder, ty: &str| {
        // wgrad compares as f32 and returns an f32 mask.
        let float = |b: &mut Builder, i: usize, v: &str| match c.in_dtype(i) {
            DType::F32 => v.to_string(),
            _ => b.op("Cast", &[v], vec![("to", Attr::Int(DataType::Float as i64))]),
        };
        let (fx, fy) = (float(b, 0, &x), float(b, 1, &y));
        let m = b.op(ty, &[&fx, &fy], vec![]);
        b.op("Cast", &[&m], vec![("to", Attr::Int(DataType::Float as i64))])
    };
    match op {
        BinaryOp::Add => arith(b, "Add"),
        BinaryOp::Sub => arith(b, "Sub"),
        BinaryOp::Mul => arith(b, "Mul"),
        BinaryOp::Div => arith(b, "Div"),
        BinaryOp::Pow => arith(b, "Pow"),
        BinaryOp::Maximum => arith(b, "Max"),
        BinaryOp::Minimum => arith(b, "Min"),
        BinaryOp::Eq => compare(b, "Equal"),
        BinaryOp::Lt => compare(b, "Less"),
        BinaryOp::Le => compare(b, "LessOrEqual"),
        BinaryOp::Gt => compare(b, "Greater"),
        BinaryOp::Ge => compare(b, "GreaterOrEqual"),
    }
}

fn linear(b: &mut Builder, c: &Ctx) -> String {
    if c.in_shape(0).len() == 2 {
        return b.op("Gemm", &[&c.x(0), &c.x(1), &c.opt(2)], vec![("transB", Attr::Int(1))]);
    }
    let wt = b.op("Transpose", &[&c.x(1)], vec![("perm", ints(&[1, 0]))]);
    let y = b.op("MatMul", &[&c.x(0), &wt], vec![]);
    if c.has(2) {
        b.op("Add", &[&y, &c.x(2)], vec![])
    } else {
        y
    }
}

fn group_norm(b: &mut Builder, c: &Ctx, groups: usize, eps: f32) -> String {
    let s = c.in_shape(0);
    let x = c.x(0);
    // [N, G, rest] (0 copies N, so the batch stays free), statistics per
    // group, then back to x's own shape.
    let grouped_shape = b.ints(&[0, groups as i64, -1]);
    let g = b.op("Reshape", &[&x, &grouped_shape], vec![]);
    let axes = vec![("axes", ints(&[2])), ("keepdims", Attr::Int(1))];
    let mean = b.op("ReduceMean", &[&g], axes);
    let d = b.op("Sub", &[&g, &mean], vec![]);
    let d2 = b.op("Mul", &[&d, &d], vec![]);
    let var = b.op("ReduceMean", &[&d2], vec![("axes", ints(&[2])), ("keepdims", Attr::Int(1))]);
    let e = b.scalar(eps);
    let var = b.op("Add", &[&var, &e], vec![]);
    let std = b.op("Sqrt", &[&var], vec![]);
    let n = b.op("Div", &[&d, &std], vec![]);
    let shape = b.op("Shape", &[&x], vec![]);
    let mut y = b.op("Reshape", &[&n, &shape], vec![]);
    // Per-channel affine, broadcast over the spatial dims.
    let per_channel: Vec<i64> = std::iter::once(s[1] as i64).chain(std::iter::repeat_n(1, s.len() - 2)).collect();
    let pc = b.ints(&per_channel);
    if c.has(1) {
        let w = b.op("Reshape", &[&c.x(1), &pc], vec![]);
        y = b.op("Mul", &[&y, &w], vec![]);
    }
    if c.has(2) {
        let bias = b.op("Reshape", &[&c.x(2), &pc], vec![]);
        y = b.op("Add", &[&y, &bias], vec![]);
    }
    y
}

fn reduce(b: &mut Builder, c: &Ctx, op: ReduceOp, axes: &[usize], keepdim: bool) -> Result<String, Problem> {
    let rank = c.in_shape(0).len();
    let axes: Vec<usize> = if axes.is_empty() { (0..rank).collect() } else { axes.to_vec() };
    let x = c.x(0);
    let keep = ("keepdims", Attr::Int(keepdim as i64));
    // Opset 17: ReduceSum takes its axes as an input, the others as an attribute.
    let attr_reduce = |b: &mut Builder, ty: &str, x: &str, keep: i64| {
        b.op(ty, &[x], vec![("axes", ints(&axes)), ("keepdims", Attr::Int(keep))])
    };
    Ok(match op {
        ReduceOp::Sum => {
            let a = b.ints(&axes.iter().map(|&a| a as i64).collect::<Vec<_>>());
            b.op("ReduceSum", &[&x, &a], vec![keep])
        }
        ReduceOp::Mean => attr_reduce(b, "ReduceMean", &x, keepdim as i64),
        ReduceOp::Max => attr_reduce(b, "ReduceMax", &x, keepdim as i64),
        ReduceOp::Min => attr_reduce(b, "ReduceMin", &x, keepdim as i64),
        ReduceOp::ArgMax | ReduceOp::ArgMin => {
            if axes.len() != 1 {
                return unsupported(format!("{} over several axes {axes:?} (ONNX's takes one)", op.name()));
            }
            let ty = if op == ReduceOp::ArgMax { "ArgMax" } else { "ArgMin" };
            b.op(ty, &[&x], vec![("axis", Attr::Int(axes[0] as i64)), keep])
        }
        ReduceOp::Var { correction } => {
            let s = c.in_shape(0);
            let n: usize = axes.iter().map(|&a| s[a]).product();
            let mean = attr_reduce(b, "ReduceMean", &x, 1);
            let d = b.op("Sub", &[&x, &mean], vec![]);
            let d2 = b.op("Mul", &[&d, &d], vec![]);
            let m2 = attr_reduce(b, "ReduceMean", &d2, keepdim as i64);
            let denom = n.saturating_sub(correction);
            let k = b.scalar(if denom == 0 { f32::INFINITY } else { n as f32 / denom as f32 });
            b.op("Mul", &[&m2, &k], vec![])
        }
    })
}

fn attention(b: &mut Builder, c: &Ctx, causal: bool, scale: f32) -> String {
    let qs = c.in_shape(0);
    let ks = c.in_shape(1);
    let rank = ks.len();
    let (lq, lk) = (qs[rank - 2], ks[rank - 2]);
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(rank - 2, rank - 1);
    let kt = b.op("Transpose", &[&c.x(1)], vec![("perm", ints(&perm))]);
    let scores = b.op("MatMul", &[&c.x(0), &kt], vec![]);
    let mut scores = scaled(b, scores, scale);
    if c.has(3) {
        scores = b.op("Add", &[&scores, &c.x(3)], vec![]);
    }
    if causal {
        // Top-left aligned, as the op: query i sees keys j ≤ i.
        let mask: Vec<f32> =
            (0..lq).flat_map(|i| (0..lk).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY })).collect();
        let m = b.floats(&mask, &[lq, lk]);
        scores = b.op("Add", &[&scores, &m], vec![]);
    }
    let p = b.op("Softmax", &[&scores], vec![("axis", Attr::Int(-1))]);
    b.op("MatMul", &[&p, &c.x(2)], vec![])
}

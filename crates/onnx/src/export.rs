//! The export: trace the forward pass (twice, to find the batch
//! dimension), write the live ops as an ONNX graph, save it atomically.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use prost::Message;
use wgrad_autograd::{DType, Device, Tensor, TracedOp};
use wgrad_nn::Module;

use crate::builder::{onnx_type, BatchSource, Builder, FixedBatch};
use crate::error::{Error, Result};
use crate::ops::{emit, Ctx, Problem};
use crate::proto::{
    tensor_shape_proto::{dimension::Value, Dimension},
    type_proto, GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The ONNX opset the files declare (ONNX Runtime 1.14 and later run it).
pub const OPSET: i64 = 17;
/// IR version 8 goes with opset 17.
const IR_VERSION: i64 = 8;

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// ONNX nodes in the graph.
    pub nodes: usize,
    /// Traced wgrad ops written (ops whose results no output reads are left out).
    pub ops: usize,
    /// Parameters and buffers written as initializers, by state-dict name.
    pub parameters: Vec<String>,
    /// `None` when the batch dimension is symbolic (`batch` in the file);
    /// otherwise why the file has the example's batch size.
    pub fixed_batch: Option<String>,
}

/// An exported model, in memory.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    model: ModelProto,
    report: ExportReport,
}

impl OnnxModel {
    /// The ONNX message.
    pub fn proto(&self) -> &ModelProto {
        &self.model
    }

    /// What the export wrote.
    pub fn report(&self) -> &ExportReport {
        &self.report
    }

    /// The serialized file.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }

    /// Writes the file atomically (a temporary beside it, synced, renamed
    /// over `path`): a crash leaves the old file or the new one.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let name = path.file_name().ok_or_else(|| io(std::io::Error::other("not a file name")))?;
        let temp = path.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        let written = (|| {
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(&self.to_bytes())?;
            f.sync_all()?;
            std::fs::rename(&temp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map_err(io)
    }
}

/// Exports `model.forward(example)` to `path`: one input `input` whose
/// dim 0 is the batch, one output `output`. Call `model.eval()` first.
pub fn export(model: &dyn Module, example: &Tensor, path: impl AsRef<Path>) -> Result<ExportReport> {
    let exported = Exporter::new(model).input("input", example).forward()?;
    exported.save(path)?;
    Ok(exported.report)
}

struct Input {
    name: String,
    tensor: Tensor,
    batch_axis: Option<usize>,
}

/// An export with named inputs and outputs and any function of them (a
/// language model with its state, a decoder step): [`trace`](Self::trace)
/// builds the model.
pub struct Exporter<'a> {
    module: &'a dyn Module,
    inputs: Vec<Input>,
    outputs: Vec<String>,
    dynamic: bool,
}

impl<'a> Exporter<'a> {
    /// An export of a function of `module`'s parameters and buffers.
    pub fn new(module: &'a dyn Module) -> Self {
        Exporter { module, inputs: Vec::new(), outputs: Vec::new(), dynamic: true }
    }

    /// Adds a graph input named `name` with `example`'s shape and dtype
    /// (U32 ids become int64); dim 0 is the batch.
    pub fn input(self, name: &str, example: &Tensor) -> Self {
        self.input_with_batch_axis(name, example, Some(0))
    }

    /// Adds a graph input whose batch dim is `axis` (`Some(1)` for a
    /// recurrent state `[layers, B, H]`), or `None` when it has none.
    pub fn input_with_batch_axis(mut self, name: &str, example: &Tensor, axis: Option<usize>) -> Self {
        self.inputs.push(Input { name: name.to_string(), tensor: example.clone(), batch_axis: axis });
        self
    }

    /// Names the outputs (default `output`, `output_1`, ...).
    pub fn outputs(mut self, names: &[&str]) -> Self {
        self.outputs = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Keeps every shape as traced (no symbolic batch dimension).
    pub fn fixed_batch(mut self) -> Self {
        self.dynamic = false;
        self
    }

    /// Exports `module.forward` of the one input.
    pub fn forward(self) -> Result<OnnxModel> {
        if self.inputs.len() != 1 {
            return Err(Error::Invalid(format!("forward() takes one input, {} were given", self.inputs.len())));
        }
        let module = self.module;
        self.trace(|x| vec![module.forward(&x[0])])
    }

    /// Traces `f` on the inputs (in the order added) and builds the model
    /// of the tensors it returns.
    pub fn trace(self, f: impl Fn(&[Tensor]) -> Vec<Tensor>) -> Result<OnnxModel> {
        self.check_inputs()?;
        let examples: Vec<Tensor> = self.inputs.iter().map(|i| i.tensor.clone()).collect();
        let first = run_traced(&f, &examples);
        let mut fixed = None;
        let batch = if !self.dynamic {
            fixed = Some("asked for a fixed batch".to_string());
            None
        } else {
            self.batch_source(&mut fixed)
        };
        let second = batch.as_ref().and_then(|src| {
            let grown: Vec<Tensor> = self.inputs.iter().map(|i| grow_batch(&i.tensor, i.batch_axis)).collect();
            // A function that cannot run at another batch size (a reshape
            // to a fixed size) is exported at the example's.
            let second = match wgrad_autograd::try_run(|| run_traced(&f, &grown)) {
                Ok(second) => second,
                Err(e) => {
                    fixed = Some(format!("the function fails at batch size {}: {e}", src.sizes.1));
                    return None;
                }
            };
            match same_structure(&first, &second) {
                Ok(()) => Some(second),
                Err(why) => {
                    fixed = Some(format!("{why} (batch {} vs {})", src.sizes.0, src.sizes.1));
                    None
                }
            }
        });
        let built = match (batch, &second) {
            (Some(src), Some(second)) => match self.build(&first, Some((second, src))) {
                Err(Problem::Fixed(FixedBatch(why))) => {
                    fixed = Some(why);
                    self.build(&first, None)
                }
                other => other,
            },
            _ => self.build(&first, None),
        };
        let (graph, ops, parameters) = built.map_err(|p| match p {
            Problem::Failed(e) => e,
            Problem::Unsupported(e) | Problem::Fixed(FixedBatch(e)) => Error::Invalid(e),
        })?;
        let nodes = graph.node.len();
        let model = ModelProto {
            ir_version: Some(IR_VERSION),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
            producer_name: Some("wgrad".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            graph: Some(graph),
            ..Default::default()
        };
        Ok(OnnxModel { model, report: ExportReport { nodes, ops, parameters, fixed_batch: fixed } })
    }

    fn check_inputs(&self) -> Result<()> {
        if self.inputs.is_empty() {
            return Err(Error::Invalid("an export needs at least one input".into()));
        }
        let mut seen = HashSet::new();
        for i in &self.inputs {
            if !seen.insert(&i.name) {
                return Err(Error::Invalid(format!("two inputs are named `{}`", i.name)));
            }
            if let Some(a) = i.batch_axis {
                let s = i.tensor.shape();
                if a >= s.len() || s[a] == 0 {
                    return Err(Error::Invalid(format!(
                        "input `{}` of shape {s:?} has no batch dim {a} (give its axis, or None)",
                        i.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The first input with a batch dim, when the inputs agree on the batch size.
    fn batch_source(&self, fixed: &mut Option<String>) -> Option<BatchSource> {
        let with: Vec<&Input> = self.inputs.iter().filter(|i| i.batch_axis.is_some()).collect();
        let Some(first) = with.first() else {
            *fixed = Some("no input has a batch dim".into());
            return None;
        };
        let axis = first.batch_axis.expect("filtered");
        let b = first.tensor.shape()[axis];
        if let Some(other) = with.iter().find(|i| i.tensor.shape()[i.batch_axis.expect("filtered")] != b) {
            *fixed = Some(format!("inputs `{}` and `{}` have different batch sizes", first.name, other.name));
            return None;
        }
        Some(BatchSource { input: first.name.clone(), axis, sizes: (b, b + 1) })
    }

    /// The graph of the first trace; with the second (and the batch's
    /// source) its batch-dependent shapes are computed, not constants.
    fn build(
        &self,
        first: &Traced,
        second: Option<(&Traced, BatchSource)>,
    ) -> std::result::Result<(GraphProto, usize, Vec<String>), Problem> {
        let (second, batch) = match second {
            Some((s, b)) => (Some(s), Some(b)),
            None => (None, None),
        };
        let dynamic = batch.is_some();
        let mut b = Builder::new(batch);
        let mut graph =
            GraphProto { name: Some(self.module.describe().chars().take(64).collect()), ..Default::default() };
        for (k, input) in self.inputs.iter().enumerate() {
            let name = b.bind(&input.tensor, &input.name);
            let second_shape = second.map(|s| s.inputs[k].shape().to_vec());
            graph.input.push(value_info(&name, &input.tensor, second_shape.as_deref(), dynamic));
        }
        let params = parameter_names(self.module);
        let live = live_ops(first);
        let total = first.ops.len();
        let mut written = Vec::new();
        let mut captured = 0;
        for (index, op) in first.ops.iter().enumerate() {
            if !live[index] {
                continue;
            }
            b.at = index;
            let mut ins = Vec::with_capacity(op.inputs.len());
            for t in &op.inputs {
                let Some(t) = t else {
                    ins.push(None);
                    continue;
                };
                let name = match b.name_of(t) {
                    Some(n) => n,
                    None => match params.get(&t.id()) {
                        Some(p) => {
                            written.push(p.clone());
                            b.initializer(t, p)
                        }
                        None if t.id() < first.first_id => {
                            captured += 1;
                            b.initializer(t, &format!("captured_{captured}"))
                        }
                        None => {
                            let shape = t.shape().to_vec();
                            return Err(Problem::Failed(Error::UntracedTensor { op: op.op.name(), index, shape }));
                        }
                    },
                };
                ins.push(Some(name));
            }
            let ctx = Ctx { op, second: second.map(|s| &s.ops[index]), ins };
            let outs = emit(&mut b, &ctx).map_err(|p| match p {
                Problem::Unsupported(reason) => {
                    Problem::Failed(Error::Unsupported { op: op.op.name(), index, total, reason })
                }
                other => other,
            })?;
            for (t, v) in op.outputs.iter().zip(outs) {
                b.set(t, v);
            }
        }
        let ops = live.iter().filter(|&&l| l).count();
        for (k, out) in first.outputs.iter().enumerate() {
            let value = match b.name_of(out) {
                Some(v) => v,
                None => match params.get(&out.id()) {
                    Some(p) => b.initializer(out, p),
                    None => {
                        return Err(Problem::Failed(Error::UnknownOutput { index: k, shape: out.shape().to_vec() }));
                    }
                },
            };
            let wanted = self.outputs.get(k).cloned().unwrap_or_else(|| {
                if k == 0 {
                    "output".into()
                } else {
                    format!("output_{k}")
                }
            });
            let name = b.fresh(&wanted);
            b.at = total + k;
            b.node_into("Identity", &[&value], std::slice::from_ref(&name), vec![]);
            let second_shape = second.map(|s| s.outputs[k].shape().to_vec());
            graph.output.push(value_info(&name, out, second_shape.as_deref(), dynamic));
        }
        (graph.node, graph.initializer) = b.finish();
        Ok((graph, ops, written))
    }
}

/// One run of the function under a trace.
struct Traced {
    inputs: Vec<Tensor>,
    outputs: Vec<Tensor>,
    ops: Vec<TracedOp>,
    first_id: u64,
}

fn run_traced(f: &impl Fn(&[Tensor]) -> Vec<Tensor>, inputs: &[Tensor]) -> Traced {
    let (outputs, ops, first_id) = wgrad_autograd::no_grad(|| {
        let _no_autocast = wgrad_autograd::AutocastGuard::new(false);
        wgrad_autograd::trace(|| f(inputs))
    });
    Traced { inputs: inputs.to_vec(), outputs, ops, first_id }
}

/// Whether two traces ran the same ops with the same attributes.
fn same_structure(a: &Traced, b: &Traced) -> std::result::Result<(), String> {
    if a.ops.len() != b.ops.len() || a.outputs.len() != b.outputs.len() {
        return Err(format!("the function ran {} ops at one batch size and {} at another", a.ops.len(), b.ops.len()));
    }
    for (i, (x, y)) in a.ops.iter().zip(&b.ops).enumerate() {
        if x.op != y.op || x.inputs.len() != y.inputs.len() {
            return Err(format!("op #{i} ({}) has other attributes at another batch size", x.op.name()));
        }
    }
    Ok(())
}

/// Which ops some output depends on.
fn live_ops(t: &Traced) -> Vec<bool> {
    let mut needed: HashSet<u64> = t.outputs.iter().map(Tensor::id).collect();
    let mut live = vec![false; t.ops.len()];
    for (i, op) in t.ops.iter().enumerate().rev() {
        if op.outputs.iter().any(|o| needed.contains(&o.id())) {
            live[i] = true;
            needed.extend(op.inputs.iter().flatten().map(Tensor::id));
        }
    }
    live
}

/// Parameter and buffer ids to their state-dict names (a tied weight gets
/// its first name).
fn parameter_names(m: &dyn Module) -> HashMap<u64, String> {
    let mut names = HashMap::new();
    m.visit_parameters("", &mut |n, t| {
        names.entry(t.id()).or_insert_with(|| n.to_string());
    });
    m.visit_buffers("", &mut |n, t| {
        names.entry(t.id()).or_insert_with(|| n.to_string());
    });
    names
}

/// `t` with one more item along `axis`: its first item repeated at the end.
fn grow_batch(t: &Tensor, axis: Option<usize>) -> Tensor {
    let Some(axis) = axis else { return t.clone() };
    let s = t.shape().to_vec();
    let outer: usize = s[..axis].iter().product();
    let inner: usize = s[axis + 1..].iter().product();
    let mut shape = s.clone();
    shape[axis] += 1;
    let device: Device = t.device();
    fn grow<T: Copy>(v: &[T], outer: usize, block: usize, inner: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(v.len() + outer * inner);
        for o in 0..outer {
            let part = &v[o * block..(o + 1) * block];
            out.extend_from_slice(part);
            out.extend_from_slice(&part[..inner]);
        }
        out
    }
    let block = s[axis] * inner;
    match t.dtype() {
        DType::F32 => Tensor::from_vec(&grow(&t.to_vec(), outer, block, inner), &shape, &device),
        DType::U32 => Tensor::from_u32(&grow(&t.to_vec_u32(), outer, block, inner), &shape, &device),
        DType::F16 => Tensor::from_f16(&grow(&t.to_vec_f16(), outer, block, inner), &shape, &device),
    }
}

/// A graph input's or output's type: dims that differ between the traces
/// are `batch`.
fn value_info(name: &str, t: &Tensor, second: Option<&[usize]>, dynamic: bool) -> ValueInfoProto {
    let first = t.shape().to_vec();
    let dims = first
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let symbolic = dynamic && second.is_some_and(|s| s.get(i) != Some(&d));
            Dimension {
                value: Some(if symbolic { Value::DimParam("batch".into()) } else { Value::DimValue(d as i64) }),
                ..Default::default()
            }
        })
        .collect();
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(onnx_type(t.dtype()) as i32),
                shape: Some(TensorShapeProto { dim: dims }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

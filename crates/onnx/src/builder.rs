//! An ONNX graph under construction: value names, nodes, initializers, and
//! the shape vectors that keep the batch dimension symbolic.

use std::collections::HashMap;

use wgrad_autograd::{DType, Tensor};

use crate::proto::{attribute_proto::AttributeType, tensor_proto::DataType, AttributeProto, NodeProto, TensorProto};

/// An ONNX node attribute's value.
pub(crate) enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Str(&'static str),
    Tensor(Box<TensorProto>),
}

/// `(name, value)` pairs, as the op table writes them.
pub(crate) type Attrs = Vec<(&'static str, Attr)>;

/// Where the batch size comes from when it stays symbolic: graph input
/// `input`'s dim `axis`, which was `sizes.0` in the first trace and
/// `sizes.1` in the second.
#[derive(Clone, Debug)]
pub(crate) struct BatchSource {
    pub input: String,
    pub axis: usize,
    pub sizes: (usize, usize),
}

/// Why the batch dimension cannot stay symbolic (the export then fixes it).
#[derive(Debug)]
pub(crate) struct FixedBatch(pub String);

/// The graph being written.
pub(crate) struct Builder {
    nodes: Vec<NodeProto>,
    /// Constants the builder made (shape vectors, scalars), as written.
    initializers: Vec<TensorProto>,
    /// Tensors whose values become initializers (parameters, constants
    /// of the trace), read back when the graph is [finished](Self::finish):
    /// an attempt that is thrown away (a batch that must be fixed) reads
    /// nothing, and the readbacks run together.
    values: Vec<(String, Tensor)>,
    /// ONNX value name of each tensor id the graph has.
    names: HashMap<u64, String>,
    used: HashMap<String, usize>,
    batch: Option<BatchSource>,
    /// The batch size as an int64 `[1]` value, once made.
    batch_value: Option<String>,
    /// Index of the traced op being written (for node names and errors).
    pub at: usize,
}

impl Builder {
    pub fn new(batch: Option<BatchSource>) -> Self {
        Builder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            values: Vec::new(),
            names: HashMap::new(),
            used: HashMap::new(),
            batch,
            batch_value: None,
            at: 0,
        }
    }

    /// A value name not used before, from `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        let base: String = base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
        let n = self.used.entry(base.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            base
        } else {
            format!("{base}_{}", *n - 1)
        }
    }

    /// Names tensor `t` in the graph as `name` (an input, a parameter).
    pub fn bind(&mut self, t: &Tensor, name: &str) -> String {
        let name = self.fresh(name);
        self.names.insert(t.id(), name.clone());
        name
    }

    /// The graph's name for tensor `t`, if it has one.
    pub fn name_of(&self, t: &Tensor) -> Option<String> {
        self.names.get(&t.id()).cloned()
    }

    /// Appends a node of `op_type` reading `inputs` (an empty name is an
    /// omitted optional input), returning the names of `outputs` new values.
    pub fn node(&mut self, op_type: &str, inputs: &[&str], outputs: usize, attrs: Attrs) -> Vec<String> {
        let outs: Vec<String> =
            (0..outputs).map(|_| self.fresh(&format!("{}_{}", op_type.to_lowercase(), self.at))).collect();
        self.node_into(op_type, inputs, &outs, attrs);
        outs
    }

    /// Appends a node of `op_type` writing the values named `outputs`.
    pub fn node_into(&mut self, op_type: &str, inputs: &[&str], outputs: &[String], attrs: Attrs) {
        let node = NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.to_vec(),
            name: Some(self.fresh(&format!("{op_type}_op{}", self.at))),
            op_type: Some(op_type.to_string()),
            attribute: attrs.into_iter().map(|(name, a)| attribute(name, a)).collect(),
            ..Default::default()
        };
        self.nodes.push(node);
    }

    /// [`node`](Self::node) with one output.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Attrs) -> String {
        self.node(op_type, inputs, 1, attrs).remove(0)
    }

    /// Makes `value` (a node's output) the value of tensor `t`.
    pub fn set(&mut self, t: &Tensor, value: String) {
        self.names.insert(t.id(), value);
    }

    /// An initializer holding `t`'s values, named `name`.
    pub fn initializer(&mut self, t: &Tensor, name: &str) -> String {
        let name = self.bind(t, name);
        self.values.push((name.clone(), t.clone()));
        name
    }

    /// The nodes and the initializers: the builder's constants, then the
    /// tensors' values (their readbacks all started before any is waited for).
    pub fn finish(self) -> (Vec<NodeProto>, Vec<TensorProto>) {
        let pending: Vec<_> =
            self.values.iter().map(|(_, t)| (t.dtype() == DType::F32).then(|| t.to_vec_async())).collect();
        let mut initializers = self.initializers;
        for ((name, t), pending) in self.values.iter().zip(pending) {
            let dims = t.shape().iter().map(|&d| d as i64).collect();
            let bytes: Vec<u8> = match (t.dtype(), pending) {
                (DType::F32, Some(p)) => p.wait().iter().flat_map(|v| v.to_le_bytes()).collect(),
                (DType::F16, _) => t.to_vec_f16().iter().flat_map(|v| v.to_le_bytes()).collect(),
                // Ids and indices stay exact as int64 (not through f32).
                _ => t.to_vec_u32().iter().flat_map(|&v| i64::from(v).to_le_bytes()).collect(),
            };
            initializers.push(raw(name, dims, onnx_type(t.dtype()), bytes));
        }
        (self.nodes, initializers)
    }

    /// An int64 constant.
    pub fn ints(&mut self, values: &[i64]) -> String {
        let name = self.fresh("const_i64");
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(raw(&name, vec![values.len() as i64], DataType::Int64, bytes));
        name
    }

    /// A float constant of `shape` (`[]` for a scalar).
    pub fn floats(&mut self, values: &[f32], shape: &[usize]) -> String {
        let name = self.fresh("const_f32");
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(raw(&name, shape.iter().map(|&d| d as i64).collect(), DataType::Float, bytes));
        name
    }

    /// A float scalar constant.
    pub fn scalar(&mut self, v: f32) -> String {
        self.floats(&[v], &[])
    }

    /// The shape vector (int64 `[rank]`) for a value that was `first` in
    /// the first trace and `second` in the second. Dims that differ must
    /// be the same multiple of the batch in both; they are computed from
    /// the batch input's shape, the rest are constants.
    pub fn shape(&mut self, first: &[usize], second: &[usize]) -> Result<String, FixedBatch> {
        if first == second || self.batch.is_none() {
            return Ok(self.ints(&first.iter().map(|&d| d as i64).collect::<Vec<_>>()));
        }
        let src = self.batch.clone().expect("checked above");
        if first.len() != second.len() {
            return Err(FixedBatch(format!("a shape's rank depends on the batch ({first:?} vs {second:?})")));
        }
        let (b1, b2) = src.sizes;
        let mut parts = Vec::new();
        let mut run: Vec<i64> = Vec::new();
        for (&a, &b) in first.iter().zip(second) {
            if a == b {
                run.push(a as i64);
                continue;
            }
            if a % b1 != 0 || b != a / b1 * b2 {
                return Err(FixedBatch(format!("shape {first:?} is not a multiple of the batch size {b1}")));
            }
            if !run.is_empty() {
                parts.push(self.ints(&std::mem::take(&mut run)));
            }
            let batch = self.batch_value();
            let m = a / b1;
            parts.push(if m == 1 {
                batch
            } else {
                let k = self.ints(&[m as i64]);
                self.op("Mul", &[&batch, &k], vec![])
            });
        }
        if !run.is_empty() {
            parts.push(self.ints(&run));
        }
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(self.op("Concat", &refs, vec![("axis", Attr::Int(0))]))
    }

    /// The batch size, int64 `[1]`, read from the batch input's shape.
    fn batch_value(&mut self) -> String {
        if let Some(v) = &self.batch_value {
            return v.clone();
        }
        let src = self.batch.clone().expect("a symbolic batch");
        let axis = src.axis as i64;
        let v = self.op("Shape", &[&src.input], vec![("start", Attr::Int(axis)), ("end", Attr::Int(axis + 1))]);
        self.batch_value = Some(v.clone());
        v
    }
}

fn attribute(name: &str, a: Attr) -> AttributeProto {
    let mut p = AttributeProto { name: Some(name.to_string()), ..Default::default() };
    match a {
        Attr::Int(i) => {
            p.i = Some(i);
            p.r#type = Some(AttributeType::Int as i32);
        }
        Attr::Float(f) => {
            p.f = Some(f);
            p.r#type = Some(AttributeType::Float as i32);
        }
        Attr::Ints(v) => {
            p.ints = v;
            p.r#type = Some(AttributeType::Ints as i32);
        }
        Attr::Str(v) => {
            p.s = Some(v.as_bytes().to_vec());
            p.r#type = Some(AttributeType::String as i32);
        }
        Attr::Tensor(t) => {
            p.t = Some(*t);
            p.r#type = Some(AttributeType::Tensor as i32);
        }
    }
    p
}

/// ONNX's element type for a wgrad dtype: U32 (ids, indices) becomes
/// int64, what ONNX's Gather takes and what callers pass from NumPy.
pub(crate) fn onnx_type(dtype: DType) -> DataType {
    match dtype {
        DType::F32 => DataType::Float,
        DType::F16 => DataType::Float16,
        DType::U32 => DataType::Int64,
    }
}

/// A tensor named `name` of `dims` holding `bytes` (little-endian values).
pub(crate) fn raw(name: &str, dims: Vec<i64>, ty: DataType, bytes: Vec<u8>) -> TensorProto {
    TensorProto {
        dims,
        data_type: Some(ty as i32),
        name: Some(name.to_string()),
        raw_data: Some(bytes),
        ..Default::default()
    }
}

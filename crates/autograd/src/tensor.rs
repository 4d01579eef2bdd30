//! [`Tensor`]: an n-dimensional array on a device that remembers how it was made.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::ops::{cast, copy, fill};
use wgrad_gpu_core::{Buffer, Device, Dims, Layout, Result};

use crate::graph::{self, BackwardFn, Node, Saves};
use crate::trace::TraceOp;
use crate::DType;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The id the next tensor made will get (tensors made before have lower ids).
pub(crate) fn next_id() -> u64 {
    NEXT_ID.load(Ordering::Relaxed)
}

/// An n-dimensional array. Cloning is cheap and shares data and graph.
///
/// Ops record GPU work and return at once; data leaves the device only in
/// [`to_vec`](Tensor::to_vec) / [`item`](Tensor::item).
pub struct Tensor {
    pub(crate) inner: Arc<Inner>,
    /// An *edge* ([`Tensor::edge`]): a handle that does not hold the data.
    edge: bool,
}

/// Shared by a tensor's handles: its identity in the graph (its gradient
/// and the node that made it live as long as any handle does) and its data
/// (only as long as a handle that holds it does: see `holders`).
pub(crate) struct Inner {
    id: u64,
    /// Buffer, view and device. Behind a lock so parameters can be updated
    /// in place (and so that a `Tensor` is unwind-safe: wgpu's handles are
    /// not). The buffer goes when the last handle holding it does.
    data: RwLock<(Option<Buffer>, Layout, Device)>,
    /// The handles that hold the data (every handle but edges).
    holders: AtomicUsize,
    dtype: DType,
    requires_grad: bool,
    /// False for results of recorded ops; true for user-made tensors.
    is_leaf: bool,
    grad: Mutex<Option<Tensor>>,
    node: Mutex<Option<Node>>,
}

impl Clone for Tensor {
    fn clone(&self) -> Tensor {
        if !self.edge {
            self.inner.holders.fetch_add(1, Ordering::Relaxed);
        }
        Tensor { inner: self.inner.clone(), edge: self.edge }
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        // The last handle holding the data frees it; edges (graph nodes'
        // references to values no rule reads) keep only the identity.
        if !self.edge && self.inner.holders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.data.write().unwrap().0 = None;
        }
    }
}

/// What an edge says when its data is read: a backward rule read a value
/// its op declared it does not save ([`Saves`](crate::graph::Saves)).
const EDGE_HAS_NO_DATA: &str = "wgrad internal: a backward rule read the data of a value its op does not save \
                                (see graph::Saves)";

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?}, {}", self.shape(), self.dtype(), self.device().name())?;
        if self.requires_grad() {
            write!(f, ", requires_grad")?;
        }
        write!(f, ")")
    }
}

/// Unwraps a gpu-core result inside an infallible op, naming the op (a
/// panic that [`try_run`](crate::try_run) turns back into the error).
#[track_caller]
pub(crate) fn expect<T>(op: &str, r: Result<T>) -> T {
    r.unwrap_or_else(|e| crate::recover::raise(op, e))
}

impl Tensor {
    // ---- construction -------------------------------------------------

    /// A leaf tensor over an existing buffer and view.
    pub fn from_parts(buffer: Buffer, layout: Layout, dtype: DType) -> Tensor {
        Self::make(buffer, layout, dtype, false, true, None)
    }

    fn make(
        buffer: Buffer,
        layout: Layout,
        dtype: DType,
        requires_grad: bool,
        is_leaf: bool,
        node: Option<Node>,
    ) -> Tensor {
        let device = buffer.device().clone();
        let inner = Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            data: RwLock::new((Some(buffer), layout, device)),
            holders: AtomicUsize::new(1),
            dtype,
            requires_grad,
            is_leaf,
            grad: Mutex::new(None),
            node: Mutex::new(node),
        };
        Tensor { inner: Arc::new(inner), edge: false }
    }

    /// This tensor as a graph node's input whose data the node's backward
    /// never reads: the same identity (id, gradient, producing node), the
    /// same shape and dtype, no buffer. A node holding an edge instead of
    /// the tensor lets the data go as soon as nothing else needs it, as
    /// PyTorch frees what no `grad_fn` saved, so the fuser need not store
    /// it (`relu(a + b)` under autograd writes only the ReLU's output).
    /// Reading an edge's data panics, whether or not another handle
    /// still holds it (so a rule that reads what it did not declare fails
    /// in every run).
    pub(crate) fn edge(&self) -> Tensor {
        Tensor { inner: self.inner.clone(), edge: true }
    }

    /// Whether this handle holds data (every tensor but an [`edge`](Self::edge)).
    pub(crate) fn has_data(&self) -> bool {
        !self.edge
    }

    /// The result of an op: records a graph node when gradients are enabled
    /// and any input requires one.
    pub(crate) fn from_op(
        op: &'static str,
        buffer: Buffer,
        layout: Layout,
        inputs: &[&Tensor],
        backward: impl Fn(&Tensor, &[Tensor], &Tensor) -> Vec<Option<Tensor>> + Send + Sync + 'static,
    ) -> Tensor {
        Self::from_op_dtype(op, buffer, layout, DType::F32, inputs, backward)
    }

    /// [`from_op`](Self::from_op) for a result of another dtype (an f16 cast,
    /// a view of one). Its gradient has that dtype too.
    pub(crate) fn from_op_dtype(
        op: &'static str,
        buffer: Buffer,
        layout: Layout,
        dtype: DType,
        inputs: &[&Tensor],
        backward: impl Fn(&Tensor, &[Tensor], &Tensor) -> Vec<Option<Tensor>> + Send + Sync + 'static,
    ) -> Tensor {
        Self::from_op_saving(op, buffer, layout, dtype, inputs, Saves::ALL, backward)
    }

    /// [`from_op_dtype`](Self::from_op_dtype) for a rule that reads only
    /// what `saves` names: its node holds [edges](Self::edge) to the rest.
    pub(crate) fn from_op_saving(
        op: &'static str,
        buffer: Buffer,
        layout: Layout,
        dtype: DType,
        inputs: &[&Tensor],
        saves: Saves,
        backward: impl Fn(&Tensor, &[Tensor], &Tensor) -> Vec<Option<Tensor>> + Send + Sync + 'static,
    ) -> Tensor {
        // The launches this op just recorded carry its name in a profile.
        wgrad_gpu_core::profile::label_pending(buffer.device(), op);
        let needs_grad = graph::records(inputs);
        let node = needs_grad.then(|| Node {
            op,
            inputs: inputs
                .iter()
                .enumerate()
                .map(|(i, t)| if saves.input(i) { (*t).clone() } else { t.edge() })
                .collect(),
            output: saves.output().then(|| buffer.clone()),
            backward: Box::new(backward) as BackwardFn,
            narrowed: None,
        });
        let out = Self::make(buffer, layout, dtype, needs_grad, !needs_grad, node);
        if crate::anomaly::is_anomaly_enabled() {
            crate::anomaly::check(op, inputs, &out);
        }
        out
    }

    /// A result that never has a gradient (comparisons, argmax, integer data).
    pub(crate) fn constant(buffer: Buffer, layout: Layout, dtype: DType) -> Tensor {
        Self::make(buffer, layout, dtype, false, true, None)
    }

    /// f32 data with a shape.
    ///
    /// # Panics
    /// When `data.len()` differs from the shape's element count.
    pub fn from_vec(data: &[f32], shape: &[usize], device: &Device) -> Tensor {
        expect("from_vec", Self::try_from_vec(data, shape, device))
    }

    /// f32 data with a shape; an error when the lengths disagree.
    pub fn try_from_vec(data: &[f32], shape: &[usize], device: &Device) -> Result<Tensor> {
        let scope = crate::trace::scope();
        check_len("from_vec", data.len(), shape)?;
        let out = Self::from_parts(Buffer::from_f32(device, data)?, Layout::contiguous(shape), DType::F32);
        Ok(scope.output(|| TraceOp::Constant { fill: None }, &[], out))
    }

    /// A 0-d tensor holding `v`.
    pub fn scalar(v: f32, device: &Device) -> Tensor {
        Self::from_vec(&[v], &[], device)
    }

    /// u32 data (indices, labels) with a shape.
    pub fn from_u32(data: &[u32], shape: &[usize], device: &Device) -> Tensor {
        expect("from_u32", Self::try_from_u32(data, shape, device))
    }

    /// [`from_u32`](Self::from_u32) with errors (lengths, device memory) returned.
    pub fn try_from_u32(data: &[u32], shape: &[usize], device: &Device) -> Result<Tensor> {
        let scope = crate::trace::scope();
        check_len("from_u32", data.len(), shape)?;
        let out = Self::from_parts(Buffer::from_u32(device, data)?, Layout::contiguous(shape), DType::U32);
        Ok(scope.output(|| TraceOp::Constant { fill: None }, &[], out))
    }

    /// f16 data with a shape (stored as f16; see [`Tensor::to_dtype`]).
    pub fn from_f16(data: &[half::f16], shape: &[usize], device: &Device) -> Tensor {
        expect("from_f16", Self::try_from_f16(data, shape, device))
    }

    /// [`from_f16`](Self::from_f16) with errors (lengths, device memory) returned.
    pub fn try_from_f16(data: &[half::f16], shape: &[usize], device: &Device) -> Result<Tensor> {
        let scope = crate::trace::scope();
        check_len("from_f16", data.len(), shape)?;
        let out = Self::from_parts(Buffer::from_f16(device, data)?, Layout::contiguous(shape), DType::F16);
        Ok(scope.output(|| TraceOp::Constant { fill: None }, &[], out))
    }

    /// A tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32, device: &Device) -> Tensor {
        let scope = crate::trace::scope();
        let n = shape.iter().product();
        let out = Self::from_parts(expect("full", fill::fill(device, n, value)), Layout::contiguous(shape), DType::F32);
        scope.output(|| TraceOp::Constant { fill: Some(value) }, &[], out)
    }

    /// Zeros.
    pub fn zeros(shape: &[usize], device: &Device) -> Tensor {
        Self::full(shape, 0.0, device)
    }

    /// Ones.
    pub fn ones(shape: &[usize], device: &Device) -> Tensor {
        Self::full(shape, 1.0, device)
    }

    /// `[start, start + step, ...)` up to (excluding) `end`, like `torch.arange`.
    pub fn arange(start: f32, end: f32, step: f32, device: &Device) -> Tensor {
        let scope = crate::trace::scope();
        assert!(step != 0.0, "arange: step must be non-zero");
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let out = fill::arange(device, n, start, step);
        let out = Self::from_parts(expect("arange", out), Layout::contiguous(&[n]), DType::F32);
        scope.output(|| TraceOp::Constant { fill: None }, &[], out)
    }

    /// Zeros shaped like `self`, on its device.
    pub fn zeros_like(&self) -> Tensor {
        Self::zeros(&self.shape(), &self.device())
    }

    /// Ones shaped like `self`, on its device.
    pub fn ones_like(&self) -> Tensor {
        Self::ones(&self.shape(), &self.device())
    }

    // ---- facts ----------------------------------------------------------

    /// A process-unique id (graph bookkeeping).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Size of each dimension (a [`Dims`]: derefs to `&[usize]`, allocates
    /// nothing up to rank 8; `.to_vec()` for a `Vec`).
    pub fn shape(&self) -> Dims {
        self.inner.data.read().unwrap().1.shape.clone()
    }

    /// Number of dimensions (PyTorch's `dim()`).
    pub fn dims(&self) -> usize {
        self.inner.data.read().unwrap().1.rank()
    }

    /// Size of dimension `d` (negative counts from the end).
    pub fn size(&self, d: isize) -> usize {
        self.shape()[self.dim_index("size", d)]
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.inner.data.read().unwrap().1.numel()
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }

    /// The device holding the data.
    pub fn device(&self) -> Device {
        self.inner.data.read().unwrap().2.clone()
    }

    /// The underlying buffer and view.
    pub fn buffer_and_layout(&self) -> (Buffer, Layout) {
        assert!(!self.edge, "{EDGE_HAS_NO_DATA}");
        let data = self.inner.data.read().unwrap();
        (data.0.clone().expect("wgrad internal: a tensor's data was freed while a handle held it"), data.1.clone())
    }

    /// Whether this tensor views `buffer` through `layout` (no clone of
    /// either, unlike comparing [`buffer_and_layout`](Self::buffer_and_layout)).
    pub fn is_view(&self, buffer: &Buffer, layout: &Layout) -> bool {
        let data = self.inner.data.read().unwrap();
        !self.edge && data.0.as_ref().is_some_and(|b| b.same_as(buffer)) && data.1 == *layout
    }

    /// The view over the buffer.
    pub fn layout(&self) -> Layout {
        self.inner.data.read().unwrap().1.clone()
    }

    /// Resolves a possibly negative dimension index, panicking with the op's name.
    pub(crate) fn dim_index(&self, op: &str, d: isize) -> usize {
        let r = self.dims() as isize;
        let i = if d < 0 { d + r } else { d };
        assert!(i >= 0 && i < r.max(1), "{op}: dimension {d} out of range for shape {:?}", self.shape());
        i as usize
    }

    pub(crate) fn expect_dtype(&self, op: &str, want: DType) {
        assert!(
            self.dtype() == want,
            "{op}: expects {want:?} tensors, got {:?} (use .to_dtype(DType::{want:?}))",
            self.dtype()
        );
    }

    /// `self` as F32 for an op whose kernels compute in f32: an F16 tensor
    /// is widened (a recorded cast, exact, so its gradient flows back as
    /// f16), an F32 one passes through. This is how f16 activations (the
    /// results of products under [`autocast`](crate::autocast())) reach ops
    /// that have no f16 kernel, as PyTorch's autocast widens inputs of its
    /// f32 ops.
    ///
    /// # Panics
    /// For U32 tensors, naming `op`.
    pub(crate) fn f32_input(&self, op: &str) -> Tensor {
        if self.dtype() == DType::F16 {
            return self.to_dtype(DType::F32);
        }
        self.expect_dtype(op, DType::F32);
        self.clone()
    }

    /// The storage of `self` for an op whose kernels read (or read and
    /// write) f16 directly and compute in f32 (batch norm, pooling, softmax,
    /// cross-entropy, row norm, reductions): [`Operands::F16`] for an F16
    /// tensor, so no widened copy is made or kept, [`Operands::F32`] for an
    /// F32 one.
    ///
    /// # Panics
    /// For U32 tensors, naming `op`.
    pub(crate) fn float_storage(&self, op: &str) -> Operands {
        match self.dtype() {
            DType::F16 => Operands::F16,
            DType::F32 => Operands::F32,
            other => panic!("{op}: expects F32 or F16 tensors, got {other:?} (use .to_dtype(DType::F32))"),
        }
    }

    /// `self` for an op that computes in f32: an F32 tensor as it is, an F16
    /// one widened (exactly). Panics naming `op` for other dtypes.
    pub(crate) fn widened(&self, op: &str) -> Tensor {
        match self.float_storage(op) {
            Operands::F16 => self.to_dtype(DType::F32),
            Operands::F32 => self.clone(),
        }
    }

    pub(crate) fn expect_same_device(&self, op: &str, other: &Tensor) {
        assert!(
            self.device() == other.device(),
            "{op}: tensors on different devices ({} and {})",
            self.device().name(),
            other.device().name()
        );
    }

    // ---- data out -------------------------------------------------------

    /// A dense row-major buffer of this tensor's elements (no copy when already dense).
    pub(crate) fn dense_buffer(&self) -> Buffer {
        let (b, l) = self.buffer_and_layout();
        if l.is_contiguous() {
            return b;
        }
        match self.dtype() {
            DType::F16 => expect("contiguous", copy::contiguous_f16(&b, &l)),
            _ => expect("contiguous", copy::contiguous(&b, &l)),
        }
    }

    /// The buffer and view in 4-byte elements, for the copy kernels (which
    /// move 4-byte words): an f16 tensor's viewed span is widened to f32
    /// (exact; the view indexes the widened buffer the same way).
    pub(crate) fn f32_words(&self) -> (Buffer, Layout) {
        let (b, l) = self.buffer_and_layout();
        if self.dtype() != DType::F16 {
            return (b, l);
        }
        (expect("contiguous", cast::f16_to_f32(&b, l.span())), l)
    }

    fn read_words(&self) -> Result<Vec<u8>> {
        let n = self.numel() * self.dtype().size();
        let mut bytes = self.dense_buffer().to_bytes()?;
        bytes.truncate(n);
        Ok(bytes)
    }

    /// Copies the elements (row-major) to the host as f32, converting F16;
    /// the only point besides [`item`](Self::item) where recorded work is submitted.
    pub fn to_vec(&self) -> Vec<f32> {
        expect("to_vec", self.try_to_vec())
    }

    /// [`to_vec`](Self::to_vec) that returns device errors instead of panicking.
    pub fn try_to_vec(&self) -> Result<Vec<f32>> {
        Ok(floats_from_bytes(self.dtype(), self.numel(), self.read_words()?))
    }

    /// [`to_vec`](Self::to_vec) without waiting: the copy starts now (the
    /// work recorded so far is submitted with it) and the values are taken
    /// from the [`PendingVec`](crate::PendingVec) when they have landed, so
    /// the host can record the next step while the device finishes this
    /// one. They are the values after the work recorded before this call
    /// (later in-place updates do not change them).
    pub fn to_vec_async(&self) -> crate::PendingVec {
        crate::PendingVec::new(self.dense_buffer().read_async(), self.dtype(), self.numel())
    }

    /// Copies a U32 tensor's elements to the host.
    pub fn to_vec_u32(&self) -> Vec<u32> {
        self.expect_dtype("to_vec_u32", DType::U32);
        let bytes = expect("to_vec_u32", self.read_words());
        bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    /// Copies the elements to the host as f16.
    pub fn to_vec_f16(&self) -> Vec<half::f16> {
        // A read, not an op: its cast is not traced.
        let _scope = crate::trace::scope();
        self.to_dtype(DType::F16)
            .read_words()
            .map(|b| b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect())
            .unwrap_or_else(|e| crate::recover::raise("to_vec_f16", e))
    }

    /// The value of a one-element tensor.
    ///
    /// # Panics
    /// When the tensor has more or fewer than one element.
    pub fn item(&self) -> f32 {
        assert_eq!(self.numel(), 1, "item: tensor of shape {:?} is not a single value", self.shape());
        self.to_vec()[0]
    }

    /// Converts to another element type (a copy), like PyTorch's `.to(dtype)`:
    /// - F32 → F16 rounds to nearest even; values past ±65504 become ±inf.
    /// - F32 → U32 truncates toward zero and saturates (NaN and negatives
    ///   give 0), like Rust's `as`; U32 → F32 is the nearest f32 (exact
    ///   below 2^24). F16 ↔ U32 go through F32.
    ///
    /// Float-to-float casts are differentiable: the gradient is cast back to
    /// the source's dtype, so gradients flow through the casts that
    /// [`autocast`](crate::autocast()) inserts. A U32 result or source has no
    /// gradient (like PyTorch's integer tensors).
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        let scope = crate::trace::scope();
        scope.output(|| TraceOp::Cast(dtype), &[self], self.to_dtype_untraced(dtype))
    }

    fn to_dtype_untraced(&self, dtype: DType) -> Tensor {
        let from = self.dtype();
        if dtype == from {
            return self.clone();
        }
        let n = self.numel();
        // A cast is elementwise, so casting the viewed span and keeping the
        // view gives the same elements. Views no larger than their element
        // count (`w.t()`, as `Linear` passes its weight; broadcasts) take
        // that path: no copy into row-major order before the cast.
        let (b, l) = self.buffer_and_layout();
        let (src, layout) =
            if l.span() <= n { (b, l) } else { (self.dense_buffer(), Layout::contiguous(&self.shape())) };
        let n = layout.span();
        let (op, out) = match (from, dtype) {
            (DType::F32, DType::F16) => ("to_f16", cast::f32_to_f16(&src, n)),
            (DType::F16, DType::F32) => ("to_f32", cast::f16_to_f32(&src, n)),
            (DType::U32, DType::F32) => ("to_f32", cast::u32_to_f32(&src, n)),
            (DType::F32, DType::U32) => ("to_u32", cast::f32_to_u32(&src, n)),
            (DType::F16, DType::U32) | (DType::U32, DType::F16) => {
                return self.detach().to_dtype(DType::F32).to_dtype(dtype);
            }
            (DType::F32 | DType::F16 | DType::U32, _) => unreachable!("same dtype returned above"),
        };
        let out = expect("to_dtype", out);
        if from == DType::U32 || dtype == DType::U32 {
            return Self::constant(out, layout, dtype);
        }
        Self::from_op_saving(op, out, layout, dtype, &[self], Saves::NOTHING, move |g, _, _| {
            vec![Some(g.to_dtype(from))]
        })
    }

    /// This tensor as F32 (PyTorch's `.float()`): masks and U32 class ids
    /// become numbers that `sum`/`mean` take; a no-op for F32.
    pub fn float(&self) -> Tensor {
        self.to_dtype(DType::F32)
    }

    // ---- gradients ------------------------------------------------------

    /// Whether gradients flow to (or through) this tensor.
    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad
    }

    /// A leaf sharing this data that requires a gradient (a parameter).
    ///
    /// # Panics
    /// For non-F32 tensors.
    pub fn requires_grad_(self) -> Tensor {
        let scope = crate::trace::scope();
        self.expect_dtype("requires_grad_", DType::F32);
        let (b, l) = self.buffer_and_layout();
        scope.output(|| TraceOp::Identity, &[&self], Self::make(b, l, DType::F32, true, true, None))
    }

    /// True for tensors made by the user (not by a recorded op).
    pub fn is_leaf(&self) -> bool {
        self.inner.is_leaf
    }

    /// The same data, cut from the graph (never requires a gradient).
    pub fn detach(&self) -> Tensor {
        let scope = crate::trace::scope();
        let (b, l) = self.buffer_and_layout();
        scope.output(|| TraceOp::Identity, &[self], Self::make(b, l, self.dtype(), false, true, None))
    }

    /// A copy of the elements in a new, contiguous buffer on the same
    /// device, cut from the graph (`t.detach().clone()` in PyTorch): later
    /// in-place updates of `self` (an optimizer step, a checkpoint load) do
    /// not reach it. Any dtype; f16 is copied exactly.
    pub fn deep_copy(&self) -> Tensor {
        expect("deep_copy", self.try_deep_copy())
    }

    /// [`deep_copy`](Self::deep_copy) with device errors returned.
    pub fn try_deep_copy(&self) -> Result<Tensor> {
        let scope = crate::trace::scope();
        let (b, l) = self.buffer_and_layout();
        let shape = l.shape.clone();
        let words = match self.dtype() {
            DType::F16 => copy::contiguous_f16(&b, &l)?,
            _ => copy::contiguous(&b, &l)?,
        };
        let out = Self::constant(words, Layout::contiguous(&shape), self.dtype());
        Ok(scope.output(|| TraceOp::Identity, &[self], out))
    }

    /// The accumulated gradient, if a backward pass reached this leaf.
    pub fn grad(&self) -> Option<Tensor> {
        self.inner.grad.lock().unwrap().clone()
    }

    /// Sets the accumulated gradient (PyTorch's `p.grad = g`); `None` forgets it.
    pub fn set_grad(&self, g: Option<Tensor>) {
        *self.inner.grad.lock().unwrap() = g;
    }

    /// Forgets the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        *self.inner.grad.lock().unwrap() = None;
    }

    pub(crate) fn accumulate_grad(&self, g: &Tensor) {
        let mut slot = self.inner.grad.lock().unwrap();
        // Gradients may be views (broadcasts); store them dense.
        let g = Tensor::constant(g.dense_buffer(), Layout::contiguous(&g.shape()), DType::F32);
        *slot = Some(match slot.take() {
            Some(prev) => graph::no_grad(|| &prev + &g),
            None => g,
        });
    }

    /// Backpropagates from this scalar (seed gradient 1), then frees the graph.
    ///
    /// # Panics
    /// When the tensor is not a single value or does not require a gradient.
    pub fn backward(&self) {
        // The backward pass is no part of a trace (its seed and rules' ops).
        let _scope = crate::trace::scope();
        assert_eq!(
            self.numel(),
            1,
            "backward: needs a single-value tensor, got shape {:?}; use backward_with",
            self.shape()
        );
        self.backward_with(&Tensor::ones(&self.shape(), &self.device()));
    }

    /// Backpropagates from this scalar and keeps the graph for another backward.
    pub fn backward_retain_graph(&self) {
        let _scope = crate::trace::scope();
        assert_eq!(self.numel(), 1, "backward: needs a single-value tensor, got shape {:?}", self.shape());
        self.run_backward(&Tensor::ones(&self.shape(), &self.device()), true);
    }

    /// Backpropagates a given gradient (shaped like `self`), then frees the graph.
    pub fn backward_with(&self, grad: &Tensor) {
        let _scope = crate::trace::scope();
        self.run_backward(grad, false)
    }

    fn run_backward(&self, grad: &Tensor, retain_graph: bool) {
        assert!(self.requires_grad(), "backward: tensor does not require grad (no parameter reaches it)");
        assert_eq!(
            grad.shape(),
            self.shape(),
            "backward: gradient shape {:?} vs tensor shape {:?}",
            grad.shape(),
            self.shape()
        );
        graph::backward(self, grad.detach(), retain_graph);
        // The fuser's pending launches hold the saved activations they read:
        // encode them now so that those are released with the graph.
        self.device().settle().expect("wgrad: encoding the backward pass failed");
    }

    /// Calls `f` with each input of the node that made this tensor (none
    /// for a leaf), under the node's lock: no list is copied per node.
    pub(crate) fn for_each_node_input(&self, mut f: impl FnMut(&Tensor)) {
        if let Some(n) = self.inner.node.lock().unwrap().as_ref() {
            n.inputs.iter().for_each(&mut f);
        }
    }

    pub(crate) fn take_node(&self, _retain: bool) -> Option<Node> {
        self.inner.node.lock().unwrap().take()
    }

    pub(crate) fn put_node(&self, node: Node) {
        *self.inner.node.lock().unwrap() = Some(node);
    }

    /// Marks this tensor, made by a recorded `narrow` of its one input, as
    /// that input's `dim` from `start` (see [`Node::narrowed`]).
    pub(crate) fn mark_narrowed(&self, dim: usize, start: usize) {
        if let Some(n) = self.inner.node.lock().unwrap().as_mut() {
            n.narrowed = Some((dim, start));
        }
    }

    // ---- in-place updates (optimizers) -------------------------------

    /// Replaces this tensor's data with `value`'s (same shape), keeping its
    /// identity: the way optimizers update parameters, like `p.copy_(v)` under
    /// `no_grad`. No data is copied; the old buffer returns to the pool.
    ///
    /// # Panics
    /// When shapes or devices differ, or `value` is not F32.
    pub fn assign(&self, value: &Tensor) {
        assert_eq!(self.shape(), value.shape(), "assign: shape {:?} vs value shape {:?}", self.shape(), value.shape());
        self.expect_same_device("assign", value);
        value.expect_dtype("assign", self.dtype());
        let (b, l) = value.buffer_and_layout();
        let mut data = self.inner.data.write().unwrap();
        (data.0, data.1) = (Some(b), l);
    }
}

fn check_len(op: &'static str, len: usize, shape: &[usize]) -> Result<()> {
    let n: usize = shape.iter().product();
    if len != n {
        return Err(wgrad_gpu_core::Error::invalid(
            op,
            format!("{len} values do not fill shape {shape:?} ({n} elements)"),
        ));
    }
    Ok(())
}

/// The first `numel` elements of `dtype` in `bytes`, as f32 (F16 widened, U32 converted).
pub(crate) fn floats_from_bytes(dtype: DType, numel: usize, bytes: Vec<u8>) -> Vec<f32> {
    let bytes = &bytes[..(numel * dtype.size()).min(bytes.len())];
    match dtype {
        DType::F32 => bytemuck_f32(bytes),
        DType::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        DType::U32 => bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
    }
}

fn bytemuck_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

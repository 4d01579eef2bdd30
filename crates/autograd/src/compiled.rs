//! Compiled steps: a training step recorded once and then replayed without
//! running its Rust code (the autograd graph, the ops' checks, the
//! recorder), as CUDA graphs and `torch.compile(mode="reduce-overhead")`
//! do for PyTorch.
//!
//! Replay of batches (gpu-core's `gpu/replay.rs`, on by default) already
//! skips the recorder's decisions; what it leaves is the host cost of
//! building the graph and running the ops' logic every step. A
//! [`CompiledStep`] removes that too, for the part of a step that is the
//! same every time: forward, loss and backward (the optimizer may run
//! eagerly after it, its scalars change every step).
//!
//! How it works, as for CUDA graphs:
//! - *Static inputs.* The step reads copies of its inputs that the
//!   compiled step owns; each call copies the new inputs into them (one
//!   device copy per input), so a replay reads the new batch.
//! - *Two recordings agree first.* The step is recorded
//!   ([`Device::record`]) on each call until two consecutive recordings are
//!   the same (commands, buffers, parameter bytes, uploads, outputs): the
//!   buffer pool settles its order after a few steps, and a step whose
//!   launches' scalars change every time (an optimizer's step count
//!   recorded inside the step instead of by its host half) is never the
//!   same, so it is never replayed: after [`MAX_RECORDINGS`] the compiled
//!   step runs eagerly and says why ([`why_not`](CompiledStep::why_not)).
//!   A step that reads data back (`item`) is not recordable at all.
//! - *Random draws.* Dropout masks (and `Generator` draws) from the
//!   generators given to [`run_with_streams`](CompiledStep::run_with_streams)
//!   read their seed and offset from a device table that each replay
//!   rewrites from the generators' positions, which it then advances as the
//!   step would have (`compiled_random.rs`); a draw from any other generator
//!   makes the step run eagerly.
//! - *Static outputs.* A replay writes the same buffers as the recording:
//!   the tensors returned are the same every call (their values new), and
//!   so are the parameters' gradients, which each replay attaches again
//!   (the optimizer after it finds them, `zero_grad` may forget them).
//! - *Invalidation.* New input shapes or dtypes, or another `key` (what the
//!   caller knows changes the step: a loss scale, train/eval mode) record
//!   afresh, kept beside the others ([`MAX_SIGNATURES`] graphs, least
//!   recently used dropped: an epoch's last, smaller batch does not evict
//!   the full batches' graph); a replay that finds a buffer the step reads
//!   freed (a parameter replaced) records afresh too. Anything else the step's code would do
//!   differently is the caller's to put in `key` or to [`reset`](CompiledStep::reset).
//!
//! The CPU backend has no recorder: there the compiled step calls the step
//! every time (bit-identical by construction), as it does with replay off
//! (`WGRAD_REPLAY=0`, `Device::set_replay(false)`) and while the profiler
//! runs (so that it sees and times every launch).

use std::sync::Mutex;

use crate::compiled_random::{self, Draws, Table};
use crate::{DType, Device, Generator, Result, Tensor};
use wgrad_gpu_core::{Recording, StepGraph};

/// Recordings compared before a compiled step gives up and runs eagerly.
pub const MAX_RECORDINGS: usize = 12;

/// A step recorded once and replayed: see the module doc. Typical use:
///
/// ```no_run
/// # use wgrad_autograd::{CompiledStep, Tensor};
/// # fn model(x: &Tensor) -> Tensor { x.clone() }
/// # let (params, batches): (Vec<Tensor>, Vec<(Tensor, Tensor)>) = (vec![], vec![]);
/// let mut compiled = CompiledStep::new(params.clone());
/// for (x, y) in batches {
///     // optimizer.prepare_step() here (wgrad-nn: the optimizer's host half)
///     let out = compiled.run(0, &[&x, &y], |inputs| {
///         let loss = (model(&inputs[0]) - &inputs[1]).square().mean_all();
///         loss.backward();
///         // optimizer.apply_step() here: its updates are recorded too
///         vec![loss]
///     }).unwrap();
///     // optimizer.zero_grad(); out[0] is this step's loss
/// #   let _ = out;
/// }
/// ```
pub struct CompiledStep {
    params: Vec<Tensor>,
    /// Per signature (input shapes and dtypes, key) its static inputs and
    /// graph, the most recently used last; at most [`MAX_SIGNATURES`].
    entries: Vec<Entry>,
    replays: u64,
    /// The counters of the step's random draws (`compiled_random.rs`).
    table: Table,
}

/// Signatures a compiled step keeps graphs for (a training loop's full
/// batches and its last, smaller one; a train and an eval step).
pub const MAX_SIGNATURES: usize = 4;

/// What a compiled step keeps for one signature.
struct Entry {
    signature: Signature,
    statics: Vec<Tensor>,
    last: Option<(Recording, Draws)>,
    graph: Option<Captured>,
    recordings: usize,
    why_not: Option<String>,
    gave_up: bool,
}

/// A pinned step graph, the outputs it writes and the gradients it leaves.
struct Captured {
    graph: StepGraph,
    draws: Draws,
    outputs: Vec<Handed>,
    grads: Vec<Option<Handed>>,
}

/// A buffer the graph writes and the tensor over it that replays hand out.
/// A handle's data can be rebound (`Tensor::assign`: gradient clipping
/// scales the gradients that way), and a rebound handle no longer shows
/// what the next replay writes: then the next replay hands out a fresh
/// tensor. Otherwise the same one, which saves making and freeing a
/// tensor per gradient and step.
struct Handed {
    parts: Parts,
    tensor: Tensor,
}

impl Handed {
    fn of(t: &Tensor) -> Handed {
        let parts = Parts::of(t);
        Handed { tensor: parts.tensor(), parts }
    }

    /// The tensor over the buffer, as it is now.
    fn hand_out(&mut self) -> Tensor {
        let Parts(buffer, layout, _) = &self.parts;
        if !self.tensor.is_view(buffer, layout) {
            self.tensor = self.parts.tensor();
        }
        self.tensor.clone()
    }
}

/// A tensor's buffer, layout and dtype.
#[derive(Clone)]
struct Parts(wgrad_gpu_core::Buffer, wgrad_gpu_core::Layout, DType);

impl Parts {
    fn of(t: &Tensor) -> Parts {
        let (b, l) = t.buffer_and_layout();
        Parts(b, l, t.dtype())
    }

    fn tensor(&self) -> Tensor {
        Tensor::from_parts(self.0.clone(), self.1.clone(), self.2)
    }
}

/// What a recording was made for.
#[derive(Clone, PartialEq)]
struct Signature {
    inputs: Vec<(wgrad_gpu_core::Dims, DType)>,
    key: u64,
}

impl CompiledStep {
    /// A compiled step whose backward fills the gradients of `params` (the
    /// gradients a replay attaches again).
    pub fn new(params: Vec<Tensor>) -> Self {
        CompiledStep { params, entries: Vec::new(), replays: 0, table: Table::default() }
    }

    /// Runs the step on `inputs`: replays its graph when one is captured
    /// for these input shapes and `key`, else calls `step` on static copies
    /// of the inputs (recording it, on a GPU with replay on). Returns the
    /// step's outputs, which a replay rewrites in place (read them before
    /// the next call, or copy them).
    ///
    /// `step` must do device work only, the same work every call (no
    /// readback, no host decisions on data), and leave the gradients of
    /// the parameters it was built with as the optimizer will read them.
    ///
    /// # Errors
    /// Device errors of the input copies or a replay.
    pub fn run(
        &mut self,
        key: u64,
        inputs: &[&Tensor],
        step: impl FnOnce(&[Tensor]) -> Vec<Tensor>,
    ) -> Result<Vec<Tensor>> {
        self.run_with_streams(key, inputs, &[], step)
    }

    /// [`run`](Self::run) for a step that draws random numbers (dropout)
    /// from `streams`, the generators it owns (in the same order every
    /// call; wgrad-nn's `random_streams(&model)` lists a model's): their
    /// draws are replayed with the counters running the step would have
    /// used, and each replay advances them as the step would have. A draw
    /// from a generator not in `streams` makes the step run eagerly
    /// ([`why_not`](Self::why_not) says so).
    ///
    /// # Errors
    /// Device errors of the input copies or a replay.
    pub fn run_with_streams(
        &mut self,
        key: u64,
        inputs: &[&Tensor],
        streams: &[&Mutex<Generator>],
        step: impl FnOnce(&[Tensor]) -> Vec<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let Some(device) = inputs.first().map(|t| t.device()).or_else(|| self.params.first().map(|p| p.device()))
        else {
            return Ok(step(&[]));
        };
        // Under the profiler each launch must be recorded (and timed).
        if !device.is_gpu() || !device.replay() || wgrad_gpu_core::profile::is_active(&device) {
            let owned: Vec<Tensor> = inputs.iter().map(|t| (*t).clone()).collect();
            return Ok(step(&owned));
        }
        let signature = Signature { inputs: inputs.iter().map(|t| (t.shape(), t.dtype())).collect(), key };
        let entry = match self.entries.iter().position(|e| e.signature == signature) {
            Some(i) => {
                let e = self.entries.remove(i);
                for (input, s) in inputs.iter().zip(&e.statics) {
                    let (src, sl) = input.buffer_and_layout();
                    let (dst, dl) = s.buffer_and_layout();
                    wgrad_gpu_core::ops::copy::copy_into(&src, &sl, &dst, &dl)?;
                }
                e
            }
            None => {
                if self.entries.len() >= MAX_SIGNATURES {
                    self.entries.remove(0);
                }
                Entry::new(signature, inputs)?
            }
        };
        self.entries.push(entry);
        let e = self.entries.last_mut().expect("pushed above");
        if e.gave_up {
            return Ok(step(&e.statics));
        }
        if let Some(c) = &mut e.graph {
            // A refused replay leaves the generators where they were: the
            // step then runs (and draws) as it comes.
            let replayed = c
                .draws
                .prepare_replay(&self.table, streams)
                .and_then(|undo| c.graph.replay().inspect_err(|_| c.draws.undo(streams, &undo)));
            match replayed {
                Ok(()) => {
                    for (p, g) in self.params.iter().zip(&mut c.grads) {
                        p.set_grad(g.as_mut().map(Handed::hand_out));
                    }
                    self.replays += 1;
                    return Ok(c.outputs.iter_mut().map(Handed::hand_out).collect());
                }
                Err(err) => {
                    e.why_not = Some(err.to_string());
                    e.graph = None;
                    e.recordings = 0;
                }
            }
        }
        e.record(&device, &self.params, (&mut self.table, streams), step)
    }

    /// Forgets every graph and static input: the next call records afresh
    /// (call it after replacing parameters or changing what the step does).
    pub fn reset(&mut self) {
        self.entries.clear();
    }

    /// Whether the next call with the last call's input shapes and key
    /// replays a graph.
    pub fn is_captured(&self) -> bool {
        self.entries.last().is_some_and(|e| e.graph.is_some())
    }

    /// Calls that replayed a graph instead of running the step.
    pub fn replays(&self) -> u64 {
        self.replays
    }

    /// Launches one replay of the last call's graph encodes (0 before it is captured).
    pub fn launches(&self) -> usize {
        self.entries.last().and_then(|e| e.graph.as_ref()).map_or(0, |c| c.graph.launches())
    }

    /// Why the last call's step is not (yet) replayed: the last difference
    /// between two recordings, why it is not recordable, or why the last
    /// replay was refused.
    pub fn why_not(&self) -> Option<&str> {
        self.entries.last().and_then(|e| e.why_not.as_deref())
    }
}

impl Entry {
    /// A new signature's entry: static copies of `inputs`.
    fn new(signature: Signature, inputs: &[&Tensor]) -> Result<Entry> {
        let f16 = inputs.iter().find(|t| t.dtype() == DType::F16);
        Ok(Entry {
            signature,
            statics: inputs.iter().map(|t| t.try_deep_copy()).collect::<Result<_>>()?,
            last: None,
            graph: None,
            recordings: 0,
            why_not: f16.map(|t| format!("an f16 input of shape {:?} (inputs are copied as 32-bit words)", t.shape())),
            gave_up: f16.is_some(),
        })
    }

    /// Calls `step` on the static inputs while recording it; keeps the
    /// recording as the graph when it is the same as the last one.
    fn record(
        &mut self,
        device: &Device,
        params: &[Tensor],
        (table, streams): (&mut Table, &[&Mutex<Generator>]),
        step: impl FnOnce(&[Tensor]) -> Vec<Tensor>,
    ) -> Result<Vec<Tensor>> {
        let statics = &self.statics;
        let ((outputs, recording), draws) =
            compiled_random::recording(table, device, streams, || device.record(|| step(statics)))?;
        let (mut rec, draws) = match recording.and_then(|r| draws.map(|d| (r, d))) {
            Ok(r) => r,
            Err(why) => {
                self.why_not = Some(why);
                self.gave_up = true;
                return Ok(outputs);
            }
        };
        let grads: Vec<Option<Tensor>> = params.iter().map(|p| p.grad()).collect();
        let marked: Vec<wgrad_gpu_core::Buffer> =
            outputs.iter().chain(grads.iter().flatten()).map(|t| t.buffer_and_layout().0).collect();
        rec.mark_outputs(&marked.iter().collect::<Vec<_>>());
        self.recordings += 1;
        match self.last.take() {
            Some((earlier, earlier_draws)) => {
                match rec.differs_from(&earlier).or_else(|| draws.differs_from(&earlier_draws)) {
                    None => {
                        self.why_not = None;
                        let (outputs, grads) = (
                            outputs.iter().map(Handed::of).collect(),
                            grads.iter().map(|g| g.as_ref().map(Handed::of)).collect(),
                        );
                        self.graph = Some(Captured { graph: rec.into_graph(), draws, outputs, grads });
                    }
                    Some(why) => {
                        self.why_not = Some(format!("two recordings of the step differ: {why}"));
                        if self.recordings >= MAX_RECORDINGS {
                            self.gave_up = true;
                        } else {
                            self.last = Some((rec, draws));
                        }
                    }
                }
            }
            None => self.last = Some((rec, draws)),
        }
        Ok(outputs)
    }
}

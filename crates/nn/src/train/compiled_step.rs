//! The [`Trainer`](super::Trainer)'s compiled step ([`Trainer::compiled`](super::Trainer::compiled)):
//! a batch is turned into input tensors outside the step, and forward,
//! backward and the optimizer's updates are recorded once and replayed by
//! a [`CompiledStep`] (see `wgrad_autograd`'s `compiled.rs`).
//!
//! Inside the graph: the forward closure, the backward, and the optimizer's
//! updates ([`Optimizer::apply_step`]; its host half,
//! [`Optimizer::prepare_step`], runs before each replay). With a
//! `GradScaler` (AMP) whose scale lives on the device, its unscaling, the
//! optimizer's updates gated by its overflow flag, and its scale update are
//! in the graph too. With a scaler whose scale lives on the host, or with
//! gradient clipping, the optimizer runs after the graph instead (that
//! scaler reads its overflow flag back, clipping scales the gradients
//! first); the host scale is then part of the graph's key, so a new scale
//! records afresh. Gradient accumulation runs the two closures eagerly
//! (each micro-batch's graph would differ).

use std::collections::HashMap;

use wgrad_autograd::{AutocastGuard, CompiledStep, Tensor};

use super::trainer::StepOutput;
use crate::amp::GradScaler;
use crate::module::{random_streams, ModuleExt};
use crate::optim::Optimizer;

pub(crate) type InputsFn<'a, B> = Box<dyn FnMut(B) -> Vec<Tensor> + 'a>;
pub(crate) type ForwardFn<'a, M> = Box<dyn Fn(&M, &[Tensor]) -> StepOutput + 'a>;

/// The two halves of a compiled Trainer step and its graph.
pub(crate) struct Compiled<'a, M: ?Sized, B> {
    inputs: InputsFn<'a, B>,
    forward: ForwardFn<'a, M>,
    graph: CompiledStep,
    /// Per input shapes (a graph's signature, less its key), what `forward`
    /// returned besides tensors when it last ran: its samples and whether
    /// it counted accuracy (a replay does not run it). An epoch's last,
    /// smaller batch has other shapes and other samples.
    meta: HashMap<Vec<Vec<usize>>, (usize, bool)>,
}

impl<'a, M: ModuleExt + ?Sized, B> Compiled<'a, M, B> {
    pub fn new(inputs: InputsFn<'a, B>, forward: ForwardFn<'a, M>, params: Vec<Tensor>) -> Self {
        Compiled { inputs, forward, graph: CompiledStep::new(params), meta: HashMap::new() }
    }

    /// The eager forward of one (micro-)batch: both closures, no graph.
    pub fn forward_eager(&mut self, model: &M, batch: B) -> StepOutput {
        let inputs = (self.inputs)(batch);
        (self.forward)(model, &inputs)
    }

    /// Forward and backward of `batch`, and the optimizer's updates when
    /// `update` (AMP and clipping need them after the graph): replayed when
    /// the graph is captured, else run (and recorded). Returns the step's
    /// output and whether the optimizer was updated.
    ///
    /// # Panics
    /// On a device error of the input copies or the replay (the Trainer
    /// reports it as the step's device error).
    pub fn step(
        &mut self,
        model: &M,
        batch: B,
        (opt, scaler): (&mut dyn Optimizer, &mut GradScaler),
        autocast: bool,
        update: bool,
    ) -> (StepOutput, bool) {
        let inputs = (self.inputs)(batch);
        let refs: Vec<&Tensor> = inputs.iter().collect();
        if update {
            opt.prepare_step();
        }
        let key = scaler.replay_key();
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|t| t.shape().to_vec()).collect();
        let (forward, meta) = (&self.forward, &mut self.meta);
        // The model's dropout draws are replayed from its generators.
        let streams = random_streams(model.as_dyn());
        let outs = self.graph.run_with_streams(key, &refs, &streams, |x| {
            let out = {
                let _autocast = AutocastGuard::new(autocast);
                forward(model, x)
            };
            meta.insert(shapes.clone(), (out.samples, out.accuracy.is_some()));
            scaler.scale(&out.loss).backward();
            if update {
                // A disabled scaler passes through to `apply_step`.
                scaler.apply_step_async(opt);
                scaler.update();
            }
            let mut v = vec![out.loss];
            if let Some((logits, labels)) = out.accuracy {
                v.extend([logits, labels]);
            }
            v
        });
        let outs = outs.unwrap_or_else(|e| panic!("compiled step: {e}"));
        let (samples, accuracy) = self.meta[&shapes];
        let accuracy = accuracy.then(|| (outs[1].clone(), outs[2].clone()));
        (StepOutput { loss: outs[0].clone(), samples, accuracy }, update)
    }
}

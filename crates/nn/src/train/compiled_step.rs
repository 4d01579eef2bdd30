//! The [`Trainer`](super::Trainer)'s compiled step ([`Trainer::compiled`](super::Trainer::compiled)):
//! a batch is turned into input tensors outside the step, and forward,
//! backward and the optimizer's updates are recorded once and replayed by
//! a [`CompiledStep`] (see `wgrad_autograd`'s `compiled.rs`).
//!
//! Inside the graph: the forward closure, the backward, and the optimizer's
//! updates ([`Optimizer::apply_step`]; its host half,
//! [`Optimizer::prepare_step`], runs before each replay). With a
//! `GradScaler` (AMP) or gradient clipping the optimizer runs after the
//! graph instead (the scaler reads its overflow flag back, clipping scales
//! the gradients first); the loss scale is then part of the graph's key,
//! so a new scale records afresh. Gradient accumulation runs the two
//! closures eagerly (each micro-batch's graph would differ).

use wgrad_autograd::{AutocastGuard, CompiledStep, Tensor};

use super::trainer::StepOutput;
use crate::amp::GradScaler;
use crate::optim::{clip_grad_norm_, Optimizer};

pub(crate) type InputsFn<'a, B> = Box<dyn FnMut(B) -> Vec<Tensor> + 'a>;
pub(crate) type ForwardFn<'a, M> = Box<dyn Fn(&M, &[Tensor]) -> StepOutput + 'a>;

/// The two halves of a compiled Trainer step and its graph.
pub(crate) struct Compiled<'a, M: ?Sized, B> {
    pub inputs: InputsFn<'a, B>,
    pub forward: ForwardFn<'a, M>,
    pub graph: CompiledStep,
    /// What the last recorded run of `forward` returned besides tensors.
    samples: usize,
    accuracy: bool,
}

/// The Trainer's options a step follows.
pub(crate) struct StepOptions<'s> {
    pub autocast: bool,
    pub clip: Option<f32>,
    pub params: &'s [Tensor],
}

impl<'a, M: ?Sized, B> Compiled<'a, M, B> {
    pub fn new(inputs: InputsFn<'a, B>, forward: ForwardFn<'a, M>, params: Vec<Tensor>) -> Self {
        Compiled { inputs, forward, graph: CompiledStep::new(params), samples: 0, accuracy: false }
    }

    /// The eager forward of one (micro-)batch: both closures, no graph.
    pub fn forward_eager(&mut self, model: &M, batch: B) -> StepOutput {
        let inputs = (self.inputs)(batch);
        (self.forward)(model, &inputs)
    }

    /// One whole optimizer step on `batch`: replayed when the graph is
    /// captured, else run (and recorded); the gradients are cleared after.
    ///
    /// # Panics
    /// On a device error of the input copies or the replay (the Trainer
    /// reports it as the step's device error).
    pub fn step(
        &mut self,
        model: &M,
        batch: B,
        opt: &mut dyn Optimizer,
        scaler: &mut GradScaler,
        o: StepOptions,
    ) -> StepOutput {
        let inputs = (self.inputs)(batch);
        let refs: Vec<&Tensor> = inputs.iter().collect();
        let inside = !scaler.is_enabled() && o.clip.is_none();
        if inside {
            opt.prepare_step();
        }
        let key = u64::from(scaler.get_scale().to_bits());
        let (forward, samples, accuracy) = (&self.forward, &mut self.samples, &mut self.accuracy);
        let outs = self.graph.run(key, &refs, |x| {
            let out = {
                let _autocast = AutocastGuard::new(o.autocast);
                forward(model, x)
            };
            *samples = out.samples;
            scaler.scale(&out.loss).backward();
            if inside {
                opt.apply_step();
            }
            let mut v = vec![out.loss];
            *accuracy = out.accuracy.is_some();
            if let Some((logits, labels)) = out.accuracy {
                v.extend([logits, labels]);
            }
            v
        });
        let outs = outs.unwrap_or_else(|e| panic!("compiled step: {e}"));
        if !inside {
            if let Some(max_norm) = o.clip {
                scaler.unscale_(opt);
                clip_grad_norm_(o.params, max_norm);
            }
            scaler.step(opt);
            scaler.update();
        }
        opt.zero_grad();
        let accuracy = self.accuracy.then(|| (outs[1].clone(), outs[2].clone()));
        StepOutput { loss: outs[0].clone(), samples: self.samples, accuracy }
    }
}

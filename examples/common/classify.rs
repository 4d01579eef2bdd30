//! The training step of the image classifiers (mnist, cifar10_resnet): a
//! batch's images (through `prepare`, e.g. augmentation) and labels become
//! the step's inputs, and the cross-entropy of the model's logits is its
//! loss. With `--compile` forward, backward and the optimizer's updates are
//! recorded once and replayed (`Trainer::compiled`); without, the two
//! halves run as one closure (`Trainer::new`). Included with `#[path]`.

use wgrad::data::Batch;
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::Optimizer;
use wgrad::nn::train::{StepOutput, Trainer};
use wgrad::nn::Module;
use wgrad::Tensor;

/// The Trainer of `model` with `opt` on image batches, compiled or not.
pub fn trainer<'a, M: Module>(
    model: &'a mut M,
    opt: &'a mut dyn Optimizer,
    compile: bool,
    loss_fn: &'a CrossEntropyLoss,
    prepare: impl Fn(&Tensor) -> Tensor + 'a,
) -> Trainer<'a, M, Batch> {
    let inputs = move |b: Batch| vec![prepare(&b.images), b.labels];
    let forward = move |m: &M, t: &[Tensor]| {
        let logits = m.forward(&t[0]);
        let loss = loss_fn.forward(&logits, &t[1]);
        StepOutput::new(loss, t[1].numel()).with_accuracy(&logits, &t[1])
    };
    if compile {
        Trainer::compiled(model, opt, inputs, forward)
    } else {
        Trainer::new(model, opt, move |m: &M, b: Batch| forward(m, &inputs(b)))
    }
}

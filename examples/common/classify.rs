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

/// What both classifiers give [`fit`] besides their own Trainer options.
pub struct FitWith<'a> {
    pub train: &'a wgrad::data::DataLoader,
    pub test: &'a wgrad::data::DataLoader,
    pub loss_fn: &'a CrossEntropyLoss,
    pub run: wgrad::nn::train::RunDir,
    pub resume: bool,
    pub stop: &'a std::sync::atomic::AtomicBool,
    pub progress: wgrad::nn::train::Progress,
    pub batch_size: usize,
}

/// Evaluation on the test loader, the run folder (resumable), Ctrl-C, the
/// progress display and `around` each step, then `fit` over the training
/// loader (an out-of-memory error names `--batch-size`).
pub fn fit<'a, M: Module>(
    trainer: Trainer<'a, M, Batch>,
    w: FitWith<'a>,
    around: impl FnMut(&mut dyn FnMut()) + 'a,
) -> anyhow::Result<wgrad::nn::train::Fit> {
    let (test, loss_fn, train) = (w.test, w.loss_fn, w.train);
    trainer
        .evaluate(move |m| {
            let batches = test.epoch(0).map(|b| b.map(|b| (b.images, b.labels, b.len)));
            let (loss, acc) = wgrad::nn::train::evaluate(m, batches, |logits, y| loss_fn.forward(logits, y))?;
            Ok(wgrad::nn::train::Evaluation { loss, accuracy: Some(acc) })
        })
        .run_dir(w.run)
        .resume(w.resume)
        .stop_flag(w.stop)
        .progress(w.progress)
        .samples_per_epoch(train.dataset().len())
        .around_step(around)
        .fit(train.num_batches(), |epoch, skip| train.epoch_from(epoch, skip))
        .map_err(|e| super::control::fit_error(e, &[("--batch-size", w.batch_size)]))
}

//! End to end on the bundled MNIST-10k: the pipeline the `mnist` example runs
//! (loader → CNN → cross-entropy → Adam), one epoch on 2,000 digits, must
//! reach more than 85% test accuracy (PyTorch reaches ~90% in this setting).

use std::sync::Arc;

use wgrad::data::mnist::{self, Split};
use wgrad::data::DataLoader;
use wgrad::models::mnist_cnn;
use wgrad::nn::loss::CrossEntropyLoss;
use wgrad::nn::optim::{Adam, Optimizer};
use wgrad::nn::train::Accuracy;
use wgrad::prelude::*;

#[test]
fn one_epoch_on_2000_bundled_digits_learns() {
    let dev = match wgrad::gpu_core::testing::gpu_or_skip("one_epoch_on_2000_bundled_digits_learns") {
        Some(g) => g,
        None => Device::cpu(),
    };
    let mut train = mnist::load(&mnist::bundled_dir(), Split::Train).unwrap();
    train.truncate(2000);
    let test = mnist::load(&mnist::bundled_dir(), Split::Test).unwrap();
    let norm = |l: DataLoader| l.normalize(&[0.1307], &[0.3081]);
    let train_loader = norm(DataLoader::new(Arc::new(train), 32, &dev).seed(0));
    let test_loader = norm(DataLoader::new(Arc::new(test), 500, &dev).shuffle(false));
    let mut model = mnist_cnn(&mut Init::new(&dev, 0));
    let mut opt = Adam::new(model.parameters(), 1e-3);
    model.train();
    for batch in train_loader.epoch(0) {
        let b = batch.unwrap();
        let loss = CrossEntropyLoss::default().forward(&model.forward(&b.images), &b.labels);
        opt.zero_grad();
        loss.backward();
        opt.step();
        dev.flush().unwrap();
    }
    model.eval();
    let mut acc = Accuracy::new();
    no_grad(|| {
        for batch in test_loader.epoch(0) {
            let b = batch.unwrap();
            acc.update(&model.forward(&b.images), &b.labels);
        }
    });
    assert!(acc.value() > 0.85, "test accuracy after one epoch on 2,000 digits: {:.2}%", 100.0 * acc.value());
}

//! The textbooks' MNIST CNN.

use wgrad_nn::{Conv2d, Flatten, Init, Linear, MaxPool2d, ReLU, Sequential};

/// Conv 32@3x3, ReLU, MaxPool 2, Conv 64@3x3, ReLU, MaxPool 2, Flatten,
/// Linear 1600→10: exactly 34,826 parameters, for `[N, 1, 28, 28]` input.
/// Parameter names equal `nn.Sequential` of the same layers in PyTorch
/// (`0.weight`, `0.bias`, `3.weight`, `3.bias`, `7.weight`, `7.bias`).
pub fn mnist_cnn(init: &mut Init) -> Sequential {
    Sequential::new()
        .add(Conv2d::builder(1, 32, 3).build(init))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::builder(32, 64, 3).build(init))
        .add(ReLU)
        .add(MaxPool2d::new(2))
        .add(Flatten::default())
        .add(Linear::builder(64 * 5 * 5, 10).build(init))
}

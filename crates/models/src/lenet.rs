//! LeNet-5.

use wgrad_nn::{AvgPool2d, Conv2d, Flatten, Init, Linear, Sequential, Tanh};

/// LeNet-5 (LeCun et al. 1998) for `[N, 1, 28, 28]` input: the first
/// convolution pads by 2 to recover the original 32x32 geometry; tanh
/// activations and average pooling as in the paper (the full C3 connection
/// table is used, as modern re-implementations do). 61,706 parameters.
pub fn lenet5(init: &mut Init) -> Sequential {
    Sequential::new()
        .add(Conv2d::builder(1, 6, 5).padding(2).build(init))
        .add(Tanh)
        .add(AvgPool2d::new(2))
        .add(Conv2d::builder(6, 16, 5).build(init))
        .add(Tanh)
        .add(AvgPool2d::new(2))
        .add(Flatten::default())
        .add(Linear::builder(16 * 5 * 5, 120).build(init))
        .add(Tanh)
        .add(Linear::builder(120, 84).build(init))
        .add(Tanh)
        .add(Linear::builder(84, 10).build(init))
}

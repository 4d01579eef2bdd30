//! LeNet-5.

use wgrad_autograd::{Device, Generator};
use wgrad_nn::{AvgPool2d, Conv2d, Conv2dOptions, Flatten, Linear, Sequential, Tanh};

/// LeNet-5 (LeCun et al. 1998) for `[N, 1, 28, 28]` input: the first
/// convolution pads by 2 to recover the original 32x32 geometry; tanh
/// activations and average pooling as in the paper (the full C3 connection
/// table is used, as modern re-implementations do). 61,706 parameters.
pub fn lenet5(gen: &mut Generator, device: &Device) -> Sequential {
    Sequential::new()
        .add(Conv2d::new(1, 6, 5, Conv2dOptions::new().padding(2), true, gen, device))
        .add(Tanh)
        .add(AvgPool2d::new(2))
        .add(Conv2d::new(6, 16, 5, Conv2dOptions::new(), true, gen, device))
        .add(Tanh)
        .add(AvgPool2d::new(2))
        .add(Flatten::default())
        .add(Linear::new(16 * 5 * 5, 120, true, gen, device))
        .add(Tanh)
        .add(Linear::new(120, 84, true, gen, device))
        .add(Tanh)
        .add(Linear::new(84, 10, true, gen, device))
}

//! Parameter counts, names and output shapes of the zoo.

use wgrad_autograd::{Device, Generator, Tensor};
use wgrad_models::*;
use wgrad_nn::{Module, ModuleExt};

#[test]
fn the_textbook_mnist_cnn_has_34826_parameters() {
    let dev = Device::cpu();
    let m = mnist_cnn(&mut Generator::new(0), &dev);
    assert_eq!(m.num_parameters(), 34_826);
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"]);
    assert_eq!(m.forward(&Tensor::zeros(&[2, 1, 28, 28], &dev)).shape(), vec![2, 10]);
}

#[test]
fn lenet5_and_mlp_shapes_and_counts() {
    let dev = Device::cpu();
    let l = lenet5(&mut Generator::new(0), &dev);
    assert_eq!(l.num_parameters(), 61_706);
    assert_eq!(l.forward(&Tensor::zeros(&[3, 1, 28, 28], &dev)).shape(), vec![3, 10]);
    let m = mlp(&[784, 128, 64, 10], &mut Generator::new(0), &dev);
    assert_eq!(m.num_parameters(), 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
    assert_eq!(m.forward(&Tensor::zeros(&[5, 1, 28, 28], &dev)).shape(), vec![5, 10]);
}

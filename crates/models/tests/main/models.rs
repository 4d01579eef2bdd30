//! Parameter counts, names and output shapes of the zoo.

use wgrad_autograd::{Device, Tensor};
use wgrad_models::*;
use wgrad_nn::{Module, ModuleExt};

#[test]
fn the_textbook_mnist_cnn_has_34826_parameters() {
    let dev = Device::cpu();
    let m = mnist_cnn(&mut Init::new(&dev, 0));
    assert_eq!(m.num_parameters(), 34_826);
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"]);
    assert_eq!(m.forward(&Tensor::zeros(&[2, 1, 28, 28], &dev)).shape(), vec![2, 10]);
}

#[test]
fn lenet5_and_mlp_shapes_and_counts() {
    let dev = Device::cpu();
    let l = lenet5(&mut Init::new(&dev, 0));
    assert_eq!(l.num_parameters(), 61_706);
    assert_eq!(l.forward(&Tensor::zeros(&[3, 1, 28, 28], &dev)).shape(), vec![3, 10]);
    let m = mlp(&[784, 128, 64, 10], &mut Init::new(&dev, 0));
    assert_eq!(m.num_parameters(), 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10);
    assert_eq!(m.forward(&Tensor::zeros(&[5, 1, 28, 28], &dev)).shape(), vec![5, 10]);
}

#[test]
fn resnets_have_the_reference_parameter_counts() {
    let dev = Device::cpu();
    let mut init = Init::new(&dev, 0);
    // The CIFAR ResNets of He et al. (option A): 0.27M, 0.46M, 0.85M, 1.7M.
    for (depth, count) in [(20, 269_722), (32, 464_154), (56, 853_018)] {
        let m = ResNet::cifar(depth, 10, Shortcut::ZeroPad, &mut init);
        assert_eq!(m.num_parameters(), count, "ResNet-{depth}");
    }
    let b = ResNet::cifar(20, 10, Shortcut::Projection, &mut init);
    assert!(b.named_parameters().iter().any(|(n, _)| n == "layer2.0.shortcut.0.weight"));
    // torchvision's counts (1000 classes).
    assert_eq!(ResNet::imagenet(18, 1000, &mut init).num_parameters(), 11_689_512);
    let r50 = ResNet::imagenet(50, 1000, &mut init);
    assert_eq!(r50.num_parameters(), 25_557_032);
    assert!(r50.named_parameters().iter().any(|(n, _)| n == "layer1.0.downsample.1.weight"));
    let out = ResNet::cifar(20, 10, Shortcut::ZeroPad, &mut init).forward(&Tensor::zeros(&[1, 3, 32, 32], &dev));
    assert_eq!(out.shape(), vec![1, 10]);
}

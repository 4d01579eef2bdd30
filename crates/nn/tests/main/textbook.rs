//! Worked examples from the textbooks, as unit tests on every backend.

use wgrad_autograd::Tensor;
use wgrad_gpu_core::testing::{assert_close, backends};
use wgrad_nn::loss::{BCELoss, HuberLoss, L1Loss, MSELoss};
use wgrad_nn::{MaxPool2d, Module, Softmax};

#[test]
fn max_pool_of_the_4x4_example() {
    for dev in backends("max_pool_of_the_4x4_example") {
        #[rustfmt::skip]
        let x = Tensor::from_vec(&[
            1.0, 1.0, 2.0, 4.0,
            5.0, 6.0, 7.0, 8.0,
            3.0, 2.0, 1.0, 0.0,
            1.0, 2.0, 3.0, 4.0,
        ], &[1, 1, 4, 4], &dev);
        assert_eq!(MaxPool2d::new(2).forward(&x).to_vec(), vec![6.0, 8.0, 3.0, 4.0]);
    }
}

#[test]
fn softmax_of_2_1_01() {
    for dev in backends("softmax_of_2_1_01") {
        let p = Softmax(0).forward(&Tensor::from_vec(&[2.0, 1.0, 0.1], &[3], &dev));
        assert_close("softmax", &p.to_vec(), &[0.659001, 0.242433, 0.098566], 0.0, 1e-6);
    }
}

#[test]
fn regression_losses_of_the_worked_example() {
    for dev in backends("regression_losses_of_the_worked_example") {
        let y = Tensor::from_vec(&[3.0, -0.5, 2.0, 7.0], &[4], &dev);
        let y_hat = Tensor::from_vec(&[2.5, 0.0, 2.0, 8.0], &[4], &dev);
        assert_eq!(MSELoss::default().forward(&y_hat, &y).item(), 0.375);
        assert_eq!(L1Loss::default().forward(&y_hat, &y).item(), 0.5);
        assert_eq!(HuberLoss::default().forward(&y_hat, &y).item(), 0.1875);
    }
}

#[test]
fn binary_cross_entropy_of_the_worked_example() {
    for dev in backends("binary_cross_entropy_of_the_worked_example") {
        let y = Tensor::from_vec(&[1.0, 0.0, 1.0, 0.0], &[4], &dev);
        let p = Tensor::from_vec(&[0.9, 0.1, 0.8, 0.3], &[4], &dev);
        assert_close("bce", &[BCELoss::default().forward(&p, &y).item()], &[0.197635], 0.0, 1e-6);
    }
}

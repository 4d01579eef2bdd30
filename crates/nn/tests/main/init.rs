//! Initialisation schemes: bounds, variances and orthogonality as PyTorch defines them.

use wgrad_autograd::{Device, Generator, Tensor};
use wgrad_nn::init::*;

fn stats(v: &[f32]) -> (f32, f32) {
    let n = v.len() as f32;
    let mean = v.iter().sum::<f32>() / n;
    (mean, v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n)
}

#[test]
fn gains_and_fans() {
    assert_eq!(calculate_gain(Nonlinearity::Relu), 2f32.sqrt());
    assert_eq!(calculate_gain(Nonlinearity::Tanh), 5.0 / 3.0);
    assert!((calculate_gain(Nonlinearity::LeakyRelu(5f32.sqrt())) - (1.0f32 / 3.0).sqrt()).abs() < 1e-6);
    assert_eq!(fans(&[16, 3, 5, 5]), (75, 400));
}

#[test]
fn distributions_have_the_documented_spread() {
    let dev = Device::cpu();
    let mut g = Generator::new(11);
    let t = Tensor::zeros(&[256, 128, 3], &dev);
    let (fi, fo) = (128.0 * 3.0, 256.0 * 3.0);
    type Fill<'a> = Box<dyn Fn(&mut Generator) + 'a>;
    let cases: Vec<(&str, f32, Fill)> = vec![
        ("xavier_uniform", 2.0 / (fi + fo), Box::new(|g| xavier_uniform_(&t, 1.0, g))),
        ("xavier_normal", 2.0 / (fi + fo), Box::new(|g| xavier_normal_(&t, 1.0, g))),
        ("kaiming_uniform", 2.0 / fi, Box::new(|g| kaiming_uniform_(&t, FanMode::FanIn, Nonlinearity::Relu, g))),
        ("kaiming_normal fan_out", 2.0 / fo, Box::new(|g| kaiming_normal_(&t, FanMode::FanOut, Nonlinearity::Relu, g))),
        ("normal", 0.04, Box::new(|g| normal_(&t, 0.0, 0.2, g))),
        ("uniform", 1.0 / 3.0, Box::new(|g| uniform_(&t, -1.0, 1.0, g))),
    ];
    for (name, want_var, f) in cases {
        f(&mut g);
        let (mean, var) = stats(&t.to_vec());
        assert!(mean.abs() < 0.02 * want_var.sqrt() * 10.0, "{name}: mean {mean}");
        assert!((var - want_var).abs() < 0.03 * want_var, "{name}: variance {var}, want {want_var}");
    }
    constant_(&t, 0.5);
    assert!(t.to_vec().iter().all(|&v| v == 0.5));
    zeros_(&t);
    assert_eq!(t.sum_all().item(), 0.0);
    ones_(&t);
    assert_eq!(t.mean_all().item(), 1.0);
}

#[test]
fn orthogonal_gives_orthonormal_rows_or_columns() {
    let dev = Device::cpu();
    let mut g = Generator::new(5);
    for (rows, cols) in [(6, 4), (4, 6), (5, 5)] {
        let t = Tensor::zeros(&[rows, cols], &dev);
        orthogonal_(&t, 2.0, &mut g);
        // Q Qᵀ (wide) or Qᵀ Q (tall) is gain² I.
        let gram = if rows >= cols { t.t().matmul(&t) } else { t.matmul(&t.t()) };
        let k = rows.min(cols);
        let v = gram.to_vec();
        for i in 0..k {
            for j in 0..k {
                let want = if i == j { 4.0 } else { 0.0 };
                assert!((v[i * k + j] - want).abs() < 1e-4, "{rows}x{cols} gram[{i},{j}] = {}", v[i * k + j]);
            }
        }
    }
}

//! Batch norm with its fused epilogue (residual add, ReLU): finite-difference
//! gradients of x, weight, bias and residual in training and evaluation on
//! CPU and GPU, the fused form against the unfused ops, running statistics,
//! the empty batch, the layer-norm affine path, and the launch count of a
//! training BN+ReLU step on a GPU.

use crate::common;
use common::*;
use wgrad_autograd::gradcheck::GradCheck;
use wgrad_autograd::{NormEpilogue, Tensor};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};

/// Training batch norm with affine parameters and the given epilogue.
fn train(x: &[Tensor], residual: bool, relu: bool) -> Tensor {
    let epilogue = NormEpilogue { residual: residual.then_some(&x[3]), relu };
    x[0].batch_norm_act(None, None, Some(&x[1]), Some(&x[2]), true, 0.1, 1e-5, epilogue)
}

#[test]
fn fused_batch_norm_gradients_in_training() {
    // ReLU kinks: a finite-difference step of 1e-3 keeps most outputs clear of 0.
    let opts = GradCheck { eps: 1e-3, atol: 2e-2, rtol: 2e-2 };
    for (shape, c) in
        [(&[4usize, 3, 2, 3][..], 3usize), (&[1, 1, 7, 5][..], 1), (&[6, 17][..], 17), (&[2, 2, 3][..], 2)]
    {
        for (residual, relu) in [(false, true), (true, true), (true, false)] {
            let what = format!("batch_norm_act train {shape:?} residual={residual} relu={relu}");
            gradcheck_in(&what, &[shape, &[c], &[c], shape], (-1.0, 1.0), opts, |x| train(x, residual, relu));
        }
    }
}

#[test]
fn fused_batch_norm_gradients_in_evaluation() {
    let opts = GradCheck { eps: 1e-3, atol: 2e-2, rtol: 2e-2 };
    for (residual, relu) in [(false, true), (true, true), (false, false)] {
        let what = format!("batch_norm_act eval residual={residual} relu={relu}");
        gradcheck_in(&what, &[&[2, 3, 2, 2], &[3], &[3], &[2, 3, 2, 2]], (-1.0, 1.0), opts, |x| {
            let dev = x[0].device();
            let rm = Tensor::from_vec(&[0.1, -0.2, 0.3], &[3], &dev);
            let rv = Tensor::from_vec(&[0.5, 1.5, 2.0], &[3], &dev);
            let epilogue = NormEpilogue { residual: residual.then_some(&x[3]), relu };
            x[0].batch_norm_act(Some(&rm), Some(&rv), Some(&x[1]), Some(&x[2]), false, 0.1, 1e-5, epilogue)
        });
    }
}

#[test]
fn fused_batch_norm_without_affine_gradients() {
    let opts = GradCheck { eps: 1e-3, atol: 2e-2, rtol: 2e-2 };
    gradcheck_in("batch_norm_act no affine", &[&[3, 2, 5], &[3, 2, 5]], (-1.0, 1.0), opts, |x| {
        x[0].batch_norm_act(None, None, None, None, true, 0.1, 1e-5, NormEpilogue::add_relu(&x[1]))
    });
}

/// The fused forms give the unfused ops' values and gradients.
#[test]
fn fused_matches_unfused() {
    for dev in backends("batch_norm_fused_matches_unfused") {
        for training in [true, false] {
            let leaf = |shape: &[usize], seed, lo, hi| rand(shape, seed, lo, hi, &dev).requires_grad_();
            let (x, w, b, r) = (
                leaf(&[3, 4, 5, 3], 1, -2.0, 2.0),
                leaf(&[4], 2, 0.5, 1.5),
                leaf(&[4], 3, -0.5, 0.5),
                leaf(&[3, 4, 5, 3], 4, -1.0, 1.0),
            );
            let stats = || (rand(&[4], 5, -0.5, 0.5, &dev), rand(&[4], 6, 0.5, 2.0, &dev));
            let (rm1, rv1) = stats();
            let (rm2, rv2) = stats();
            let fused = x.batch_norm_act(
                Some(&rm1),
                Some(&rv1),
                Some(&w),
                Some(&b),
                training,
                0.1,
                1e-5,
                NormEpilogue::add_relu(&r),
            );
            let plain = (x.batch_norm(Some(&rm2), Some(&rv2), Some(&w), Some(&b), training, 0.1, 1e-5) + &r).relu();
            let what = format!("fused vs unfused (training {training}) on {}", dev.name());
            assert_close(&what, &fused.to_vec(), &plain.to_vec(), 1e-5, 1e-5);
            assert_close(&what, &rm1.to_vec(), &rm2.to_vec(), 1e-6, 1e-6);
            assert_close(&what, &rv1.to_vec(), &rv2.to_vec(), 1e-6, 1e-6);
            let gy = rand(&[3, 4, 5, 3], 7, -1.0, 1.0, &dev);
            let mut grads = Vec::new();
            for y in [&fused, &plain] {
                for t in [&x, &w, &b, &r] {
                    t.zero_grad();
                }
                y.backward_with(&gy);
                grads.push([&x, &w, &b, &r].map(|t| t.grad().unwrap().to_vec()));
            }
            for (k, name) in ["x", "weight", "bias", "residual"].iter().enumerate() {
                assert_close(&format!("{what}: grad {name}"), &grads[0][k], &grads[1][k], 1e-4, 1e-5);
            }
        }
    }
}

#[test]
fn empty_batch_leaves_running_statistics_alone() {
    for dev in backends("batch_norm_empty_batch") {
        let x = Tensor::zeros(&[0, 3, 4, 4], &dev).requires_grad_();
        let rm = Tensor::from_vec(&[0.5, 1.0, -1.0], &[3], &dev);
        let rv = Tensor::from_vec(&[2.0, 1.0, 3.0], &[3], &dev);
        let w = Tensor::ones(&[3], &dev).requires_grad_();
        let y = x.batch_norm_act(Some(&rm), Some(&rv), Some(&w), None, true, 0.1, 1e-5, NormEpilogue::relu());
        assert_eq!(y.shape(), vec![0, 3, 4, 4]);
        assert_eq!(rm.to_vec(), vec![0.5, 1.0, -1.0]);
        assert_eq!(rv.to_vec(), vec![2.0, 1.0, 3.0]);
        y.sum(&[], false).backward();
        assert_eq!(w.grad().unwrap().to_vec(), vec![0.0; 3]);
    }
}

#[test]
fn one_running_statistic_alone_is_updated() {
    for dev in backends("batch_norm_one_running_statistic") {
        let x = Tensor::from_vec(&[1., 2., 3., 4., 5., 6., 7., 8.], &[4, 2], &dev);
        let rv = Tensor::ones(&[2], &dev);
        x.batch_norm(None, Some(&rv), None, None, true, 0.5, 1e-5);
        // Channel values {1, 3, 5, 7} and {2, 4, 6, 8}: unbiased variance 20/3.
        let v = 0.5 + 0.5 * 20.0 / 3.0;
        assert_close("running_var alone", &rv.to_vec(), &[v, v], 1e-6, 1e-6);
    }
}

#[test]
#[should_panic(expected = "batch_norm: residual has shape [2, 3], expected the input's [2, 3, 1]")]
fn residual_of_another_shape_panics() {
    let dev = wgrad_autograd::Device::cpu();
    let x = Tensor::zeros(&[2, 3, 1], &dev);
    x.batch_norm_act(None, None, None, None, true, 0.1, 1e-5, NormEpilogue::add_relu(&Tensor::zeros(&[2, 3], &dev)));
}

/// Layer norm's affine gradients come from the column-sum kernels: compare
/// with the same expression written with broadcasting ops, on many rows.
#[test]
fn layer_norm_affine_matches_broadcasting_ops() {
    for dev in backends("layer_norm_affine_matches_broadcasting_ops") {
        let x = rand(&[300, 7, 33], 11, -2.0, 2.0, &dev).requires_grad_();
        let w = rand(&[33], 12, 0.5, 1.5, &dev).requires_grad_();
        let b = rand(&[33], 13, -0.5, 0.5, &dev).requires_grad_();
        let gy = rand(&[300, 7, 33], 14, -1.0, 1.0, &dev);
        let fused = x.layer_norm(&[33], Some(&w), Some(&b), 1e-5);
        let plain = &x.layer_norm(&[33], None, None, 1e-5) * &w + &b;
        let what = format!("layer_norm affine on {}", dev.name());
        assert_close(&what, &fused.to_vec(), &plain.to_vec(), 1e-5, 1e-5);
        let mut grads = Vec::new();
        for y in [&fused, &plain] {
            for t in [&x, &w, &b] {
                t.zero_grad();
            }
            y.backward_with(&gy);
            grads.push([&x, &w, &b].map(|t| t.grad().unwrap().to_vec()));
        }
        for (k, name) in ["x", "weight", "bias"].iter().enumerate() {
            assert_close(&format!("{what}: grad {name}"), &grads[0][k], &grads[1][k], 1e-4, 1e-4);
        }
    }
}

/// Layer norm with its affine is one launch forward (normalise, scale,
/// shift) and three backward (the input gradient, and the two-level
/// per-column sums of the weight and bias gradients); two without an input
/// gradient. Normalising and scaling as separate ops took two and four.
#[test]
fn layer_norm_launch_count() {
    let Some(dev) = fresh_gpu_or_skip("layer_norm_launch_count") else { return };
    for (rows, input_grad) in [(300, true), (7, false)] {
        let x = rand(&[rows, 33], 31, -1.0, 1.0, &dev);
        let x = if input_grad { x.requires_grad_() } else { x };
        let w = rand(&[33], 32, 0.5, 1.5, &dev).requires_grad_();
        let b = rand(&[33], 33, -0.5, 0.5, &dev).requires_grad_();
        let gy = rand(&[rows, 33], 34, -1.0, 1.0, &dev);
        dev.synchronize().unwrap();
        let before = dev.stats().dispatches;
        let y = x.layer_norm(&[33], Some(&w), Some(&b), 1e-5);
        drop(y.to_vec());
        let forward = dev.stats().dispatches - before;
        y.backward_with(&gy);
        drop((w.grad().unwrap().to_vec(), b.grad().unwrap().to_vec()));
        if input_grad {
            drop(x.grad().unwrap().to_vec());
        }
        let backward = dev.stats().dispatches - before - forward;
        assert_eq!(
            (forward, backward),
            (1, if input_grad { 3 } else { 2 }),
            "{rows} rows, input gradient {input_grad}"
        );
    }
}

/// A frozen weight gets no gradient while the bias and the input do (the
/// same values as with the weight trainable).
#[test]
fn layer_norm_frozen_weight_gets_no_gradient() {
    for dev in backends("layer_norm_frozen_weight_gets_no_gradient") {
        let x = rand(&[6, 9], 41, -1.0, 1.0, &dev).requires_grad_();
        let frozen = rand(&[9], 42, 0.5, 1.5, &dev);
        let trained = frozen.clone().detach().requires_grad_();
        let b = rand(&[9], 43, -0.5, 0.5, &dev).requires_grad_();
        let gy = rand(&[6, 9], 44, -1.0, 1.0, &dev);
        let mut seen = Vec::new();
        for w in [&frozen, &trained] {
            x.zero_grad();
            b.zero_grad();
            x.layer_norm(&[9], Some(w), Some(&b), 1e-5).backward_with(&gy);
            seen.push((x.grad().unwrap().to_vec(), b.grad().unwrap().to_vec()));
        }
        assert!(frozen.grad().is_none(), "on {}: the frozen weight has no gradient", dev.name());
        assert!(trained.grad().is_some());
        assert_eq!(seen[0], seen[1], "on {}", dev.name());
    }
}

/// A training BN+ReLU is 3 launches forward (two for the statistics and the
/// running update, one fused normalise+affine+ReLU) and 3 backward (two for
/// the per-channel sums, one for the input gradient), whatever the shape.
#[test]
fn training_bn_relu_launch_count() {
    let Some(dev) = fresh_gpu_or_skip("training_bn_relu_launch_count") else { return };
    for shape in [[32usize, 16, 32, 32], [5, 3, 7, 5]] {
        let c = shape[1];
        let x = rand(&shape, 21, -1.0, 1.0, &dev).requires_grad_();
        let w = Tensor::ones(&[c], &dev).requires_grad_();
        let b = Tensor::zeros(&[c], &dev).requires_grad_();
        let (rm, rv) = (Tensor::zeros(&[c], &dev), Tensor::ones(&[c], &dev));
        let gy = rand(&shape, 22, -1.0, 1.0, &dev);
        dev.flush().unwrap();
        let s0 = dev.stats();
        let y = x.batch_norm_act(Some(&rm), Some(&rv), Some(&w), Some(&b), true, 0.1, 1e-5, NormEpilogue::relu());
        let s1 = dev.stats();
        y.backward_with(&gy);
        let s2 = dev.stats();
        assert_eq!((s1 - s0).dispatches, 3, "{shape:?}: forward launches");
        assert_eq!((s2 - s1).dispatches, 3, "{shape:?}: backward launches");
        assert!(x.grad().is_some() && w.grad().is_some() && b.grad().is_some());
    }
}

/// A strided (permuted) input is read through one dense copy.
#[test]
fn strided_input_gradients() {
    let opts = GradCheck { eps: 1e-3, atol: 2e-2, rtol: 2e-2 };
    gradcheck_in("batch_norm_act strided", &[&[3, 4, 2, 3], &[3], &[3]], (-1.0, 1.0), opts, |x| {
        let v = x[0].permute(&[1, 0, 2, 3]);
        v.batch_norm_act(None, None, Some(&x[1]), Some(&x[2]), true, 0.1, 1e-5, NormEpilogue::relu())
    });
}

//! Batch norm followed by a residual add and a ReLU (a ResNet block's end,
//! which the fuser merges into one launch on a GPU): finite-difference
//! gradients of x, weight, bias and residual in training and evaluation on
//! CPU and GPU, the merged form against the ops run one by one, running
//! statistics, the empty batch, the layer-norm affine path, and the launch
//! count of a training BN+ReLU step on a GPU.

use crate::common;
use common::*;
use wgrad_autograd::gradcheck::GradCheck;
use wgrad_autograd::{Device, Tensor};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};

/// `relu(y + r)` with either part optional (`r` is `x[3]`).
fn then_add_relu(y: Tensor, x: &[Tensor], residual: bool, relu: bool) -> Tensor {
    let y = if residual { &y + &x[3] } else { y };
    if relu {
        y.relu()
    } else {
        y
    }
}

/// Training batch norm with affine parameters, then the residual and ReLU asked for.
fn train(x: &[Tensor], residual: bool, relu: bool) -> Tensor {
    then_add_relu(x[0].batch_norm(None, None, Some(&x[1]), Some(&x[2]), true, 0.1, 1e-5), x, residual, relu)
}

#[test]
fn batch_norm_add_relu_gradients_in_training() {
    // ReLU kinks: a finite-difference step of 1e-3 keeps most outputs clear of 0.
    let opts = GradCheck { eps: 1e-3, atol: 2e-2, rtol: 2e-2 };
    for (shape, c) in
        [(&[4usize, 3, 2, 3][..], 3usize), (&[1, 1, 7, 5][..], 1), (&[6, 17][..], 17), (&[2, 2, 3][..], 2)]
    {
        for (residual, relu) in [(false, true), (true, true), (true, false)] {
            let what = format!("batch_norm train {shape:?} residual={residual} relu={relu}");
            gradcheck_in(&what, &[shape, &[c], &[c], shape], (-1.0, 1.0), opts, |x| train(x, residual, relu));
        }
    }
}

#[test]
fn batch_norm_add_relu_gradients_in_evaluation() {
    let opts = GradCheck { eps: 1e-3, atol: 2e-2, rtol: 2e-2 };
    for (residual, relu) in [(false, true), (true, true), (false, false)] {
        let what = format!("batch_norm eval residual={residual} relu={relu}");
        gradcheck_in(&what, &[&[2, 3, 2, 2], &[3], &[3], &[2, 3, 2, 2]], (-1.0, 1.0), opts, |x| {
            let dev = x[0].device();
            let rm = Tensor::from_vec(&[0.1, -0.2, 0.3], &[3], &dev);
            let rv = Tensor::from_vec(&[0.5, 1.5, 2.0], &[3], &dev);
            let y = x[0].batch_norm(Some(&rm), Some(&rv), Some(&x[1]), Some(&x[2]), false, 0.1, 1e-5);
            then_add_relu(y, x, residual, relu)
        });
    }
}

#[test]
fn batch_norm_without_affine_add_relu_gradients() {
    let opts = GradCheck { eps: 1e-3, atol: 2e-2, rtol: 2e-2 };
    gradcheck_in("batch_norm no affine, add, relu", &[&[3, 2, 5], &[3, 2, 5]], (-1.0, 1.0), opts, |x| {
        (&x[0].batch_norm(None, None, None, None, true, 0.1, 1e-5) + &x[1]).relu()
    });
}

/// `relu(bn(x) + r)` and its gradients on `dev` (training or not): the
/// output, the running statistics after it, and the gradients of x, weight,
/// bias and r for a seeded output gradient.
fn block_end(dev: &Device, training: bool) -> Vec<Vec<f32>> {
    let leaf = |shape: &[usize], seed, lo, hi| rand(shape, seed, lo, hi, dev).requires_grad_();
    let (x, w, b, r) = (
        leaf(&[3, 4, 5, 3], 1, -2.0, 2.0),
        leaf(&[4], 2, 0.5, 1.5),
        leaf(&[4], 3, -0.5, 0.5),
        leaf(&[3, 4, 5, 3], 4, -1.0, 1.0),
    );
    let (rm, rv) = (rand(&[4], 5, -0.5, 0.5, dev), rand(&[4], 6, 0.5, 2.0, dev));
    let gy = rand(&[3, 4, 5, 3], 7, -1.0, 1.0, dev);
    let y = (&x.batch_norm(Some(&rm), Some(&rv), Some(&w), Some(&b), training, 0.1, 1e-5) + &r).relu();
    y.backward_with(&gy);
    let mut out = vec![y.to_vec(), rm.to_vec(), rv.to_vec()];
    out.extend([&x, &w, &b, &r].map(|t| t.grad().unwrap().to_vec()));
    out
}

/// On a GPU the fuser merges the add and the ReLU into batch norm's launch
/// (and the ReLU's gradient, where a product computes it): the same values
/// and gradients as a GPU running the ops one by one, and as the CPU twin.
#[test]
fn merged_matches_the_ops_one_by_one() {
    let test = "batch_norm_merged_matches_the_ops_one_by_one";
    let Some(fused) = fresh_gpu_or_skip(test) else { return };
    let plain = fresh_gpu_or_skip(test).unwrap();
    plain.set_fusion(false).unwrap();
    let names = ["y", "running_mean", "running_var", "grad x", "grad weight", "grad bias", "grad residual"];
    for training in [true, false] {
        let (got, one_by_one, cpu) =
            (block_end(&fused, training), block_end(&plain, training), block_end(&Device::cpu(), training));
        for (k, name) in names.iter().enumerate() {
            let what = format!("{name} (training {training})");
            assert_close(&format!("{what}: merged vs one by one"), &got[k], &one_by_one[k], 1e-6, 1e-6);
            assert_close(&format!("{what}: GPU vs CPU"), &got[k], &cpu[k], 1e-4, 1e-5);
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
        let y = x.batch_norm(Some(&rm), Some(&rv), Some(&w), None, true, 0.1, 1e-5).relu();
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
/// running update, one normalise+affine with the ReLU merged into its store)
/// and 4 backward (the ReLU's gradient, two for the per-channel sums, one
/// for the input gradient), whatever the shape. In a network the ReLU's
/// gradient merges into the store of the convolution computing its input
/// (ResNet-20's launch table, docs/architecture.md); here it has an
/// uploaded gradient to read.
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
        let y = x.batch_norm(Some(&rm), Some(&rv), Some(&w), Some(&b), true, 0.1, 1e-5).relu();
        dev.flush().unwrap();
        let s1 = dev.stats();
        y.backward_with(&gy);
        dev.flush().unwrap();
        let s2 = dev.stats();
        assert_eq!((s1 - s0).dispatches, 3, "{shape:?}: forward launches");
        assert_eq!((s2 - s1).dispatches, 4, "{shape:?}: backward launches");
        assert!(x.grad().is_some() && w.grad().is_some() && b.grad().is_some());
    }
}

/// A strided (permuted) input is read through one dense copy.
#[test]
fn strided_input_gradients() {
    let opts = GradCheck { eps: 1e-3, atol: 2e-2, rtol: 2e-2 };
    gradcheck_in("batch_norm strided", &[&[3, 4, 2, 3], &[3], &[3]], (-1.0, 1.0), opts, |x| {
        let v = x[0].permute(&[1, 0, 2, 3]);
        v.batch_norm(None, None, Some(&x[1]), Some(&x[2]), true, 0.1, 1e-5).relu()
    });
}

//! Finite-difference checks of conv2d, conv1d and conv_transpose2d (input,
//! weight and bias gradients), on the CPU backend and on the GPU. Inputs are
//! tiny: gradcheck runs the op twice per input element.

use crate::common;
use common::*;
use wgrad_autograd::{Conv2dOptions, ConvTranspose2dOptions, Tensor};

/// gradcheck of conv2d over x, weight and bias.
#[track_caller]
fn check_conv2d(name: &str, x: &[usize], w: &[usize], opts: Conv2dOptions) {
    let b = [w[0]];
    gradcheck(name, &[x, w, &b], move |t| t[0].conv2d(&t[1], Some(&t[2]), &opts));
}

#[test]
fn conv2d_plain() {
    check_conv2d("conv2d 3x3", &[2, 2, 4, 5], &[3, 2, 3, 3], Conv2dOptions::new());
    check_conv2d("conv2d 3x3 pad 1", &[1, 2, 4, 4], &[2, 2, 3, 3], Conv2dOptions::new().padding(1));
}

#[test]
fn conv2d_stride_2_odd_input() {
    check_conv2d("conv2d stride 2", &[2, 2, 5, 5], &[2, 2, 3, 3], Conv2dOptions::new().stride(2).padding(1));
    check_conv2d("conv2d stride (2,1)", &[1, 1, 5, 4], &[2, 1, 2, 3], Conv2dOptions::new().stride_hw(2, 1));
}

#[test]
fn conv2d_asymmetric_padding() {
    let opts = Conv2dOptions { padding: [0, 2, 1, 0], ..Conv2dOptions::new() };
    check_conv2d("conv2d asymmetric padding", &[1, 2, 4, 3], &[2, 2, 3, 2], opts);
    check_conv2d("conv2d same, even kernel", &[1, 1, 4, 4], &[2, 1, 2, 4], Conv2dOptions::same(2, 4));
}

#[test]
fn conv2d_dilation_2() {
    check_conv2d("conv2d dilation 2", &[1, 2, 6, 5], &[2, 2, 2, 2], Conv2dOptions::new().dilation(2).padding(1));
}

#[test]
fn conv2d_groups_and_depthwise() {
    check_conv2d("conv2d groups 2", &[2, 4, 4, 4], &[4, 2, 3, 3], Conv2dOptions::new().groups(2).padding(1));
    check_conv2d("conv2d depthwise", &[1, 3, 4, 4], &[6, 1, 3, 3], Conv2dOptions::new().groups(3).stride(2).padding(1));
}

#[test]
fn conv2d_without_bias_and_with_a_constant_weight() {
    let opts = Conv2dOptions::new().padding(1);
    gradcheck("conv2d no bias", &[&[1, 2, 3, 4], &[2, 2, 3, 3]], move |t| t[0].conv2d(&t[1], None, &opts));
    // Only x requires a gradient: the weight-gradient path (and its saved
    // columns) is skipped, the input gradient must still be right.
    for dev in backends("conv2d constant weight") {
        let w = rand(&[2, 2, 3, 3], 7, -1.0, 1.0, &dev);
        let f = |t: &[Tensor]| t[0].conv2d(&w, None, &opts);
        let x = rand(&[1, 2, 3, 4], 8, -1.0, 1.0, &dev);
        wgrad_autograd::gradcheck::check_gradients(f, &[x], Default::default())
            .unwrap_or_else(|e| panic!("conv2d constant weight on {}: {e}", dev.name()));
    }
}

#[test]
fn conv1d_gradients() {
    gradcheck("conv1d", &[&[2, 2, 7], &[3, 2, 3], &[3]], |t| t[0].conv1d(&t[1], Some(&t[2]), 2, (1, 2), 1, 1));
    gradcheck("conv1d dilated grouped", &[&[1, 4, 8], &[2, 2, 2], &[2]], |t| {
        t[0].conv1d(&t[1], Some(&t[2]), 1, (0, 0), 3, 2)
    });
}

#[test]
fn conv_transpose2d_gradients() {
    let cases: [(&str, [usize; 4], [usize; 4], ConvTranspose2dOptions); 3] = [
        ("conv_transpose2d plain", [1, 2, 3, 3], [2, 3, 2, 2], ConvTranspose2dOptions::new()),
        (
            "conv_transpose2d stride 2 output_padding 1",
            [2, 2, 3, 2],
            [2, 2, 3, 3],
            ConvTranspose2dOptions::new().stride(2).padding(1).output_padding(1),
        ),
        ("conv_transpose2d groups 2", [1, 4, 3, 3], [4, 1, 3, 2], ConvTranspose2dOptions::new().groups(2).stride(2)),
    ];
    for (name, x, w, opts) in cases {
        let b = [w[1] * opts.groups];
        gradcheck(name, &[&x, &w, &b], move |t| t[0].conv_transpose2d(&t[1], Some(&t[2]), &opts));
    }
}

#[test]
fn conv_output_shapes_follow_pytorch() {
    let dev = wgrad_autograd::Device::cpu();
    let x = Tensor::zeros(&[2, 4, 9, 7], &dev);
    let y = x.conv2d(&Tensor::zeros(&[6, 2, 3, 3], &dev), None, &Conv2dOptions::new().stride(2).padding(1).groups(2));
    assert_eq!(y.shape(), [2, 6, 5, 4]);
    let y = x.conv2d(&Tensor::zeros(&[3, 4, 4, 2], &dev), None, &Conv2dOptions::same(4, 2));
    assert_eq!(y.shape(), [2, 3, 9, 7]);
    let y = x.conv2d(&Tensor::zeros(&[3, 4, 3, 3], &dev), None, &Conv2dOptions::new().dilation(2).padding_same(3, 3));
    assert_eq!(y.shape(), [2, 3, 9, 7]);
    let t = ConvTranspose2dOptions::new().stride(2).padding(1).output_padding(1);
    let y = x.conv_transpose2d(&Tensor::zeros(&[4, 3, 3, 3], &dev), None, &t);
    assert_eq!(y.shape(), [2, 3, 18, 14]);
    let y = Tensor::zeros(&[1, 2, 10], &dev).conv1d(&Tensor::zeros(&[5, 2, 3], &dev), None, 3, (1, 0), 1, 1);
    assert_eq!(y.shape(), [1, 5, 3]);
    // An empty batch is allowed, as in PyTorch, and gives an empty batch.
    for dev in backends("conv on an empty batch") {
        let (w, b) = (Tensor::ones(&[3, 2, 2, 2], &dev), Tensor::ones(&[3], &dev));
        let y = Tensor::zeros(&[0, 2, 4, 4], &dev).conv2d(&w, Some(&b), &Conv2dOptions::new());
        assert_eq!((y.shape().to_vec(), y.to_vec().len()), (vec![0, 3, 3, 3], 0));
    }
}

#[test]
fn conv_misuse_panics_with_the_op_and_shapes() {
    let dev = wgrad_autograd::Device::cpu();
    let msg = |f: Box<dyn FnOnce()>| {
        let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("should panic");
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    let x = Tensor::zeros(&[1, 4, 5, 5], &dev);
    let w = Tensor::zeros(&[2, 3, 3, 3], &dev);
    let m = msg(Box::new(move || drop(x.conv2d(&w, None, &Conv2dOptions::new()))));
    assert!(m.contains("conv2d") && m.contains("[2, 3, 3, 3]") && m.contains("[1, 4, 5, 5]"), "{m}");
    let x = Tensor::zeros(&[1, 4, 2, 2], &dev);
    let w = Tensor::zeros(&[2, 4, 3, 3], &dev);
    let m = msg(Box::new(move || drop(x.conv2d(&w, None, &Conv2dOptions::new()))));
    assert!(m.starts_with("conv2d:") && m.contains("larger than the padded input"), "{m}");
    let x = Tensor::zeros(&[1, 4, 3, 3], &dev);
    let (w, b) = (Tensor::zeros(&[2, 4, 3, 3], &dev), Tensor::zeros(&[3], &dev));
    let m = msg(Box::new(move || drop(x.conv2d(&w, Some(&b), &Conv2dOptions::new()))));
    assert!(m.contains("bias shape [3]"), "{m}");
    let x = Tensor::zeros(&[1, 4, 3], &dev);
    let w = Tensor::zeros(&[2, 4, 3, 3], &dev);
    let m = msg(Box::new(move || drop(x.conv2d(&w, None, &Conv2dOptions::new()))));
    assert!(m.contains("conv2d: input shape [1, 4, 3]"), "{m}");
    let x = Tensor::zeros(&[1, 2, 3, 3], &dev);
    let w = Tensor::zeros(&[2, 2, 3, 3], &dev);
    let t = ConvTranspose2dOptions::new().stride(2).output_padding(2);
    let m = msg(Box::new(move || drop(x.conv_transpose2d(&w, None, &t))));
    assert!(m.contains("conv_transpose2d") && m.contains("output_padding"), "{m}");
}

/// A batch whose im2col columns would exceed the adapter's storage-binding
/// limit (the explicit lowering had to split it) runs as one implicit GEMM:
/// same outputs and gradients as each image alone.
#[test]
fn conv_batches_above_the_binding_limit_are_split() {
    let Some(dev) = wgrad_gpu_core::testing::gpu_or_skip("conv_batches_above_the_binding_limit_are_split") else {
        return;
    };
    let limit = dev.info().max_storage_buffer_binding_size as usize;
    // cols per image: 16*9 rows x 64*64 positions x 4 bytes = 2.36 MB; pick N so the total exceeds the limit.
    let per_image = 16 * 9 * 64 * 64 * 4;
    let n = limit / per_image + 3;
    let x = Tensor::randn(&[n, 16, 64, 64], 1, &dev).detach().requires_grad_();
    let w = Tensor::randn(&[4, 16, 3, 3], 2, &dev).mul_scalar(0.1).detach().requires_grad_();
    let opts = Conv2dOptions::new().padding(1);
    let y = x.conv2d(&w, None, &opts);
    assert_eq!(y.shape(), vec![n, 4, 64, 64]);
    y.sum_all().backward();
    // Reference: the last image alone (well under the limit).
    let x_last = x.narrow(0, n - 1, 1).detach();
    let y_last = x_last.conv2d(&w.detach(), None, &opts);
    let got = y.narrow(0, n - 1, 1).to_vec();
    wgrad_gpu_core::testing::assert_close("split conv output", &got, &y_last.to_vec(), 1e-5, 1e-5);
    let gw = w.grad().unwrap().to_vec();
    assert!(
        gw.iter().all(|v| v.is_finite()) && gw.iter().any(|v| *v != 0.0),
        "weight gradient accumulated over all chunks"
    );
    assert_eq!(x.grad().unwrap().shape(), vec![n, 16, 64, 64]);
}

/// conv_transpose2d likewise where its columns would exceed the binding limit.
#[test]
fn conv_transpose_batches_above_the_binding_limit_are_split() {
    let Some(dev) = wgrad_gpu_core::testing::gpu_or_skip("conv_transpose_batches_above_the_binding_limit_are_split")
    else {
        return;
    };
    let limit = dev.info().max_storage_buffer_binding_size as usize;
    // cols per image: (4 out channels * 3*3) rows x 64*64 input positions x 4 bytes.
    let per_image = 4 * 9 * 64 * 64 * 4;
    let n = limit / per_image + 2;
    let x = Tensor::randn(&[n, 2, 64, 64], 1, &dev).detach().requires_grad_();
    let w = Tensor::randn(&[2, 4, 3, 3], 2, &dev).mul_scalar(0.1).detach().requires_grad_();
    let opts = ConvTranspose2dOptions::new().padding(1);
    let y = x.conv_transpose2d(&w, None, &opts);
    assert_eq!(y.shape(), vec![n, 4, 64, 64]);
    y.sum_all().backward();
    let last = x.narrow(0, n - 1, 1).detach().conv_transpose2d(&w.detach(), None, &opts);
    wgrad_gpu_core::testing::assert_close(
        "split transposed conv",
        &y.narrow(0, n - 1, 1).to_vec(),
        &last.to_vec(),
        1e-5,
        1e-5,
    );
    assert_eq!(x.grad().unwrap().shape(), vec![n, 2, 64, 64]);
    assert!(w.grad().unwrap().to_vec().iter().all(|v| v.is_finite()));
}

/// The ungrouped and grouped convolutions launch no im2col / col2im: forward
/// is one implicit-GEMM launch, backward the input gradient (a copy of the
/// weight into Wᵀ order + one launch) and the weight gradient (one launch +
/// the sum over the batch). The explicit lowering needs 2 forward and 6
/// backward launches (im2col, col2im, the recomputed im2col), so a return to
/// it fails here; the GPU run must match the reference CPU twins' count. The
/// fast CPU backend takes the weight gradient in one launch with the batch
/// sum inside its sgemm, so its backward is one launch shorter.
#[test]
fn conv_forward_and_backward_launch_no_im2col_or_col2im() {
    // A GPU of its own: the shared test GPU also counts the launches of
    // tests running beside this one (a flaky (1, 5) on lavapipe).
    let mut devices = vec![wgrad_gpu_core::Device::cpu()];
    devices.extend(wgrad_gpu_core::testing::fresh_gpu_or_skip("conv_forward_and_backward_launch_no_im2col_or_col2im"));
    for dev in devices {
        for groups in [1, 2] {
            let x = rand(&[3, 4, 6, 5], 1, -1.0, 1.0, &dev).requires_grad_();
            let w = rand(&[6, 4 / groups, 3, 3], 2, -1.0, 1.0, &dev).requires_grad_();
            let gy = rand(&[3, 6, 6, 5], 3, -1.0, 1.0, &dev);
            let opts = Conv2dOptions::new().padding(1).groups(groups);
            dev.flush().unwrap();
            let s0 = dev.stats();
            // Flushed after each phase: the fuser counts a launch it
            // defers (the product, whose readers may join its store) when
            // it encodes it.
            let y = x.conv2d(&w, None, &opts);
            dev.flush().unwrap();
            let s1 = dev.stats();
            y.backward_with(&gy);
            dev.flush().unwrap();
            let s2 = dev.stats();
            let (fwd, bwd) = ((s1 - s0).dispatches, (s2 - s1).dispatches);
            let want = if dev.is_gpu() || dev.is_cpu_reference() { (1, 4) } else { (1, 3) };
            assert_eq!((fwd, bwd), want, "groups {groups} on {}: forward and backward launches", dev.name());
            assert!(x.grad().is_some() && w.grad().is_some());
        }
    }
}

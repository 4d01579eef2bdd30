//! Finite-difference checks of pooling and normalisation (including the
//! norms' weight and bias and batch norm in both modes), on the CPU backend
//! and on the GPU; plus batch norm's running-statistics update.

use crate::common;
use common::*;
use wgrad_autograd::{Device, PoolWindow, Tensor};
use wgrad_gpu_core::testing::assert_close;

#[test]
fn max_pool_gradients() {
    // Distinct values 0.1 apart: a 0.01 step never changes a window's argmax.
    type Case = (&'static [usize], (usize, usize), (usize, usize), (usize, usize), (usize, usize));
    let cases: &[Case] = &[
        (&[2, 2, 5, 7], (3, 3), (2, 2), (1, 1), (1, 1)), // stride 2, odd sizes, padding
        (&[1, 2, 7, 6], (2, 3), (1, 2), (1, 1), (2, 2)), // dilation 2
        (&[1, 1, 5, 5], (3, 3), (1, 1), (0, 0), (1, 1)), // overlapping windows
        (&[2, 5, 5], (2, 2), (2, 2), (0, 0), (1, 1)),    // unbatched [C, H, W]
    ];
    for (i, &(shape, k, s, p, d)) in cases.iter().enumerate() {
        gradcheck_inputs(
            &format!("max_pool2d {shape:?} k{k:?} s{s:?} p{p:?} d{d:?}"),
            |dev| vec![grid(shape, 40 + i as u64, 0.0, dev)],
            move |x| x[0].max_pool2d(k, s, p, d),
        );
    }
    // ceil_mode: last windows that run past the input, one larger than it.
    for (i, (shape, w)) in [
        (&[2, 2, 6, 7][..], PoolWindow::new((3, 3)).stride((2, 2)).ceil_mode(true)),
        (&[1, 2, 2, 3], PoolWindow::new((3, 3)).stride((2, 2)).padding((0, 1)).ceil_mode(true)),
    ]
    .into_iter()
    .enumerate()
    {
        gradcheck_inputs(
            &format!("max_pool2d {shape:?} {w:?}"),
            |dev| vec![grid(shape, 50 + i as u64, 0.0, dev)],
            move |x| x[0].max_pool2d_window(w),
        );
    }
}

#[test]
fn avg_and_adaptive_pool_gradients() {
    for count_pad in [true, false] {
        gradcheck(&format!("avg_pool2d count_include_pad {count_pad}"), &[&[2, 2, 5, 7]], move |x| {
            x[0].avg_pool2d((3, 3), (2, 2), (1, 1), count_pad)
        });
        gradcheck("avg_pool2d overlapping", &[&[1, 1, 5, 4]], move |x| {
            x[0].avg_pool2d((3, 2), (1, 1), (1, 1), count_pad)
        });
        // ceil_mode: the last windows' divisors count up to the padded end.
        gradcheck(&format!("avg_pool2d ceil_mode count_include_pad {count_pad}"), &[&[2, 2, 6, 7]], move |x| {
            x[0].avg_pool2d_window(PoolWindow::new((3, 3)).stride((2, 2)).padding((1, 1)).ceil_mode(true), count_pad)
        });
    }
    gradcheck("adaptive_avg_pool2d 7x5 -> 3x2", &[&[2, 2, 7, 5]], |x| x[0].adaptive_avg_pool2d((3, 2)));
    gradcheck("adaptive_avg_pool2d upsampling", &[&[1, 2, 3, 2]], |x| x[0].adaptive_avg_pool2d((4, 3)));
    gradcheck("global average pooling", &[&[2, 3, 4, 3]], |x| x[0].adaptive_avg_pool2d((1, 1)));
    gradcheck("adaptive_avg_pool2d unbatched", &[&[2, 5, 4]], |x| x[0].adaptive_avg_pool2d((2, 3)));
}

#[test]
fn layer_norm_gradients() {
    gradcheck("layer_norm with affine", &[&[3, 4, 5], &[4, 5], &[4, 5]], |x| {
        x[0].layer_norm(&[4, 5], Some(&x[1]), Some(&x[2]), 1e-5)
    });
    gradcheck("layer_norm last dim", &[&[2, 3, 7]], |x| x[0].layer_norm(&[7], None, None, 1e-5));
    gradcheck("layer_norm weight only", &[&[4, 6], &[6]], |x| x[0].layer_norm(&[6], Some(&x[1]), None, 1e-5));
}

#[test]
fn group_and_instance_norm_gradients() {
    gradcheck("group_norm", &[&[2, 6, 3, 2], &[6], &[6]], |x| x[0].group_norm(3, Some(&x[1]), Some(&x[2]), 1e-5));
    gradcheck("instance_norm (groups = C)", &[&[2, 3, 4, 2], &[3], &[3]], |x| {
        x[0].group_norm(3, Some(&x[1]), Some(&x[2]), 1e-5)
    });
    gradcheck("group_norm one group, rank 3", &[&[3, 4, 5]], |x| x[0].group_norm(1, None, None, 1e-5));
}

#[test]
fn batch_norm_gradients() {
    gradcheck("batch_norm train NCHW", &[&[4, 3, 2, 3], &[3], &[3]], |x| {
        x[0].batch_norm(None, None, Some(&x[1]), Some(&x[2]), true, 0.1, 1e-5)
    });
    gradcheck("batch_norm train NC", &[&[5, 3], &[3], &[3]], |x| {
        x[0].batch_norm(None, None, Some(&x[1]), Some(&x[2]), true, 0.1, 1e-5)
    });
    gradcheck("batch_norm eval", &[&[2, 3, 2, 2], &[3], &[3]], |x| {
        let dev = x[0].device();
        let rm = Tensor::from_vec(&[0.1, -0.2, 0.3], &[3], &dev);
        let rv = Tensor::from_vec(&[0.5, 1.5, 2.0], &[3], &dev);
        x[0].batch_norm(Some(&rm), Some(&rv), Some(&x[1]), Some(&x[2]), false, 0.1, 1e-5)
    });
}

#[test]
fn batch_norm_training_updates_running_statistics_in_place() {
    for dev in backends("batch_norm_training_updates_running_statistics_in_place") {
        // Two channels over N = 2, H·W = 2: channel 0 = {1, 2, 5, 6}, channel 1 = {3, 4, 7, 8}.
        let x = Tensor::from_vec(&[1., 2., 3., 4., 5., 6., 7., 8.], &[2, 2, 2, 1], &dev);
        let rm = Tensor::from_vec(&[1.0, -1.0], &[2], &dev);
        let rv = Tensor::ones(&[2], &dev);
        let (rm_id, rv_id) = (rm.id(), rv.id());
        let y = x.batch_norm(Some(&rm), Some(&rv), None, None, true, 0.1, 0.0);
        // Mean 3.5 and 5.5; biased var 4.25, unbiased 17/3, in both channels.
        assert_close("running_mean", &rm.to_vec(), &[0.9 + 0.35, -0.9 + 0.55], 1e-6, 1e-6);
        let v = 0.9 + 0.1 * 17.0 / 3.0;
        assert_close("running_var", &rv.to_vec(), &[v, v], 1e-6, 1e-6);
        assert_eq!((rm.id(), rv.id()), (rm_id, rv_id), "updated in place");
        let s = 1.0 / 4.25f32.sqrt();
        let want = [-2.5 * s, -1.5 * s, -2.5 * s, -1.5 * s, 1.5 * s, 2.5 * s, 1.5 * s, 2.5 * s];
        assert_close("batch_norm output", &y.to_vec(), &want, 1e-5, 1e-6);
    }
}

#[test]
fn max_pool_indices_and_unbatched_shapes() {
    for dev in backends("max_pool_indices_and_unbatched_shapes") {
        let x = Tensor::arange(0.0, 32.0, 1.0, &dev).reshape(&[2, 4, 4]);
        let (y, idx) = x.max_pool2d_with_indices((2, 2), (2, 2), (0, 0), (1, 1));
        assert_eq!(y.shape(), vec![2, 2, 2]);
        assert_eq!(idx.shape(), vec![2, 2, 2]);
        assert_eq!(idx.to_vec_u32(), vec![5, 7, 13, 15, 5, 7, 13, 15]);
        assert_eq!(y.to_vec(), vec![5., 7., 13., 15., 21., 23., 29., 31.]);
        assert_eq!(x.avg_pool2d((4, 4), (4, 4), (0, 0), true).to_vec(), vec![7.5, 23.5]);
        assert_eq!(x.adaptive_avg_pool2d((1, 1)).shape(), vec![2, 1, 1]);
    }
}

#[test]
#[should_panic(expected = "batch_norm: evaluation (training = false) needs running_mean and running_var")]
fn batch_norm_eval_without_statistics_panics() {
    let x = Tensor::zeros(&[2, 3], &Device::cpu());
    x.batch_norm(None, None, None, None, false, 0.1, 1e-5);
}

#[test]
#[should_panic(expected = "group_norm: 4 groups do not divide the 6 channels")]
fn group_norm_with_indivisible_groups_panics() {
    Tensor::zeros(&[1, 6, 2], &Device::cpu()).group_norm(4, None, None, 1e-5);
}

#[test]
#[should_panic(expected = "layer_norm: normalized_shape [3] must be a non-empty tail")]
fn layer_norm_with_wrong_shape_panics() {
    Tensor::zeros(&[2, 4], &Device::cpu()).layer_norm(&[3], None, None, 1e-5);
}

#[test]
fn rms_norm_and_rotary_gradients() {
    gradcheck("rms_norm with weight", &[&[3, 4, 5], &[4, 5]], |x| x[0].rms_norm(&[4, 5], Some(&x[1]), 1e-6));
    gradcheck("rms_norm without weight", &[&[2, 7]], |x| x[0].rms_norm(&[7], None, f32::EPSILON));
    gradcheck("apply_rotary", &[&[2, 3, 6]], |x| {
        let (cos, sin) = Tensor::rotary_tables(3, 6, 2, 10_000.0, &x[0].device());
        x[0].apply_rotary(&cos, &sin)
    });
}

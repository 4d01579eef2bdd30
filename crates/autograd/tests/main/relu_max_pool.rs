//! ReLU fused into the pooling after it: `Tensor::relu_max_pool2d` (its
//! argmax carries ReLU's derivative). The same values and gradients as the
//! two ops on every backend (bit for bit), finite-difference gradients.
//! (A ReLU after a product: `epilogue_fusion.rs`.)

use crate::common;
use common::*;
use wgrad_autograd::{DType, Device, Tensor};
use wgrad_gpu_core::testing::{fresh_gpu_or_skip, Rng};

/// Data with ties, zeros, negatives and, with `nan`, a NaN now and then:
/// every rule of the max pooling's scan meets the ReLU.
fn pool_data(shape: &[usize], seed: u64, nan: bool, dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = Rng::new(seed)
        .vec(n, -2.0, 2.0)
        .iter()
        .enumerate()
        .map(|(i, x)| if nan && i % 53 == 7 { f32::NAN } else { (x * 2.0).round() / 2.0 })
        .collect();
    Tensor::from_vec(&v, shape, dev)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::F32).to_vec().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn relu_max_pool2d_is_relu_then_max_pool2d_in_values_and_gradients() {
    type Case = (&'static [usize], (usize, usize), (usize, usize), (usize, usize), (usize, usize));
    let cases: &[Case] = &[
        (&[2, 3, 8, 8], (2, 2), (2, 2), (0, 0), (1, 1)), // MNIST's 2x2 windows
        (&[2, 2, 7, 9], (3, 3), (2, 2), (1, 1), (1, 1)), // padding, odd sizes
        (&[1, 2, 6, 5], (3, 3), (1, 1), (1, 1), (1, 1)), // overlapping windows
        (&[1, 2, 9, 8], (3, 2), (1, 2), (1, 0), (2, 2)), // dilation
        (&[3, 11, 10], (2, 2), (2, 2), (0, 0), (1, 1)),  // unbatched, a row in no window
    ];
    for dev in backends("relu_max_pool2d_is_relu_then_max_pool2d_in_values_and_gradients") {
        for (i, &(shape, k, s, p, d)) in cases.iter().enumerate() {
            for (dtype, nan) in [(DType::F32, false), (DType::F32, true), (DType::F16, false)] {
                let run = |fused: bool| {
                    // An F32 leaf; the F16 case pools its f16 cast (the f16 kernels both ways).
                    let x = pool_data(shape, 10 + i as u64, nan, &dev).requires_grad_();
                    let h = x.to_dtype(dtype);
                    let y = if fused { h.relu_max_pool2d(k, s, p, d) } else { h.relu().max_pool2d(k, s, p, d) };
                    assert_eq!(y.dtype(), dtype);
                    // Distinct upstream gradients, so a misrouted one shows.
                    let c = rand(&y.shape(), 20 + i as u64, 0.5, 1.5, &dev).to_dtype(dtype);
                    (&y * &c).sum_all().backward();
                    (bits(&y), bits(&x.grad().unwrap()), y.to_dtype(DType::F32).to_vec())
                };
                let (fused, plain) = (run(true), run(false));
                let what = format!("{shape:?} k{k:?} s{s:?} p{p:?} d{d:?} {dtype:?} nan={nan} on {}", dev.name());
                assert!(fused.2.contains(&0.0) && fused.2.iter().any(|&v| v > 0.0), "{what}: both kinds of window");
                assert_eq!(fused.0, plain.0, "{what}: values");
                assert_eq!(fused.1, plain.1, "{what}: input gradient");
            }
        }
    }
}

#[test]
fn relu_max_pool2d_gradients_match_finite_differences() {
    // Distinct values on a grid shifted off zero (no ties, no kinks), most
    // of them negative: some windows have no positive element.
    for (k, s, p) in [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 1), (1, 1))] {
        gradcheck_inputs(
            &format!("relu_max_pool2d k{k:?} s{s:?} p{p:?}"),
            |dev| vec![grid(&[2, 2, 5, 6], 7, -2.55, dev)],
            move |t| t[0].relu_max_pool2d(k, s, p, (1, 1)),
        );
    }
}

#[test]
fn fused_relu_max_pool2d_is_one_launch_each_way() {
    let Some(dev) = fresh_gpu_or_skip("fused_relu_max_pool2d_is_one_launch_each_way") else { return };
    let x = rand(&[2, 3, 8, 8], 1, -1.0, 1.0, &dev).requires_grad_();
    let launches = |f: &dyn Fn() -> Tensor, backward: bool| {
        let before = dev.stats().dispatches;
        let y = f();
        drop(y.to_vec());
        let forward = dev.stats().dispatches - before;
        if backward {
            y.sum_all().backward();
            drop(x.grad().unwrap().to_vec());
        }
        (forward, dev.stats().dispatches - before - forward)
    };
    let pool = |t: &Tensor| t.max_pool2d((2, 2), (2, 2), (0, 0), (1, 1));
    let (fused, plain) =
        (launches(&|| x.relu_max_pool2d((2, 2), (2, 2), (0, 0), (1, 1)), true), launches(&|| pool(&x.relu()), true));
    assert_eq!(fused.0 + 1, plain.0, "forward: fused {fused:?}, two ops {plain:?}");
    assert_eq!(fused.1 + 1, plain.1, "backward: fused {fused:?}, two ops {plain:?}");
}

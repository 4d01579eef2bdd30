//! `Tensor::interpolate` and `interpolate_scale`: finite-difference
//! gradients for every mode (to sizes up and down, by scale factors,
//! unbatched), on the CPU backend and the GPU; F16 input resized in f32 and
//! rounded once, its gradient likewise; bad arguments panic naming the op.

use crate::common;
use common::*;
use half::f16;
use wgrad_autograd::{DType, Interpolation, Tensor};

const MODES: [Interpolation; 3] = [
    Interpolation::Nearest,
    Interpolation::Bilinear { align_corners: false },
    Interpolation::Bilinear { align_corners: true },
];

#[test]
fn interpolation_gradients() {
    for mode in MODES {
        gradcheck(&format!("interpolate {mode:?} up"), &[&[2, 2, 3, 4]], move |x| x[0].interpolate((5, 7), mode));
        gradcheck(&format!("interpolate {mode:?} down"), &[&[1, 2, 7, 6]], move |x| x[0].interpolate((3, 4), mode));
        gradcheck(&format!("interpolate_scale {mode:?}"), &[&[1, 1, 3, 5]], move |x| {
            x[0].interpolate_scale((1.5, 0.8), mode)
        });
        gradcheck(&format!("interpolate {mode:?} unbatched"), &[&[2, 3, 3]], move |x| x[0].interpolate((4, 2), mode));
    }
}

#[test]
fn f16_input_is_resized_in_f32_and_rounded_once() {
    for dev in backends("interpolate f16") {
        let v: Vec<f32> = (0..2 * 3 * 5).map(|i| f16::from_f32((i as f32 * 0.37).sin() * 3.0).to_f32()).collect();
        for mode in MODES {
            let x32 = Tensor::from_vec(&v, &[1, 2, 3, 5], &dev).requires_grad_();
            // An F16 activation whose gradient reaches an F32 leaf through its cast.
            let leaf = Tensor::from_vec(&v, &[1, 2, 3, 5], &dev).requires_grad_();
            let x16 = leaf.to_dtype(DType::F16);
            let (y32, y16) = (x32.interpolate((7, 4), mode), x16.interpolate((7, 4), mode));
            assert_eq!(y16.dtype(), DType::F16, "{mode:?}");
            let want: Vec<f32> = y32.to_vec().iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            assert_eq!(y16.to_dtype(DType::F32).to_vec(), want, "{mode:?} on {}", dev.name());
            let g = Tensor::from_vec(
                &(0..y32.numel()).map(|i| (i % 5) as f32 * 0.25).collect::<Vec<_>>(),
                &y32.shape(),
                &dev,
            );
            y32.backward_with(&g);
            y16.backward_with(&g.to_dtype(DType::F16));
            // The F16 input's gradient is the f32 one rounded once.
            let want: Vec<f32> = x32.grad().unwrap().to_vec().iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            assert_eq!(leaf.grad().expect("a gradient").to_vec(), want, "{mode:?} on {}: gradient", dev.name());
        }
    }
}

#[test]
fn bad_arguments_panic_naming_the_op() {
    let dev = wgrad_autograd::Device::cpu();
    let x = Tensor::zeros(&[1, 1, 2, 2], &dev);
    let msg = |f: &dyn Fn()| {
        let e = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("a panic");
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    };
    let e = msg(&|| drop(x.interpolate((0, 3), Interpolation::Nearest)));
    assert!(e.contains("interpolate") && e.contains("empty"), "{e}");
    let e = msg(&|| drop(x.interpolate_scale((-1.0, 2.0), Interpolation::Nearest)));
    assert!(e.contains("interpolate") && e.contains("scale factors"), "{e}");
    let e = msg(&|| drop(Tensor::zeros(&[4], &dev).interpolate((2, 2), Interpolation::Nearest)));
    assert!(e.contains("interpolate") && e.contains("[4]"), "{e}");
}

//! Interpolation (nearest, bilinear either way of `align_corners`) and its
//! backward: GPU kernel vs CPU twin and the fast CPU backend vs the
//! reference on awkward sizes up and down, by size and by scale factor;
//! hand-checked values; past a lowered binding limit; errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::interpolate::{interpolate2d, interpolate2d_backward, Interpolation, Resize};
use wgrad_gpu_core::testing::assert_close;
use wgrad_gpu_core::{Buffer, Device};

const MODES: [Interpolation; 3] = [
    Interpolation::Nearest,
    Interpolation::Bilinear { align_corners: false },
    Interpolation::Bilinear { align_corners: true },
];

/// (input shape, resize) for every mode: up and down by sizes that do not
/// divide, a 1-pixel input and output, one axis kept, more threads than a
/// workgroup, and fractional scale factors (which set PyTorch's source
/// steps, not the sizes').
fn cases(mode: Interpolation) -> Vec<(Vec<usize>, Resize)> {
    let to = |shape: &[usize], size| (shape.to_vec(), Resize::to(size, mode));
    let by = |shape: &[usize], f| (shape.to_vec(), Resize::by((shape[2], shape[3]), f, mode).unwrap());
    vec![
        to(&[2, 3, 5, 7], (11, 13)),
        to(&[1, 2, 9, 8], (4, 3)),
        to(&[2, 1, 1, 1], (3, 5)),
        to(&[1, 3, 6, 5], (1, 1)),
        to(&[2, 2, 7, 7], (7, 12)),
        to(&[2, 4, 17, 19], (33, 40)),
        by(&[1, 2, 5, 6], (2.0, 2.0)),
        by(&[2, 3, 7, 5], (1.7, 0.6)),
        by(&[1, 1, 3, 4], (2.5, 1.25)),
        // Factors that give the same size and double it (nearest then
        // copies and halves indices, as PyTorch's nearest_idx does).
        by(&[1, 2, 3, 10], (1.2, 2.05)),
    ]
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Forward and backward of every case on `a` and `b`: the same shapes, values
/// within `tol`.
fn compare(a: &Device, b: &Device, tol: f32) {
    let mut r = rng(31);
    for mode in MODES {
        for (shape, resize) in cases(mode) {
            let what = format!("{shape:?} {resize:?} on {} vs {}", a.name(), b.name());
            let x = r.vec(numel(&shape), -2.0, 2.0);
            let (xa, xb) = (Buffer::from_f32(a, &x).unwrap(), Buffer::from_f32(b, &x).unwrap());
            let (ya, sa) = interpolate2d(&xa, &shape, resize).unwrap();
            let (yb, sb) = interpolate2d(&xb, &shape, resize).unwrap();
            assert_eq!(sa, sb, "{what}: shapes");
            assert_eq!(sa[2..], [resize.size.0, resize.size.1], "{what}: output size");
            let n = numel(&sa);
            assert_close(&what, &f32s_of(&ya, n), &f32s_of(&yb, n), tol, tol);
            let g = r.vec(n, -1.0, 1.0);
            let (ga, gb) = (Buffer::from_f32(a, &g).unwrap(), Buffer::from_f32(b, &g).unwrap());
            let da = interpolate2d_backward(&ga, &shape, resize).unwrap();
            let db = interpolate2d_backward(&gb, &shape, resize).unwrap();
            let m = numel(&shape);
            assert_close(&format!("{what}: backward"), &f32s_of(&da, m), &f32s_of(&db, m), tol, tol);
        }
    }
}

#[test]
fn interpolation_matches_the_twin() {
    let Some((g, c)) = devices("interpolation_matches_the_twin") else { return };
    compare(&g, &c, 1e-6);
}

#[test]
fn fast_cpu_interpolation_is_the_reference() {
    compare(&Device::cpu(), &Device::cpu_reference(), 0.0);
}

/// Each input pixel's gradient is what the forward's weights give it:
/// backward(g) · x = g · forward(x) for every x and g (the adjoint), on the
/// reference, so the gather can not miss or double a reader.
#[test]
fn backward_is_the_forwards_adjoint() {
    let dev = Device::cpu_reference();
    let mut r = rng(32);
    for mode in MODES {
        for (shape, resize) in cases(mode) {
            let x = r.vec(numel(&shape), -1.0, 1.0);
            let (y, out) = interpolate2d(&Buffer::from_f32(&dev, &x).unwrap(), &shape, resize).unwrap();
            let g = r.vec(numel(&out), -1.0, 1.0);
            let dx = interpolate2d_backward(&Buffer::from_f32(&dev, &g).unwrap(), &shape, resize).unwrap();
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>();
            let (lhs, rhs) = (dot(&f32s_of(&dx, x.len()), &x), dot(&g, &f32s_of(&y, g.len())));
            assert!((lhs - rhs).abs() < 1e-4 * (1.0 + rhs.abs()), "{shape:?} {resize:?}: {lhs} vs {rhs}");
        }
    }
}

#[test]
fn values_are_pytorchs() {
    let mut devs = vec![Device::cpu(), Device::cpu_reference()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip("interpolation values_are_pytorchs"));
    for dev in &devs {
        let x = Buffer::from_f32(dev, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let shape = [1, 1, 2, 2];
        let run = |size: usize, mode| {
            f32s_of(&interpolate2d(&x, &shape, Resize::to((size, size), mode)).unwrap().0, size * size)
        };
        // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=..., mode=...)
        assert_eq!(run(3, Interpolation::Nearest), [1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 3.0, 3.0, 4.0], "{}", dev.name());
        let want = [1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0];
        assert_eq!(run(3, Interpolation::Bilinear { align_corners: true }), want, "{}", dev.name());
        let want = [1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0];
        assert_eq!(run(4, Interpolation::Bilinear { align_corners: false }), want, "{}", dev.name());
        // Nearest 2x upsampling's gradient sums each 2 x 2 block.
        let g = Buffer::from_f32(dev, &(0..16).map(|v| v as f32).collect::<Vec<_>>()).unwrap();
        let dx = interpolate2d_backward(&g, &shape, Resize::to((4, 4), Interpolation::Nearest)).unwrap();
        assert_eq!(f32s_of(&dx, 4), [10.0, 18.0, 42.0, 50.0], "{}", dev.name());
    }
}

#[test]
fn past_a_lowered_binding_limit_planes_run_in_chunks() {
    let Some(g) = limited_gpu("interpolation past_a_lowered_binding_limit", 2048) else { return };
    let c = Device::cpu_reference();
    let mut r = rng(33);
    // 12 planes of 9 x 10 in (360 B each), 13 x 17 out (884 B): many chunks.
    let shape = [3, 4, 9, 10];
    for mode in MODES {
        let resize = Resize::to((13, 17), mode);
        let x = r.vec(numel(&shape), -1.0, 1.0);
        let launches = g.stats().dispatches;
        let (yg, _) = interpolate2d(&Buffer::from_f32(&g, &x).unwrap(), &shape, resize).unwrap();
        assert!(g.stats().dispatches - launches >= 6, "{mode:?}: chunks of planes");
        let (yc, out) = interpolate2d(&Buffer::from_f32(&c, &x).unwrap(), &shape, resize).unwrap();
        let n = numel(&out);
        assert_close(&format!("{mode:?}"), &f32s_of(&yg, n), &f32s_of(&yc, n), 1e-6, 1e-6);
        let gr = r.vec(n, -1.0, 1.0);
        let dg = interpolate2d_backward(&Buffer::from_f32(&g, &gr).unwrap(), &shape, resize).unwrap();
        let dc = interpolate2d_backward(&Buffer::from_f32(&c, &gr).unwrap(), &shape, resize).unwrap();
        let m = numel(&shape);
        assert_close(&format!("{mode:?}: backward"), &f32s_of(&dg, m), &f32s_of(&dc, m), 1e-6, 1e-6);
    }
}

#[test]
fn bad_arguments_are_errors() {
    let dev = Device::cpu();
    let x = Buffer::from_f32(&dev, &[0.0; 8]).unwrap();
    let msg = |e: wgrad_gpu_core::Error| e.to_string();
    let nearest = Interpolation::Nearest;
    let e = msg(interpolate2d(&x, &[2, 2, 2], Resize::to((4, 4), nearest)).unwrap_err());
    assert!(e.contains("interpolate2d") && e.contains("[2, 2, 2]"), "{e}");
    let e = msg(interpolate2d(&x, &[1, 2, 2, 2], Resize::to((0, 4), nearest)).unwrap_err());
    assert!(e.contains("empty"), "{e}");
    let e = msg(Resize::by((2, 2), (0.0, 1.0), nearest).unwrap_err());
    assert!(e.contains("scale factors"), "{e}");
    assert!(Resize::by((2, 2), (f64::NAN, 1.0), nearest).is_err());
    // A scale that rounds the output to nothing.
    let e = msg(interpolate2d(&x, &[1, 2, 2, 2], Resize::by((2, 2), (0.4, 1.0), nearest).unwrap()).unwrap_err());
    assert!(e.contains("empty"), "{e}");
    let e = msg(interpolate2d(&x, &[1, 2, 2, 4], Resize::to((4, 4), nearest)).unwrap_err());
    assert!(e.contains("input"), "{e}");
}

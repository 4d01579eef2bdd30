//! GPU kernels vs their CPU twins: fill, arange, unary, binary with broadcasting, where.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::binary::{binary, where_select, BinaryOp};
use wgrad_gpu_core::ops::fill::{arange, fill};
use wgrad_gpu_core::ops::unary::{unary, unary_grad, Domain, UnaryOp};
use wgrad_gpu_core::Layout;

#[test]
fn fill_and_arange_match() {
    let Some((g, c)) = devices("fill_and_arange_match") else { return };
    for &n in SIZES {
        same("fill", &fill(&g, n, -2.5).unwrap(), &fill(&c, n, -2.5).unwrap(), n, 0.0, 0.0);
        same("arange", &arange(&g, n, 3.0, 0.5).unwrap(), &arange(&c, n, 3.0, 0.5).unwrap(), n, 1e-6, 1e-6);
    }
    assert_eq!(arange(&c, 4, 1.0, 2.0).unwrap().to_f32().unwrap(), vec![1.0, 3.0, 5.0, 7.0]);
}

/// Every op of the unary table (its example arguments), plus a negative
/// fractional power.
fn all_unary() -> Vec<UnaryOp> {
    UnaryOp::EXAMPLES.iter().copied().chain([UnaryOp::Powf(-0.5)]).collect()
}

#[test]
fn every_unary_op_matches() {
    let Some((g, c)) = devices("every_unary_op_matches") else { return };
    let mut r = rng(1);
    for &n in SIZES {
        let mut data = r.vec(n, -6.0, 6.0);
        if n > 2 {
            data[0] = 0.0;
            data[1] = 40.0; // overflow territory for exp-based activations
        }
        let positive: Vec<f32> = data.iter().map(|v| v.abs() + 0.1).collect();
        for op in all_unary() {
            let input = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Powf(-0.5)) {
                &positive
            } else {
                &data
            };
            let (xg, xc) = both(&g, &c, input);
            let what = format!("{op:?} n={n}");
            let (yg, yc) = (unary(op, &xg, n).unwrap(), unary(op, &xc, n).unwrap());
            same(&what, &yg, &yc, n, 2e-5, 2e-5);
        }
    }
}

#[test]
fn every_unary_gradient_matches_twin_and_finite_differences() {
    let Some((g, c)) = devices("every_unary_gradient_matches_twin_and_finite_differences") else { return };
    let mut r = rng(5);
    let n = 33;
    // Keep away from kinks (0 for relu/abs/sign, clamp bounds) where the derivative jumps.
    let data: Vec<f32> = r.vec(n, -3.0, 3.0).iter().map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v }).collect();
    let up = r.vec(n, -1.0, 1.0);
    for op in all_unary() {
        let input: Vec<f32> = if op.domain() == Domain::Positive || op == UnaryOp::Powf(-0.5) {
            data.iter().map(|v| v.abs() + 0.5).collect()
        } else if let UnaryOp::Clamp(lo, hi) = op {
            data.iter().map(|v| if (v - lo).abs() < 0.05 || (v - hi).abs() < 0.05 { v + 0.1 } else { *v }).collect()
        } else {
            data.clone()
        };
        let (xg, xc) = both(&g, &c, &input);
        let (ug, uc) = both(&g, &c, &up);
        let (yg, yc) = (unary(op, &xg, n).unwrap(), unary(op, &xc, n).unwrap());
        let dg = unary_grad(op, &xg, &yg, &ug, n).unwrap();
        let dc = unary_grad(op, &xc, &yc, &uc, n).unwrap();
        same(&format!("{op:?} grad"), &dg, &dc, n, 1e-5, 1e-5);
        // The twin's derivative against central differences in f64 of the twin's f.
        let dcv = dc.to_f32().unwrap();
        for i in 0..n {
            let (x, h) = (input[i], 1e-3f32);
            let fd = (op.apply(x + h) as f64 - op.apply(x - h) as f64) / (2.0 * h as f64) * up[i] as f64;
            let tol = 2e-3 * (1.0 + fd.abs());
            assert!((dcv[i] as f64 - fd).abs() < tol, "{op:?} at x={x}: analytic {} vs numeric {fd}", dcv[i]);
        }
    }
}

#[test]
fn unary_reference_values() {
    // Values from PyTorch (torch.nn.functional, float64 then rounded).
    let c = wgrad_gpu_core::Device::cpu_reference();
    let x = wgrad_gpu_core::Buffer::from_f32(&c, &[-1.0, 0.5, 2.0]).unwrap();
    let got = |op| unary(op, &x, 3).unwrap().to_f32().unwrap();
    wgrad_gpu_core::testing::assert_close(
        "gelu",
        &got(UnaryOp::Gelu),
        &[-0.158_655_25, 0.345_731_23, 1.954_499_7],
        1e-6,
        1e-6,
    );
    wgrad_gpu_core::testing::assert_close(
        "gelu_tanh",
        &got(UnaryOp::GeluTanh),
        &[-0.158_808, 0.345_714, 1.954_598],
        1e-5,
        1e-6,
    );
    wgrad_gpu_core::testing::assert_close(
        "selu",
        &got(UnaryOp::Selu),
        &[-1.111_330_7, 0.525_350_5, 2.101_402],
        1e-6,
        1e-6,
    );
    wgrad_gpu_core::testing::assert_close(
        "mish",
        &got(UnaryOp::Mish),
        &[-0.303_401_46, 0.375_245_2, 1.943_959],
        1e-6,
        1e-6,
    );
}

/// An infinite or NaN upstream gradient, against PyTorch 2.x's `backward`
/// at x = -2, -0, 0, 0.5, 3, NaN: the gated ops (ReLU, clamp, sign) pass
/// nothing where they are flat, as PyTorch's masks do (inf · 0 would be NaN
/// there), and ReLU passes it at a NaN output; the others multiply (|x|'s
/// sign(0) · inf is NaN in PyTorch too). ReLU and clamp keep NaN and -0.0
/// as PyTorch does (`x < 0 ? 0 : x`). On both CPU backends, and on the GPU
/// unfused and fused into a following op.
#[test]
fn gradients_of_an_infinite_or_nan_upstream_gradient_are_pytorchs() {
    use wgrad_gpu_core::testing::fresh_gpu_or_skip;
    let test = "gradients_of_an_infinite_or_nan_upstream_gradient_are_pytorchs";
    let nan = f32::NAN;
    let xs = [-2.0f32, -0.0, 0.0, 0.5, 3.0, nan];
    // PyTorch's gradient at xs for an upstream gradient g.
    type Want = fn(f32) -> [f32; 6];
    let cases: [(UnaryOp, Want); 6] = [
        (UnaryOp::Relu, |g| [0.0, 0.0, 0.0, g, g, g]),
        (UnaryOp::Clamp(-0.5, 0.75), |g| [0.0, g, g, g, 0.0, 0.0]),
        (UnaryOp::Sign, |_| [0.0; 6]),
        (UnaryOp::LeakyRelu(0.01), |g| [g; 6]),
        (UnaryOp::Abs, |g| [-g, f32::NAN, f32::NAN, g, g, f32::NAN]),
        (UnaryOp::Exp, |g| [g, g, g, g, g, f32::NAN]),
    ];
    // PyTorch's forward values, bit for bit (-0.0 included).
    let forward = [
        (UnaryOp::Relu, [0.0, -0.0, 0.0, 0.5, 3.0, nan]),
        (UnaryOp::Clamp(-0.5, 0.75), [-0.5, -0.0, 0.0, 0.5, 0.75, nan]),
    ];
    let same = |got: f32, want: f32| if want.is_nan() { got.is_nan() } else { got.to_bits() == want.to_bits() };
    let mut devices =
        vec![("CPU reference", wgrad_gpu_core::Device::cpu_reference()), ("fast CPU", wgrad_gpu_core::Device::cpu())];
    for (what, fuse) in [("GPU", false), ("GPU fused", true)] {
        let Some(gpu) = fresh_gpu_or_skip(test) else { break };
        gpu.set_fusion(fuse).unwrap();
        devices.push((what, gpu));
    }
    let (n, dense) = (xs.len(), Layout::contiguous(&[xs.len()]));
    for (device, dev) in &devices {
        let x = wgrad_gpu_core::Buffer::from_f32(dev, &xs).unwrap();
        let zero = wgrad_gpu_core::Buffer::from_f32(dev, &[0.0; 6]).unwrap();
        for (op, want) in forward {
            // `+ 0` would turn -0.0 into 0: the op's own result is read.
            let y = unary(op, &x, n).unwrap().to_f32().unwrap();
            for ((x, got), want) in xs.iter().zip(y).zip(want) {
                assert!(same(got, want), "{device}: {op:?}({x}) = {got}, PyTorch {want}");
            }
        }
        for (op, want) in cases {
            for g in [f32::INFINITY, f32::NEG_INFINITY, nan] {
                let up = wgrad_gpu_core::Buffer::from_f32(dev, &[g; 6]).unwrap();
                let y = unary(op, &x, n).unwrap();
                // `+ 0` gives the fuser an op to merge the gradient into.
                let dx = unary_grad(op, &x, &y, &up, n).unwrap();
                let dx = binary(BinaryOp::Add, &dx, &dense, &zero, &dense).unwrap().0.to_f32().unwrap();
                for ((x, got), want) in xs.iter().zip(dx).zip(want(g)) {
                    let ok = if want.is_nan() { got.is_nan() } else { got == want };
                    assert!(ok, "{device}: {op:?} at x = {x}, upstream {g}: {got}, PyTorch {want}");
                }
            }
        }
    }
}

#[test]
fn one_op_over_more_than_65535_workgroups() {
    // 65,535 * 256 + 5 elements: the launch must fold its grid, not fail.
    let Some((g, _)) = devices("one_op_over_more_than_65535_workgroups") else { return };
    let n = 65_535 * 256 + 5;
    let x = arange(&g, n, 0.0, 1.0).unwrap();
    let y = unary(UnaryOp::Neg, &x, n).unwrap().to_f32().unwrap();
    for i in [0, 1, 65_535 * 256 - 1, 65_535 * 256, n - 1] {
        assert_eq!(y[i], -(i as f32), "element {i}");
    }
}

/// (shape a, shape b): same shape, broadcast on each side, scalars, zero-size, rank 5.
const BROADCASTS: &[(&[usize], &[usize])] = &[
    (&[7], &[7]),
    (&[1023], &[1]),
    (&[1], &[33]),
    (&[3, 1, 5], &[4, 1]),
    (&[1, 4, 1], &[3, 1, 5]),
    (&[], &[2, 3]),
    (&[0, 3], &[1, 3]),
    (&[2, 1, 3, 1, 2], &[5, 1, 1, 1]),
    // Innermost dims that are multiples of 4 take the four-per-thread path:
    // both contiguous, a row broadcast (a bias), a column broadcast, a scalar.
    (&[3, 8], &[3, 8]),
    (&[5, 12], &[12]),
    (&[6, 4], &[6, 1]),
    (&[1], &[2, 20]),
];

#[test]
fn every_binary_op_broadcasts_like_the_twin() {
    let Some((g, c)) = devices("every_binary_op_broadcasts_like_the_twin") else { return };
    let mut r = rng(2);
    for &(sa, sb) in BROADCASTS {
        let (la, lb) = (Layout::contiguous(sa), Layout::contiguous(sb));
        // Small integers so that Eq/Pow see exact ties and negative bases.
        let da: Vec<f32> = (0..la.numel()).map(|_| r.below(7) as f32 - 3.0).collect();
        let db: Vec<f32> = (0..lb.numel()).map(|_| r.below(5) as f32 - 2.0).collect();
        let (ag, ac) = both(&g, &c, &da);
        let (bg, bc) = both(&g, &c, &db);
        for &op in BinaryOp::ALL {
            let (zg, shape) = binary(op, &ag, &la, &bg, &lb).unwrap();
            let (zc, shape_c) = binary(op, &ac, &la, &bc, &lb).unwrap();
            assert_eq!(shape, shape_c);
            let n = shape.iter().product();
            same(&format!("{op:?} {sa:?} {sb:?}"), &zg, &zc, n, 1e-6, 1e-6);
        }
    }
}

#[test]
fn binary_reads_strided_views() {
    // a transposed view and a narrowed view, no copies.
    let Some((g, c)) = devices("binary_reads_strided_views") else { return };
    let mut r = rng(3);
    let data = r.vec(6 * 9, -1.0, 1.0);
    let (xg, xc) = both(&g, &c, &data);
    let base = Layout::contiguous(&[6, 9]);
    let t = base.permute(&[1, 0]).unwrap().narrow(0, 2, 5).unwrap(); // [5, 6]
    let s = base.narrow(1, 3, 6).unwrap().narrow(0, 1, 5).unwrap(); // [5, 6]
    let (zg, _) = binary(BinaryOp::Sub, &xg, &t, &xg, &s).unwrap();
    let (zc, _) = binary(BinaryOp::Sub, &xc, &t, &xc, &s).unwrap();
    same("strided sub", &zg, &zc, 30, 0.0, 0.0);
    // and the twin itself against a hand computation
    let z = zc.to_f32().unwrap();
    assert_eq!(z[0], data[2] - data[9 + 3]);
}

#[test]
fn binary_shape_errors_name_both_shapes() {
    let c = wgrad_gpu_core::Device::cpu_reference();
    let a = wgrad_gpu_core::Buffer::from_f32(&c, &[0.0; 6]).unwrap();
    let err = binary(BinaryOp::Add, &a, &Layout::contiguous(&[2, 3]), &a, &Layout::contiguous(&[3, 2])).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[3, 2]"), "{msg}");
}

#[test]
fn where_selects_with_broadcasting() {
    let Some((g, c)) = devices("where_selects_with_broadcasting") else { return };
    let mut r = rng(4);
    let (lc, la, lb) = (Layout::contiguous(&[4, 1]), Layout::contiguous(&[1, 33]), Layout::contiguous(&[]));
    let dc: Vec<f32> = (0..4).map(|i| (i % 2) as f32).collect();
    let (cg, cc) = both(&g, &c, &dc);
    let (ag, ac) = both(&g, &c, &r.vec(33, -1.0, 1.0));
    let (bg, bc) = both(&g, &c, &[7.0]);
    let (zg, shape) = where_select(&cg, &lc, &ag, &la, &bg, &lb).unwrap();
    let (zc, _) = where_select(&cc, &lc, &ac, &la, &bc, &lb).unwrap();
    assert_eq!(shape, vec![4, 33]);
    same("where", &zg, &zc, 4 * 33, 0.0, 0.0);
    assert_eq!(zc.to_f32().unwrap()[0], 7.0);
}

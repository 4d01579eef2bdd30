//! Convolution: the implicit-GEMM forward, weight gradient and input
//! gradient on both matmul kernel families vs their CPU twins, the twins
//! against the explicit im2col / col2im lowering; im2col / col2im GPU
//! kernels vs CPU twins, the twins against a direct convolution, and
//! col2im as im2col's adjoint.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::conv::{
    col2im, conv2d, conv2d_input_grad, conv2d_weight_grad, im2col, ConvGeometry, ConvOptions,
};
use wgrad_gpu_core::ops::matmul::{matmul, Epilogue, MatmulKernel};
use wgrad_gpu_core::ops::reduce::{reduce, ReduceOp};
use wgrad_gpu_core::{Buffer, Device, Layout};

/// Geometries chosen to hit every edge of the index arithmetic.
fn awkward() -> Vec<(&'static str, ConvGeometry)> {
    let base = ConvGeometry::new(2, 4, (7, 6), (3, 3));
    vec![
        ("3x3 pad 1", ConvGeometry { pad_top: 1, pad_bottom: 1, pad_left: 1, pad_right: 1, ..base }),
        (
            "stride 2, odd input",
            ConvGeometry { in_h: 9, in_w: 7, stride_h: 2, stride_w: 2, pad_top: 1, pad_left: 1, ..base },
        ),
        ("dilation 2", ConvGeometry { dilation_h: 2, dilation_w: 2, pad_top: 2, pad_bottom: 2, ..base }),
        ("groups 4", ConvGeometry { channels: 8, groups: 4, pad_left: 1, pad_right: 1, ..base }),
        ("depthwise", ConvGeometry { channels: 5, groups: 5, stride_w: 2, pad_top: 1, pad_bottom: 1, ..base }),
        (
            "asymmetric padding",
            ConvGeometry { kernel_h: 2, kernel_w: 4, pad_top: 0, pad_bottom: 3, pad_left: 2, pad_right: 1, ..base },
        ),
        ("batch 1", ConvGeometry { batch: 1, channels: 3, stride_h: 3, pad_top: 2, pad_right: 2, ..base }),
        ("1x1 kernel", ConvGeometry { kernel_h: 1, kernel_w: 1, stride_h: 2, ..base }),
        ("kernel = input size", ConvGeometry { kernel_h: 7, kernel_w: 6, ..base }),
        (
            "stride > kernel with dilation",
            ConvGeometry { stride_h: 4, stride_w: 3, dilation_h: 3, kernel_w: 2, pad_top: 1, pad_left: 2, ..base },
        ),
        ("empty batch", ConvGeometry { batch: 0, ..base }),
    ]
}

/// The implicit-GEMM cases: [`awkward`] plus the channel counts, batch sizes
/// and shapes of real networks' edges (C = 1, 3, 16, 17, 33; N = 1, 3;
/// H ≠ W; odd sizes; stride 2 with 1x1 kernels), each with an output
/// channel count (a multiple of the groups).
fn implicit_cases() -> Vec<(String, ConvGeometry, usize)> {
    let mut v: Vec<(String, ConvGeometry, usize)> =
        awkward().into_iter().map(|(n, g)| (n.to_string(), g, g.groups * (2 + g.groups % 3))).collect();
    for (c, oc) in [(1, 16), (3, 16), (16, 16), (17, 5), (33, 32)] {
        v.push((format!("C={c} OC={oc} 3x3 pad 1 N=3 9x11"), pad1(ConvGeometry::new(3, c, (9, 11), (3, 3))), oc));
    }
    let mut s2 = pad1(ConvGeometry::new(1, 16, (8, 8), (3, 3)));
    s2.stride_h = 2;
    s2.stride_w = 2;
    v.push(("resnet downsample 3x3 s2 16->32".into(), s2, 32));
    let mut sc = ConvGeometry::new(3, 16, (8, 8), (1, 1));
    sc.stride_h = 2;
    sc.stride_w = 2;
    v.push(("1x1 s2 shortcut 16->32".into(), sc, 32));
    let mut d = ConvGeometry::new(1, 3, (13, 10), (3, 2));
    (d.dilation_h, d.dilation_w, d.pad_top, d.pad_bottom, d.pad_left, d.pad_right) = (2, 2, 2, 1, 0, 3);
    (d.stride_h, d.stride_w) = (2, 3);
    v.push(("dilation 2 stride (2,3) asymmetric pad".into(), d, 7));
    // Several 64 x 64 output tiles along both product dims, and K past 64.
    v.push(("wide 70->65 13x12".into(), pad1(ConvGeometry::new(2, 70, (13, 12), (3, 3))), 65));
    // Rows of a multiple of 4 pixels (where vec4 loads of B would start
    // paying), with padding, dilation and strides at their edges.
    v.push(("row4 C=5 OC=6 5x8 pad 1".into(), pad1(ConvGeometry::new(3, 5, (5, 8), (3, 3))), 6));
    v.push(("row4 C=1 OC=16 8x8 pad 1".into(), pad1(ConvGeometry::new(1, 1, (8, 8), (3, 3))), 16));
    v.push(("row4 1x1 16->8 4x4".into(), ConvGeometry::new(1, 16, (4, 4), (1, 1)), 8));
    let mut r = ConvGeometry::new(2, 3, (7, 12), (3, 3));
    (r.dilation_h, r.dilation_w, r.pad_top, r.pad_bottom, r.pad_left, r.pad_right) = (1, 2, 0, 2, 3, 1);
    v.push(("row4 dilation (1,2) asymmetric pad".into(), r, 5));
    let mut r = pad1(ConvGeometry::new(2, 4, (10, 8), (3, 3)));
    r.stride_h = 2;
    v.push(("row4 stride (2,1)".into(), r, 4));
    let mut r = ConvGeometry::new(1, 2, (6, 8), (2, 5));
    (r.pad_left, r.pad_right) = (4, 0);
    v.push(("row4 pad left 4 (whole vec4 of padding)".into(), r, 3));
    v
}

/// `g` with one pixel of zero padding on every side.
fn pad1(g: ConvGeometry) -> ConvGeometry {
    ConvGeometry { pad_top: 1, pad_bottom: 1, pad_left: 1, pad_right: 1, ..g }
}

/// The matmul kernel families to force: both where the adapter can run them.
fn kernels(gpu: &Device) -> Vec<MatmulKernel> {
    if gpu.name().contains("llvmpipe") {
        assert!(MatmulKernel::Subgroup.runs_on(gpu), "lavapipe runs the subgroup kernel");
    }
    [MatmulKernel::Tiled, MatmulKernel::Subgroup].into_iter().filter(|k| k.runs_on(gpu)).collect()
}

/// Sizes of a case: input, weight, output.
fn sizes(g: &ConvGeometry, oc: usize) -> (usize, usize, usize) {
    (n_input(g), oc * g.col_rows(), g.batch * oc * g.out_h() * g.out_w())
}

/// Tolerance for sums of `k` products of values in [-1, 1), as parity_matmul.
fn atol(k: usize) -> f32 {
    f32::EPSILON * k.max(1) as f32
}

#[test]
fn implicit_conv_forward_matches_twin_on_both_kernels() {
    let Some((gpu, cpu)) = devices("implicit_conv_forward_matches_twin_on_both_kernels") else { return };
    for kernel in kernels(&gpu) {
        for (k, (name, geo, oc)) in implicit_cases().into_iter().enumerate() {
            let (nx, nw, ny) = sizes(&geo, oc);
            let (xg, xc) = both(&gpu, &cpu, &rng(200 + k as u64).vec(nx, -1.0, 1.0));
            let (wg, wc) = both(&gpu, &cpu, &rng(300 + k as u64).vec(nw, -1.0, 1.0));
            let yg = conv2d(&xg, &wg, oc, &geo, &ConvOptions::kernel(kernel)).unwrap();
            let yc = conv2d(&xc, &wc, oc, &geo, &ConvOptions::default()).unwrap();
            same(&format!("{kernel:?} conv2d {name}"), &yg, &yc, ny, 1e-5, atol(geo.col_rows()));
        }
    }
}

#[test]
fn implicit_conv_input_grad_matches_twin_on_both_kernels() {
    let Some((gpu, cpu)) = devices("implicit_conv_input_grad_matches_twin_on_both_kernels") else { return };
    for kernel in kernels(&gpu) {
        for (k, (name, geo, oc)) in implicit_cases().into_iter().enumerate() {
            let (nx, nw, ny) = sizes(&geo, oc);
            let (gg, gc) = both(&gpu, &cpu, &rng(400 + k as u64).vec(ny, -1.0, 1.0));
            let (wg, wc) = both(&gpu, &cpu, &rng(500 + k as u64).vec(nw, -1.0, 1.0));
            let dg = conv2d_input_grad(&gg, &wg, oc, &geo, &ConvOptions::kernel(kernel)).unwrap();
            let dc = conv2d_input_grad(&gc, &wc, oc, &geo, &ConvOptions::default()).unwrap();
            let depth = oc / geo.groups * geo.kernel_h * geo.kernel_w;
            same(&format!("{kernel:?} conv2d_input_grad {name}"), &dg, &dc, nx, 1e-5, atol(depth));
        }
    }
}

#[test]
fn implicit_conv_weight_grad_matches_twin_on_both_kernels() {
    let Some((gpu, cpu)) = devices("implicit_conv_weight_grad_matches_twin_on_both_kernels") else { return };
    for kernel in kernels(&gpu) {
        for (k, (name, geo, oc)) in implicit_cases().into_iter().enumerate() {
            let (nx, nw, ny) = sizes(&geo, oc);
            let (gg, gc) = both(&gpu, &cpu, &rng(600 + k as u64).vec(ny, -1.0, 1.0));
            let (xg, xc) = both(&gpu, &cpu, &rng(700 + k as u64).vec(nx, -1.0, 1.0));
            let dg = conv2d_weight_grad(&gg, &xg, oc, &geo, &ConvOptions::kernel(kernel)).unwrap();
            let dc = conv2d_weight_grad(&gc, &xc, oc, &geo, &ConvOptions::default()).unwrap();
            let depth = geo.batch * geo.out_h() * geo.out_w();
            same(&format!("{kernel:?} conv2d_weight_grad {name}"), &dg, &dc, nw, 1e-5, atol(depth));
        }
    }
}

/// The CPU twins of the implicit ops against the explicit lowering they
/// replace: `W @ im2col(x)`, `col2im(Wᵀ @ dY)` and `Σ_n dY[n] @ im2col(x)[n]ᵀ`.
#[test]
fn implicit_twins_equal_the_im2col_lowering() {
    let cpu = Device::cpu_reference();
    for (k, (name, geo, oc)) in implicit_cases().into_iter().enumerate() {
        let (nx, nw, ny) = sizes(&geo, oc);
        let (groups, kk, l) = (geo.groups, geo.col_rows(), geo.out_h() * geo.out_w());
        let (ocg, cg, taps) = (oc / groups, geo.group_channels(), geo.kernel_h * geo.kernel_w);
        let up = |v: Vec<f32>| Buffer::from_f32(&cpu, &v).unwrap();
        let x = up(rng(800 + k as u64).vec(nx, -1.0, 1.0));
        let w = up(rng(900 + k as u64).vec(nw, -1.0, 1.0));
        let gy = up(rng(1000 + k as u64).vec(ny, -1.0, 1.0));
        let cols = im2col(&x, &geo).unwrap();
        let cols_l = Layout::contiguous(&geo.cols_shape());
        let w_l = Layout::contiguous(&[1, groups, ocg, kk]);
        let check = |what: &str, got: &Buffer, want: &Buffer, n: usize, depth: usize| {
            let (g, w) = (got.to_f32().unwrap(), want.to_f32().unwrap());
            wgrad_gpu_core::testing::assert_close(&format!("{what} {name}"), &g[..n], &w[..n], 1e-5, atol(depth));
        };

        let (y, _) = matmul(&w, &w_l, &cols, &cols_l).unwrap();
        check("forward", &conv2d(&x, &w, oc, &geo, &ConvOptions::default()).unwrap(), &y, ny, kk);

        let gy_l = Layout::contiguous(&[geo.batch, groups, ocg, l]);
        let (dcols, _) = matmul(&w, &w_l.permute(&[0, 1, 3, 2]).unwrap(), &gy, &gy_l).unwrap();
        let dx = col2im(&dcols, &geo).unwrap();
        check(
            "input grad",
            &conv2d_input_grad(&gy, &w, oc, &geo, &ConvOptions::default()).unwrap(),
            &dx,
            nx,
            ocg * taps,
        );

        let (per_image, _) = matmul(&gy, &gy_l, &cols, &cols_l.permute(&[0, 1, 3, 2]).unwrap()).unwrap();
        let dw = if geo.batch == 0 {
            Buffer::from_f32(&cpu, &vec![0.0; nw]).unwrap()
        } else {
            reduce(ReduceOp::Sum, &per_image, &Layout::contiguous(&[geo.batch, nw]), &[0], false).unwrap().0
        };
        check(
            "weight grad",
            &conv2d_weight_grad(&gy, &x, oc, &geo, &ConvOptions::default()).unwrap(),
            &dw,
            nw,
            geo.batch * l,
        );
        let _ = cg;
    }
}

/// A batch whose per-image weight gradients exceed the chunk budget is
/// summed chunk by chunk, with the same result as the whole batch at once.
#[test]
fn weight_grad_of_a_large_batch_runs_in_chunks() {
    let Some((gpu, cpu)) = devices("weight_grad_of_a_large_batch_runs_in_chunks") else { return };
    // 256 x 256 x 9 weights = 2.25 MiB per image: 64 MiB hold 28 images, so
    // a batch of 30 is two chunks (28 + 2).
    let geo = ConvGeometry {
        pad_top: 1,
        pad_bottom: 1,
        pad_left: 1,
        pad_right: 1,
        ..ConvGeometry::new(30, 256, (2, 3), (3, 3))
    };
    let oc = 256;
    let (nx, nw, ny) = sizes(&geo, oc);
    let (gg, gc) = both(&gpu, &cpu, &rng(1100).vec(ny, -1.0, 1.0));
    let (xg, xc) = both(&gpu, &cpu, &rng(1101).vec(nx, -1.0, 1.0));
    let dg = conv2d_weight_grad(&gg, &xg, oc, &geo, &ConvOptions::default()).unwrap();
    let dc = conv2d_weight_grad(&gc, &xc, oc, &geo, &ConvOptions::default()).unwrap();
    same("chunked weight grad", &dg, &dc, nw, 1e-5, atol(geo.batch * 6));
    // The twin's chunked sum against one image at a time.
    let mut want = vec![0.0f32; nw];
    let (x, gy) = (xc.to_f32().unwrap(), gc.to_f32().unwrap());
    for n in 0..geo.batch {
        let one = ConvGeometry { batch: 1, ..geo };
        let xi = Buffer::from_f32(&cpu, &x[n * nx / 30..(n + 1) * nx / 30]).unwrap();
        let gi = Buffer::from_f32(&cpu, &gy[n * ny / 30..(n + 1) * ny / 30]).unwrap();
        for (a, b) in want
            .iter_mut()
            .zip(conv2d_weight_grad(&gi, &xi, oc, &one, &ConvOptions::default()).unwrap().to_f32().unwrap())
        {
            *a += b;
        }
    }
    wgrad_gpu_core::testing::assert_close("chunks vs images", &dc.to_f32().unwrap()[..nw], &want, 1e-4, atol(180));
}

/// The implicit ops reject what the explicit ones reject, naming the op.
#[test]
fn implicit_ops_check_their_operands() {
    let cpu = Device::cpu_reference();
    let geo = ConvGeometry::new(1, 2, (4, 4), (3, 3));
    let x = Buffer::from_f32(&cpu, &[0.0; 32]).unwrap();
    let w = Buffer::from_f32(&cpu, &[0.0; 36]).unwrap();
    assert!(conv2d(&x, &w, 2, &geo, &ConvOptions::default()).is_ok());
    let msg = conv2d(&x, &w, 3, &geo, &ConvOptions::default()).unwrap_err().to_string();
    assert!(msg.starts_with("conv2d") && msg.contains("weight"), "{msg}");
    let msg = conv2d(&x, &w, 3, &ConvGeometry { groups: 3, ..geo }, &ConvOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("conv2d") && msg.contains("divisible"), "{msg}");
    let msg = conv2d(&x, &w, 3, &ConvGeometry { groups: 2, ..geo }, &ConvOptions::default()).unwrap_err().to_string();
    assert!(msg.contains("conv2d") && msg.contains("divisible"), "{msg}");
    let msg = conv2d_input_grad(&x, &w, 2, &ConvGeometry { batch: 5, ..geo }, &ConvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("conv2d_input_grad") && msg.contains("output gradient"), "{msg}");
    let msg = conv2d_weight_grad(&x, &x, 2, &ConvGeometry { channels: 3, ..geo }, &ConvOptions::default())
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("conv2d_weight_grad") && msg.contains("input"), "{msg}");
    // A weight gradient takes only its result's storage from the epilogue.
    let gy = Buffer::from_f32(&cpu, &[0.0; 8]).unwrap();
    let relu = ConvOptions { epilogue: Epilogue { relu: true, ..Epilogue::default() }, ..ConvOptions::default() };
    let msg = conv2d_weight_grad(&gy, &x, 2, &geo, &relu).unwrap_err().to_string();
    assert!(msg.starts_with("conv2d_weight_grad") && msg.contains("epilogue"), "{msg}");
    assert!(conv2d_weight_grad(&gy, &x, 2, &geo, &ConvOptions::default()).is_ok());
}

fn n_input(g: &ConvGeometry) -> usize {
    g.input_shape().iter().product()
}

fn n_cols(g: &ConvGeometry) -> usize {
    g.cols_shape().iter().product()
}

#[test]
fn im2col_matches_twin() {
    let Some((gpu, cpu)) = devices("im2col_matches_twin") else { return };
    for (k, (name, geo)) in awkward().into_iter().enumerate() {
        let x = rng(10 + k as u64).vec(n_input(&geo), -1.0, 1.0);
        let (xg, xc) = both(&gpu, &cpu, &x);
        let (yg, yc) = (im2col(&xg, &geo).unwrap(), im2col(&xc, &geo).unwrap());
        // Pure data movement: bit-exact.
        same(&format!("im2col {name}"), &yg, &yc, n_cols(&geo), 0.0, 0.0);
    }
}

#[test]
fn col2im_matches_twin() {
    let Some((gpu, cpu)) = devices("col2im_matches_twin") else { return };
    for (k, (name, geo)) in awkward().into_iter().enumerate() {
        let cols = rng(30 + k as u64).vec(n_cols(&geo), -1.0, 1.0);
        let (cg, cc) = both(&gpu, &cpu, &cols);
        let (xg, xc) = (col2im(&cg, &geo).unwrap(), col2im(&cc, &geo).unwrap());
        // Same terms, possibly summed in another order (gather vs scatter).
        same(&format!("col2im {name}"), &xg, &xc, n_input(&geo), 1e-5, 1e-6);
    }
}

/// Past the 65,535-workgroup limit of one grid dimension, so the folded 2-D
/// grid is exercised.
#[test]
fn large_launches_fold_their_grid() {
    let Some((gpu, cpu)) = devices("large_launches_fold_their_grid") else { return };
    // A big kernel over a small image: 17M column entries from 16K pixels.
    let pad = 16;
    let geo = ConvGeometry {
        pad_top: pad,
        pad_bottom: pad,
        pad_left: pad,
        pad_right: pad,
        ..ConvGeometry::new(1, 4, (64, 64), (32, 32))
    };
    assert!(n_cols(&geo) > 65_535 * 256);
    let x = rng(50).vec(n_input(&geo), -1.0, 1.0);
    let (xg, xc) = both(&gpu, &cpu, &x);
    let (cg, cc) = (im2col(&xg, &geo).unwrap(), im2col(&xc, &geo).unwrap());
    same("large im2col", &cg, &cc, n_cols(&geo), 0.0, 0.0);
    same("large col2im", &col2im(&cg, &geo).unwrap(), &col2im(&cc, &geo).unwrap(), n_input(&geo), 1e-5, 1e-6);
}

/// The column layout documented in `ops::conv`: a grouped matrix product of
/// the weight with the columns is the convolution, computed here directly.
#[test]
fn cols_times_weight_is_the_direct_convolution() {
    let cpu = Device::cpu_reference();
    for (k, (name, geo)) in awkward().into_iter().enumerate() {
        let (oc_per_group, kk) = (2, geo.kernel_h * geo.kernel_w);
        let (cg, groups) = (geo.group_channels(), geo.groups);
        let oc = oc_per_group * groups;
        let x = rng(70 + k as u64).vec(n_input(&geo), -1.0, 1.0);
        let w = rng(90 + k as u64).vec(oc * cg * kk, -1.0, 1.0);
        let cols = im2col(&Buffer::from_f32(&cpu, &x).unwrap(), &geo).unwrap().to_f32().unwrap();
        let (oh, ow) = (geo.out_h(), geo.out_w());
        let (rows, l) = (geo.col_rows(), oh * ow);
        for n in 0..geo.batch {
            for o in 0..oc {
                let gi = o / oc_per_group;
                for (p, (y, xx)) in (0..oh).flat_map(|y| (0..ow).map(move |xx| (y, xx))).enumerate() {
                    let mut via_cols = 0.0f64;
                    for r in 0..rows {
                        via_cols += w[o * rows + r] as f64 * cols[((n * groups + gi) * rows + r) * l + p] as f64;
                    }
                    let mut direct = 0.0f64;
                    for c in 0..cg {
                        for ki in 0..geo.kernel_h {
                            for kj in 0..geo.kernel_w {
                                let ih = (y * geo.stride_h + ki * geo.dilation_h) as isize - geo.pad_top as isize;
                                let iw = (xx * geo.stride_w + kj * geo.dilation_w) as isize - geo.pad_left as isize;
                                if ih < 0 || iw < 0 || ih >= geo.in_h as isize || iw >= geo.in_w as isize {
                                    continue;
                                }
                                let ch = gi * cg + c;
                                let xv = x[((n * geo.channels + ch) * geo.in_h + ih as usize) * geo.in_w + iw as usize];
                                direct += w[((o * cg + c) * geo.kernel_h + ki) * geo.kernel_w + kj] as f64 * xv as f64;
                            }
                        }
                    }
                    assert!((via_cols - direct).abs() < 1e-9, "{name}: n {n} o {o} pos {p}: {via_cols} vs {direct}");
                }
            }
        }
    }
}

/// <im2col(x), c> == <x, col2im(c)> for random x and c: col2im is exactly
/// the adjoint that a convolution's input gradient needs.
#[test]
fn col2im_is_the_adjoint_of_im2col() {
    let cpu = Device::cpu_reference();
    for (k, (name, geo)) in awkward().into_iter().enumerate() {
        let x = rng(110 + k as u64).vec(n_input(&geo), -1.0, 1.0);
        let c = rng(130 + k as u64).vec(n_cols(&geo), -1.0, 1.0);
        let ax = im2col(&Buffer::from_f32(&cpu, &x).unwrap(), &geo).unwrap().to_f32().unwrap();
        let atc = col2im(&Buffer::from_f32(&cpu, &c).unwrap(), &geo).unwrap().to_f32().unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&p, &q)| p as f64 * q as f64).sum::<f64>();
        let (lhs, rhs) = (dot(&ax[..c.len()], &c), dot(&x, &atc[..x.len()]));
        assert!((lhs - rhs).abs() <= 1e-4 * (1.0 + lhs.abs()), "{name}: <Ax, c> = {lhs} but <x, A^T c> = {rhs}");
    }
}

#[test]
fn padding_reads_zero_and_col2im_counts_overlaps() {
    let cpu = Device::cpu_reference();
    // A 2x2 input of ones, 2x2 kernel, pad 1: 3x3 outputs, and each pixel is
    // covered by all 4 taps.
    let geo = ConvGeometry {
        pad_top: 1,
        pad_bottom: 1,
        pad_left: 1,
        pad_right: 1,
        ..ConvGeometry::new(1, 1, (2, 2), (2, 2))
    };
    let cols = im2col(&Buffer::from_f32(&cpu, &[1.0; 4]).unwrap(), &geo).unwrap().to_f32().unwrap();
    // Tap (0, 0) sees the input only from output positions (1,1),(1,2),(2,1),(2,2).
    assert_eq!(&cols[..9], &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
    let back = col2im(&Buffer::from_f32(&cpu, &[1.0; 36]).unwrap(), &geo).unwrap().to_f32().unwrap();
    assert_eq!(back, vec![4.0; 4]);
}

#[test]
fn bad_geometries_and_short_buffers_are_errors() {
    let cpu = Device::cpu_reference();
    let x = Buffer::from_f32(&cpu, &[0.0; 16]).unwrap();
    let too_big = ConvGeometry::new(1, 1, (4, 4), (5, 5));
    let msg = im2col(&x, &too_big).unwrap_err().to_string();
    assert!(msg.contains("conv2d") && msg.contains("larger than the padded input"), "{msg}");
    let msg =
        col2im(&x, &ConvGeometry { groups: 2, ..ConvGeometry::new(1, 3, (4, 4), (1, 1)) }).unwrap_err().to_string();
    assert!(msg.contains("divisible by groups"), "{msg}");
    let msg = im2col(&x, &ConvGeometry::new(2, 1, (4, 4), (3, 3))).unwrap_err().to_string();
    assert!(msg.starts_with("im2col") && msg.contains("input buffer"), "{msg}");
    let msg = col2im(&x, &ConvGeometry::new(1, 1, (4, 4), (3, 3))).unwrap_err().to_string();
    assert!(msg.starts_with("col2im") && msg.contains("columns buffer"), "{msg}");
}

/// The forward and weight-gradient gathers take the stride as a parameter,
/// so a strided layer compiles no pipeline of its own for them (each one
/// an LLVM JIT of 1-2 s on a CPU adapter's cold first step); the input
/// gradient's gather divides by the stride and keeps it a constant. Both
/// strides still match the CPU twin, on a fresh device of each kernel family.
#[test]
fn strided_layers_share_forward_and_weight_gradient_pipelines() {
    let cpu = Device::cpu_reference();
    let probe = match wgrad_gpu_core::testing::fresh_gpu_or_skip("strided_layers_share_pipelines") {
        Some(g) => g,
        None => return,
    };
    for kernel in kernels(&probe) {
        let Some(gpu) = wgrad_gpu_core::testing::fresh_gpu_or_skip("strided_layers_share_pipelines") else { return };
        // 20 x 20 inputs: 400 and 100 output pixels, both over 64, so both
        // strides get the same tiles on every kernel family.
        let geo = |stride: usize| ConvGeometry {
            stride_h: stride,
            stride_w: stride,
            ..pad1(ConvGeometry::new(2, 5, (20, 20), (3, 3)))
        };
        let oc = 12;
        let mut compiled = Vec::new();
        for (k, geo) in [geo(1), geo(2)].into_iter().enumerate() {
            let (nx, nw, ny) = sizes(&geo, oc);
            let mut r = rng(800 + k as u64);
            let (xg, xc) = both(&gpu, &cpu, &r.vec(nx, -1.0, 1.0));
            let (wg, wc) = both(&gpu, &cpu, &r.vec(nw, -1.0, 1.0));
            let (gg, gc) = both(&gpu, &cpu, &r.vec(ny, -1.0, 1.0));
            let what = |op: &str| format!("{kernel:?} {op}, stride {}", geo.stride_h);
            let before = gpu.pipelines_compiled();
            let y = conv2d(&xg, &wg, oc, &geo, &ConvOptions::kernel(kernel)).unwrap();
            let dw = conv2d_weight_grad(&gg, &xg, oc, &geo, &ConvOptions::kernel(kernel)).unwrap();
            // Flushed: a product the fuser defers gets its pipeline when encoded.
            gpu.flush().unwrap();
            let forward_and_weight = gpu.pipelines_compiled() - before;
            let dx = conv2d_input_grad(&gg, &wg, oc, &geo, &ConvOptions::kernel(kernel)).unwrap();
            gpu.flush().unwrap();
            compiled.push((forward_and_weight, gpu.pipelines_compiled() - before - forward_and_weight));
            same(
                &what("conv2d"),
                &y,
                &conv2d(&xc, &wc, oc, &geo, &ConvOptions::default()).unwrap(),
                ny,
                1e-5,
                atol(geo.col_rows()),
            );
            let pixels = geo.batch * geo.out_h() * geo.out_w();
            same(
                &what("weight grad"),
                &dw,
                &conv2d_weight_grad(&gc, &xc, oc, &geo, &ConvOptions::default()).unwrap(),
                nw,
                1e-5,
                atol(pixels),
            );
            same(
                &what("input grad"),
                &dx,
                &conv2d_input_grad(&gc, &wc, oc, &geo, &ConvOptions::default()).unwrap(),
                nx,
                1e-5,
                atol(oc * 9),
            );
        }
        assert!(compiled[0].0 >= 2 && compiled[0].1 >= 1, "{kernel:?}: stride 1 compiled {:?}", compiled[0]);
        // Stride 2: only the input gradient's gather is a pipeline of its own.
        assert_eq!(compiled[1], (0, 1), "{kernel:?}: stride 2 (forward and weight gradient, input gradient)");
    }
}

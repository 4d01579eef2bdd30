//! im2col / col2im: GPU kernels vs CPU twins on awkward geometries, the twins
//! against a direct convolution, and col2im as im2col's adjoint.

mod common;
use common::*;
use wgrad_gpu_core::ops::conv::{col2im, im2col, ConvGeometry};
use wgrad_gpu_core::{Buffer, Device};

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
    let cpu = Device::cpu();
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
    let cpu = Device::cpu();
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
    let cpu = Device::cpu();
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
    let cpu = Device::cpu();
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

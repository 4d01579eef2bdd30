//! f16-operand products (mixed precision's matmul and convolution): every GPU
//! kernel family, with native `f16` loads and with packed-u32 loads, against
//! the CPU twin on awkward shapes, and against an f64 product of the same
//! f16 values, which shows the sums are f32 (an f16 accumulator fails it).
//! Values include f16's extremes: ±65504, subnormals, ±inf.

use crate::common;
use common::*;
use half::f16;
use wgrad_gpu_core::ops::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad, ConvGeometry, ConvOptions};
use wgrad_gpu_core::ops::matmul::{matmul_config, matmul_f16, HalfLoads, MatmulConfig, MatmulKernel, Operands};
use wgrad_gpu_core::testing::{assert_close, matrix_unit_kernels};
use wgrad_gpu_core::{Buffer, Device, Layout};

/// Every (kernel family, f16 load) the GPU can run; lavapipe runs all four.
fn configs(gpu: &Device) -> Vec<MatmulConfig> {
    let mut out = Vec::new();
    for kernel in [MatmulKernel::Tiled, MatmulKernel::Subgroup].into_iter().filter(|k| k.runs_on(gpu)) {
        for half_loads in [HalfLoads::Packed, HalfLoads::Native] {
            if half_loads == HalfLoads::Native && !gpu.has_shader_f16() {
                continue;
            }
            out.push(MatmulConfig { kernel, operands: Operands::F16, half_loads, ..MatmulConfig::default() });
        }
    }
    if gpu.name().contains("llvmpipe") {
        assert_eq!(out.len(), 4, "lavapipe runs both families with both f16 loads");
    }
    // Matrix units read f16 natively whatever the load setting.
    out.extend(matrix_unit_kernels(gpu).into_iter().map(|kernel| MatmulConfig { kernel, ..MatmulConfig::f16() }));
    out
}

/// Asserts that `a @ b` is exactly `want` on the twin and on every GPU
/// variant (the cases whose result f32 represents exactly).
#[track_caller]
fn exactly_everywhere(
    (g, c): (&Device, &Device),
    (a, la): (&[f16], &Layout),
    (b, lb): (&[f16], &Layout),
    want: &[f32],
) {
    for dev in [c, g] {
        let (ab, bb) = (Buffer::from_f16(dev, a).unwrap(), Buffer::from_f16(dev, b).unwrap());
        let configs = if dev == c { vec![MatmulConfig::f16()] } else { configs(dev) };
        for cfg in configs {
            let (z, _) = matmul_config(cfg, &ab, la, &bb, lb).unwrap();
            let got = &z.to_f32().unwrap()[..want.len()];
            assert_close(&format!("{} {cfg:?}", dev.name()), got, want, 0.0, 0.0);
        }
    }
}

/// `n` f16 values: mostly uniform in [-2, 2), with every `extreme`-th one
/// from f16's limits (largest finite, smallest subnormal, a subnormal run).
fn halves(r: &mut wgrad_gpu_core::testing::Rng, n: usize, extreme: usize) -> Vec<f16> {
    let limits = [65504.0, -65504.0, 5.96e-8, -1.2e-7, 3.0e-5, 6.1e-5];
    (0..n)
        .map(|i| {
            let v = if extreme > 0 && i % extreme == extreme - 1 {
                limits[i / extreme % limits.len()]
            } else {
                r.uniform(-2.0, 2.0)
            };
            f16::from_f32(v)
        })
        .collect()
}

/// The product of the f16 values in f64, rounded to f32 once.
fn exact(a: &[f16], b: &[f16], (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k).map(|t| a[i * k + t].to_f64() * b[t * n + j].to_f64()).sum();
            out[i * n + j] = s as f32;
        }
    }
    out
}

#[test]
fn f16_products_match_the_twin_and_sum_in_f32() {
    let Some((g, c)) = devices("f16_products_match_the_twin_and_sum_in_f32") else { return };
    let mut r = rng(16);
    for (m, k, n) in [(1, 1, 1), (7, 33, 5), (33, 70, 65), (64, 257, 3), (5, 1023, 31)] {
        let (a, b) = (halves(&mut r, m * k, 13), halves(&mut r, k * n, 0));
        let (la, lb) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[k, n]));
        let (ac, bc) = (Buffer::from_f16(&c, &a).unwrap(), Buffer::from_f16(&c, &b).unwrap());
        let (zc, shape) = matmul_f16(&ac, &la, &bc, &lb).unwrap();
        assert_eq!(shape, [m, n]);
        let twin = zc.to_f32().unwrap()[..m * n].to_vec();
        // |sum| reaches 65504 * 2 * k: f32 rounding of the partial sums.
        let scale = 65504.0 * 2.0 * k as f32;
        assert_close(&format!("twin {m}x{k}x{n} vs f64"), &twin, &exact(&a, &b, (m, k, n)), 1e-6, scale * 1e-6);
        let (ag, bg) = (Buffer::from_f16(&g, &a).unwrap(), Buffer::from_f16(&g, &b).unwrap());
        for cfg in configs(&g) {
            let (zg, _) = matmul_config(cfg, &ag, &la, &bg, &lb).unwrap();
            same(&format!("{cfg:?} {m}x{k}x{n}"), &zg, &zc, m * n, 1e-6, scale * 1e-6);
        }
    }
}

/// 4096 products of 1 and 2^-11 (half of f16's epsilon at 1) after a 1:
/// an f16 accumulator would stay at 1, an f32 one reaches 3.
#[test]
fn sums_are_not_rounded_to_f16() {
    let Some((g, c)) = devices("sums_are_not_rounded_to_f16") else { return };
    let k = 4097;
    let mut a = vec![f16::from_f32(2f32.powi(-11)); k];
    a[0] = f16::ONE;
    let b = vec![f16::ONE; k];
    let (la, lb) = (Layout::contiguous(&[1, k]), Layout::contiguous(&[k, 1]));
    exactly_everywhere((&g, &c), (&a, &la), (&b, &lb), &[3.0]);
}

/// Infinite inputs give ±inf, inf · 0 gives NaN, and finite f16 products
/// past f16's range stay finite (the result is f32).
#[test]
fn infinities_and_overflow_follow_ieee() {
    let Some((g, c)) = devices("infinities_and_overflow_follow_ieee") else { return };
    let h = |v: f32| f16::from_f32(v);
    // Rows of A: [inf, 1], [65504, 65504], [inf, 0]; B: [[1, 0], [1, 0]] then [[0, 1], ...]: columns 0 and 1.
    let a = [h(f32::INFINITY), h(1.0), h(65504.0), h(65504.0), h(f32::NEG_INFINITY), h(0.0)];
    let b = [h(1.0), h(0.0), h(1.0), h(2.0)];
    let (la, lb) = (Layout::contiguous(&[3, 2]), Layout::contiguous(&[2, 2]));
    let want = [f32::INFINITY, f32::NAN, 131008.0, 131008.0, f32::NEG_INFINITY, f32::NAN];
    exactly_everywhere((&g, &c), (&a, &la), (&b, &lb), &want);
}

/// Batched, broadcast and transposed f16 views (the vec4 load modes and the
/// element-wise mode of the subgroup kernel) against the twin.
#[test]
fn strided_f16_views_match_the_twin() {
    let Some((g, c)) = devices("strided_f16_views_match_the_twin") else { return };
    let mut r = rng(17);
    let (b, m, k, n) = (3, 37, 24, 41);
    let a = halves(&mut r, b * m * k, 0);
    let bt = halves(&mut r, n * k, 0);
    // A [b, m, k] row-major; B [k, n] as the transpose of a row-major [n, k], broadcast over b.
    let la = Layout::contiguous(&[b, m, k]);
    let lb = Layout::contiguous(&[1, n, k]).permute(&[0, 2, 1]).unwrap();
    let (ac, bc) = (Buffer::from_f16(&c, &a).unwrap(), Buffer::from_f16(&c, &bt).unwrap());
    let (zc, shape) = matmul_f16(&ac, &la, &bc, &lb).unwrap();
    assert_eq!(shape, [b, m, n]);
    let (ag, bg) = (Buffer::from_f16(&g, &a).unwrap(), Buffer::from_f16(&g, &bt).unwrap());
    for cfg in configs(&g) {
        let (zg, _) = matmul_config(cfg, &ag, &la, &bg, &lb).unwrap();
        same(&format!("{cfg:?}"), &zg, &zc, b * m * n, 1e-5, 1e-4);
    }
    // An odd offset and odd strides: the element-by-element loads.
    let lo = Layout { shape: [m - 2, k - 3].into(), strides: [k, 1].into(), offset: k + 1 };
    let lbo = Layout { shape: [k - 3, n - 1].into(), strides: [1, k].into(), offset: 1 };
    let (zc, _) = matmul_f16(&ac, &lo, &bc, &lbo).unwrap();
    for cfg in configs(&g) {
        let (zg, _) = matmul_config(cfg, &ag, &lo, &bg, &lbo).unwrap();
        same(&format!("offset {cfg:?}"), &zg, &zc, (m - 2) * (n - 1), 1e-5, 1e-4);
    }
}

/// Products large enough for whole output tiles beside partial ones at the
/// edges, K not a multiple of any staged depth, in every layout a product
/// reads (A plain or transposed, B plain or transposed, batched) and with
/// strides that are multiples of 4 halves but not of 8, against the twin on
/// every GPU family (matrix units included where offered).
#[test]
fn whole_tiles_and_edges_of_every_layout_match_the_twin() {
    let Some((g, c)) = devices("whole_tiles_and_edges_of_every_layout_match_the_twin") else { return };
    let mut r = rng(21);
    // K = 5 x 16 + 8: direct steps, then one staged remainder.
    for (bt, m, k, n) in [(2, 200, 88, 136), (1, 136, 84, 144)] {
        let a = halves(&mut r, bt * m * k, 0);
        let b = halves(&mut r, bt * k * n, 0);
        let (ac, bc) = (Buffer::from_f16(&c, &a).unwrap(), Buffer::from_f16(&c, &b).unwrap());
        let (ag, bg) = (Buffer::from_f16(&g, &a).unwrap(), Buffer::from_f16(&g, &b).unwrap());
        let plain_a = Layout::contiguous(&[bt, m, k]);
        let trans_a = Layout::contiguous(&[bt, k, m]).permute(&[0, 2, 1]).unwrap();
        let plain_b = Layout::contiguous(&[bt, k, n]);
        let trans_b = Layout::contiguous(&[bt, n, k]).permute(&[0, 2, 1]).unwrap();
        for (la, lb) in [(&plain_a, &plain_b), (&trans_a, &plain_b), (&plain_a, &trans_b), (&trans_a, &trans_b)] {
            let (zc, shape) = matmul_f16(&ac, la, &bc, lb).unwrap();
            assert_eq!(shape, [bt, m, n]);
            for cfg in configs(&g) {
                let (zg, _) = matmul_config(cfg, &ag, la, &bg, lb).unwrap();
                let what = format!("{cfg:?} {bt}x{m}x{k}x{n} A {:?} B {:?}", la.strides, lb.strides);
                same(&what, &zg, &zc, bt * m * n, 1e-5, 1e-4);
            }
        }
    }
}

/// The implicit-GEMM convolution with f16 input and weight: GPU variants and
/// twin agree, and equal the f32 convolution of the widened values.
#[test]
fn f16_convolution_matches_f32_of_the_same_values() {
    let Some((g, c)) = devices("f16_convolution_matches_f32_of_the_same_values") else { return };
    let mut r = rng(18);
    let geo = ConvGeometry {
        stride_h: 2,
        pad_top: 1,
        pad_bottom: 1,
        pad_right: 2,
        ..ConvGeometry::new(2, 5, (9, 7), (3, 3))
    };
    let oc = 6;
    let x = halves(&mut r, geo.input_shape().iter().product(), 0);
    let w = halves(&mut r, oc * geo.col_rows(), 0);
    let widen = |v: &[f16]| v.iter().map(|h| h.to_f32()).collect::<Vec<_>>();
    let n_out = geo.batch * oc * geo.out_h() * geo.out_w();
    let f32_ref = conv2d(
        &Buffer::from_f32(&c, &widen(&x)).unwrap(),
        &Buffer::from_f32(&c, &widen(&w)).unwrap(),
        oc,
        &geo,
        &ConvOptions::default(),
    )
    .unwrap();
    let zc =
        conv2d(&Buffer::from_f16(&c, &x).unwrap(), &Buffer::from_f16(&c, &w).unwrap(), oc, &geo, &ConvOptions::f16())
            .unwrap();
    same("twin f16 vs f32", &zc, &f32_ref, n_out, 1e-6, 1e-5);
    let (xg, wg) = (Buffer::from_f16(&g, &x).unwrap(), Buffer::from_f16(&g, &w).unwrap());
    for cfg in configs(&g) {
        let zg = conv2d(&xg, &wg, oc, &geo, &ConvOptions::config(cfg)).unwrap();
        same(&format!("{cfg:?}"), &zg, &zc, n_out, 1e-5, 1e-5);
    }
}

/// The convolution's backward products on f16 operands (an f16 output
/// gradient with the f16 input or weight, as autocast records them): GPU
/// variants and twin agree, and equal the f32 kernels on the widened
/// values. Odd element counts (a half-used last word), groups, stride and
/// asymmetric padding.
#[test]
fn f16_convolution_gradients_match_f32_of_the_same_values() {
    let Some((g, c)) = devices("f16_convolution_gradients_match_f32_of_the_same_values") else { return };
    let mut r = rng(19);
    let geo = ConvGeometry {
        stride_w: 2,
        pad_top: 2,
        pad_left: 1,
        pad_right: 1,
        groups: 2,
        ..ConvGeometry::new(3, 4, (7, 9), (3, 2))
    };
    let oc = 6;
    let n_y = geo.batch * oc * geo.out_h() * geo.out_w();
    let n_x: usize = geo.input_shape().iter().product();
    let n_w = oc * geo.col_rows();
    let (x, w, gy) = (halves(&mut r, n_x, 0), halves(&mut r, n_w, 0), halves(&mut r, n_y, 0));
    let widen = |v: &[f16]| v.iter().map(|h| h.to_f32()).collect::<Vec<_>>();
    let f32s = |v: &[f16]| Buffer::from_f32(&c, &widen(v)).unwrap();
    let dx_ref = conv2d_input_grad(&f32s(&gy), &f32s(&w), oc, &geo, &ConvOptions::default()).unwrap();
    let dw_ref = conv2d_weight_grad(&f32s(&gy), &f32s(&x), oc, &geo, &ConvOptions::default()).unwrap();
    let halves_on = |dev: &Device, v: &[f16]| Buffer::from_f16(dev, v).unwrap();
    let (gyc, xc, wc) = (halves_on(&c, &gy), halves_on(&c, &x), halves_on(&c, &w));
    let dx_c = conv2d_input_grad(&gyc, &wc, oc, &geo, &ConvOptions::config(MatmulConfig::f16())).unwrap();
    let dw_c = conv2d_weight_grad(&gyc, &xc, oc, &geo, &ConvOptions::config(MatmulConfig::f16())).unwrap();
    same("twin input grad f16 vs f32", &dx_c, &dx_ref, n_x, 1e-6, 1e-5);
    same("twin weight grad f16 vs f32", &dw_c, &dw_ref, n_w, 1e-5, 1e-5);
    let (gyg, xg, wg) = (halves_on(&g, &gy), halves_on(&g, &x), halves_on(&g, &w));
    for cfg in configs(&g) {
        let dx = conv2d_input_grad(&gyg, &wg, oc, &geo, &ConvOptions::config(cfg)).unwrap();
        same(&format!("input grad {cfg:?}"), &dx, &dx_c, n_x, 1e-5, 1e-5);
        let dw = conv2d_weight_grad(&gyg, &xg, oc, &geo, &ConvOptions::config(cfg)).unwrap();
        same(&format!("weight grad {cfg:?}"), &dw, &dw_c, n_w, 1e-4, 1e-5);
    }
}

/// f16 operands are checked at 2 bytes per element: a buffer holding too
/// few halves is an error naming the operand, not an out-of-bounds read.
#[test]
fn short_f16_operands_are_refused() {
    let c = Device::cpu();
    let a = Buffer::from_f16(&c, &[f16::ONE; 6]).unwrap();
    let err = matmul_f16(&a, &Layout::contiguous(&[2, 4]), &a, &Layout::contiguous(&[4, 1])).unwrap_err();
    assert!(err.to_string().contains("operand"), "{err}");
}

/// f16 subnormals (2^-24 .. 2^-14) are read exactly, not flushed to zero:
/// each product below is a subnormal times a power of two, so the result is
/// exact in f32 and a flush shows as 0.
#[test]
fn subnormals_are_read_exactly() {
    let Some((g, c)) = devices("subnormals_are_read_exactly") else { return };
    let sub = [2f32.powi(-24), -3.0 * 2f32.powi(-24), 2f32.powi(-15), 1023.0 * 2f32.powi(-24)];
    let a: Vec<f16> = sub.iter().map(|&v| f16::from_f32(v)).collect();
    assert!(a.iter().all(|h| !h.is_normal() && *h != f16::ZERO));
    let b = [f16::ONE, f16::from_f32(1024.0)];
    let (la, lb) = (Layout::contiguous(&[4, 1]), Layout::contiguous(&[1, 2]));
    let want: Vec<f32> = sub.iter().flat_map(|&v| [v, v * 1024.0]).collect();
    exactly_everywhere((&g, &c), (&a, &la), (&b, &lb), &want);
}

/// Asking for matrix units where there are none, or for f32 operands on
/// them, is a clear error, not a silent fallback; where the adapter has
/// them, `Cooperative` and `Auto` run the same kernel (bit-identical).
#[test]
fn matrix_units_are_used_where_offered_and_refused_where_not() {
    let Some((g, _)) = devices("matrix_units_are_used_where_offered_and_refused_where_not") else { return };
    let mut r = rng(20);
    let (m, k, n) = (40, 48, 24);
    let (a, b) = (halves(&mut r, m * k, 0), halves(&mut r, k * n, 0));
    let (la, lb) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[k, n]));
    let (ag, bg) = (Buffer::from_f16(&g, &a).unwrap(), Buffer::from_f16(&g, &b).unwrap());
    let coop = MatmulConfig { kernel: MatmulKernel::Cooperative, ..MatmulConfig::f16() };
    let f32_coop = MatmulConfig { operands: Operands::F32, ..coop };
    let (af, bf) = (Buffer::from_f32(&g, &widen(&a)).unwrap(), Buffer::from_f32(&g, &widen(&b)).unwrap());
    let err = matmul_config(f32_coop, &af, &la, &bf, &lb).unwrap_err().to_string();
    assert!(err.contains("f16 operands"), "{err}");
    match g.info().matrix_units {
        None => {
            assert!(!MatmulKernel::Cooperative.runs_on(&g));
            let err = matmul_config(coop, &ag, &la, &bg, &lb).unwrap_err().to_string();
            assert!(err.contains("matrix units") && err.contains(g.name().as_str()), "{err}");
        }
        Some(units) => {
            assert!(MatmulKernel::Cooperative.runs_on(&g), "{units:?}");
            let (forced, _) = matmul_config(coop, &ag, &la, &bg, &lb).unwrap();
            let (auto, _) = matmul_config(MatmulConfig::f16(), &ag, &la, &bg, &lb).unwrap();
            same("Auto vs Cooperative", &auto, &forced, m * n, 0.0, 0.0);
        }
    }
}

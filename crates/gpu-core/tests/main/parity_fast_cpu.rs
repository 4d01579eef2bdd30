//! The fast CPU paths (`Device::cpu`) against the reference twins
//! (`Device::cpu_reference`) on awkward shapes: zero-size, odd, strided and
//! broadcast views, and sizes large enough to be split over threads. Needs
//! no GPU.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::binary::{binary, BinaryOp};
use wgrad_gpu_core::ops::conv::{conv2d, conv2d_input_grad, conv2d_weight_grad, ConvGeometry, ConvOptions};
use wgrad_gpu_core::ops::unary::{unary, unary_grad, UnaryOp};
use wgrad_gpu_core::testing::Rng;
use wgrad_gpu_core::{Buffer, Device, Layout};

/// The fast device and the reference device.
fn pair() -> (Device, Device) {
    (Device::cpu(), Device::cpu_reference())
}

/// Element counts: empty, tiny, odd, and past the threading grain.
const COUNTS: &[usize] = &[0, 1, 7, 33, 1023, 70_001];

#[test]
fn unary_ops_and_their_gradients_match_the_reference() {
    let (f, r) = pair();
    let mut rng = rng(1);
    for &n in COUNTS {
        let (x, g) = (rng.vec(n, 0.1, 3.0), rng.vec(n, -1.0, 1.0));
        let (xf, xr) = (Buffer::from_f32(&f, &x).unwrap(), Buffer::from_f32(&r, &x).unwrap());
        let (gf, gr) = (Buffer::from_f32(&f, &g).unwrap(), Buffer::from_f32(&r, &g).unwrap());
        for &op in UnaryOp::EXAMPLES {
            let what = format!("{} n={n}", op.name());
            let (yf, yr) = (unary(op, &xf, n).unwrap(), unary(op, &xr, n).unwrap());
            same(&what, &yf, &yr, n, 1e-6, 1e-6);
            let (df, dr) = (unary_grad(op, &xf, &yf, &gf, n).unwrap(), unary_grad(op, &xr, &yr, &gr, n).unwrap());
            same(&format!("d {what}"), &df, &dr, n, 1e-6, 1e-6);
        }
    }
}

#[test]
fn binary_ops_match_the_reference_on_broadcast_and_strided_views() {
    let (f, r) = pair();
    let mut rng = rng(2);
    // (a's buffer shape, a's view, b's buffer shape, b's view) as closures
    // of the contiguous layout: plain, broadcast rows, channel bias, scalar,
    // permuted (strided) and narrowed views, zero-size and large.
    type View = fn(Layout) -> Layout;
    type Case = (&'static str, Vec<usize>, View, Vec<usize>, View);
    let id: View = |l| l;
    let cases: Vec<Case> = vec![
        ("same shape", vec![3, 5, 7], id, vec![3, 5, 7], id),
        ("row broadcast", vec![9, 33], id, vec![33], id),
        ("column broadcast", vec![9, 33], id, vec![9, 1], id),
        ("channel bias", vec![4, 6, 5, 5], id, vec![1, 6, 1, 1], id),
        ("scalar left", vec![1], id, vec![17, 3], id),
        ("transposed", vec![5, 8], |l| l.permute(&[1, 0]).unwrap(), vec![8, 5], id),
        ("narrowed", vec![6, 10], |l| l.narrow(1, 3, 5).unwrap(), vec![6, 5], id),
        ("zero-size", vec![0, 4], id, vec![4], id),
        ("large", vec![300, 257], id, vec![300, 257], id),
        ("large broadcast", vec![64, 16, 81], id, vec![1, 16, 1], id),
        ("large transposed", vec![257, 300], |l| l.permute(&[1, 0]).unwrap(), vec![300, 1], id),
    ];
    for (name, sa, va, sb, vb) in cases {
        let (na, nb) = (sa.iter().product::<usize>(), sb.iter().product::<usize>());
        let (a, b) = (rng.vec(na, 0.5, 2.0), rng.vec(nb, 0.5, 2.0));
        let (la, lb) = (va(Layout::contiguous(&sa)), vb(Layout::contiguous(&sb)));
        for &op in BinaryOp::ALL {
            let run = |d: &Device| {
                let (ba, bb) = (Buffer::from_f32(d, &a).unwrap(), Buffer::from_f32(d, &b).unwrap());
                binary(op, &ba, &la, &bb, &lb).unwrap()
            };
            let ((yf, shape), (yr, shape_r)) = (run(&f), run(&r));
            assert_eq!(shape, shape_r);
            same(&format!("{} {name}", op.name()), &yf, &yr, shape.iter().product(), 1e-6, 0.0);
        }
    }
}

#[test]
fn convolutions_match_the_reference() {
    let (f, r) = pair();
    let mut rng = rng(3);
    let base = ConvGeometry::new(2, 4, (7, 6), (3, 3));
    let pad = |g: ConvGeometry, p| ConvGeometry { pad_top: p, pad_bottom: p, pad_left: p, pad_right: p, ..g };
    let cases = [
        ("3x3 pad 1", pad(base, 1), 6),
        ("stride 2 odd", ConvGeometry { in_h: 9, in_w: 7, stride_h: 2, stride_w: 2, ..pad(base, 1) }, 4),
        ("dilation 2", ConvGeometry { dilation_h: 2, dilation_w: 3, ..pad(base, 2) }, 3),
        ("groups", ConvGeometry { channels: 8, groups: 4, pad_left: 1, ..base }, 8),
        ("depthwise stride 3", ConvGeometry { channels: 5, groups: 5, stride_w: 3, pad_top: 1, ..base }, 5),
        ("asymmetric", ConvGeometry { kernel_h: 2, kernel_w: 4, pad_bottom: 3, pad_left: 2, ..base }, 2),
        ("pad wider than input", ConvGeometry { in_w: 2, kernel_w: 1, pad_left: 3, pad_right: 4, ..base }, 2),
        ("empty batch", ConvGeometry { batch: 0, ..pad(base, 1) }, 4),
        ("large (one image per task)", pad(ConvGeometry::new(3, 16, (32, 32), (3, 3)), 1), 16),
        (
            "grouped, per task",
            ConvGeometry { channels: 8, groups: 2, ..pad(ConvGeometry::new(9, 8, (16, 16), (3, 3)), 1) },
            6,
        ),
        ("wide (threaded sgemm per image)", pad(ConvGeometry::new(2, 64, (16, 32), (3, 3)), 1), 64),
        // Stride 1 with rows of 16 or more outputs: read in place (implicit
        // GEMM, cpu/conv.rs) on AVX2 and AVX-512 hosts, with dilation, uneven
        // padding, a partial run of outputs and a kernel wider than tall.
        (
            "in place, dilated",
            ConvGeometry { dilation_h: 2, dilation_w: 3, ..pad(ConvGeometry::new(2, 5, (9, 30), (3, 3)), 3) },
            7,
        ),
        (
            "in place, uneven padding",
            ConvGeometry {
                kernel_h: 2,
                kernel_w: 5,
                pad_top: 1,
                pad_bottom: 0,
                pad_left: 2,
                pad_right: 1,
                ..ConvGeometry::new(3, 4, (5, 25), (2, 5))
            },
            9,
        ),
        // Rows of 8 outputs go two to a run; an odd height leaves half a run.
        ("in place, 8 wide", pad(ConvGeometry::new(3, 6, (7, 8), (3, 3)), 1), 10),
    ];
    for (name, g, oc) in cases {
        let (oh, ow) = (g.out_h(), g.out_w());
        let x = rng.vec(g.input_shape().iter().product(), -1.0, 1.0);
        let w = rng.vec(oc * g.col_rows(), -1.0, 1.0);
        let gy = rng.vec(g.batch * oc * oh * ow, -1.0, 1.0);
        let run = |d: &Device| {
            let up = |v: &[f32]| Buffer::from_f32(d, v).unwrap();
            let (x, w, gy) = (up(&x), up(&w), up(&gy));
            [
                conv2d(&x, &w, oc, &g, &ConvOptions::default()).unwrap(),
                conv2d_weight_grad(&gy, &x, oc, &g, &ConvOptions::default()).unwrap(),
                conv2d_input_grad(&gy, &w, oc, &g, &ConvOptions::default()).unwrap(),
            ]
        };
        let (yf, yr) = (run(&f), run(&r));
        let sizes = [g.batch * oc * oh * ow, oc * g.col_rows(), g.input_shape().iter().product()];
        // The weight gradient sums batch · pixels products, in another order
        // than the reference's on long rows (cpu/gemm_abt.rs): f32 rounding
        // grows with the count, as in the GPU parity tests (parity_conv's atol).
        let reduced = [1e-5, f32::EPSILON * (g.batch * oh * ow) as f32, 1e-5];
        for (i, what) in ["forward", "weight grad", "input grad"].iter().enumerate() {
            same(&format!("{name}: {what}"), &yf[i], &yr[i], sizes[i], 1e-5, reduced[i].max(1e-5));
        }
    }
}

/// Host data of one batch-norm case over `[A, C, B]` data.
struct BatchNormCase {
    d: wgrad_gpu_core::ops::batch_norm::ChannelDims,
    x: Vec<f32>,
    gy: Vec<f32>,
    res: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl BatchNormCase {
    fn random(rng: &mut Rng, (outer, channels, inner): (usize, usize, usize), shift: f32) -> Self {
        let n = outer * channels * inner;
        let x = rng.vec(n, -2.0, 2.0).iter().map(|v| v + shift).collect();
        let (gy, res) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let (w, b) = (rng.vec(channels, 0.5, 1.5), rng.vec(channels, -0.5, 0.5));
        let d = wgrad_gpu_core::ops::batch_norm::ChannelDims { outer, channels, inner };
        BatchNormCase { d, x, gy, res, w, b }
    }

    /// Training statistics, the forward with a residual and ReLU, the
    /// gradient sums, the training backward (dx, dres) and the eval backward.
    fn run(&self, dev: &Device) -> [Buffer; 7] {
        use wgrad_gpu_core::ops::batch_norm::{
            batch_norm_backward, batch_norm_forward, batch_norm_grad_sums, batch_norm_stats, Centre, Operands,
        };
        let d = self.d;
        let up = |v: &[f32]| Buffer::from_f32(dev, v).unwrap();
        let (x, gy, res, w, b) = (up(&self.x), up(&self.gy), up(&self.res), up(&self.w), up(&self.b));
        let stats = batch_norm_stats(&x, d, 1e-5, None, Operands::F32).unwrap();
        let centre = Centre::Stats(&stats);
        let y = batch_norm_forward(&x, d, centre, Some(&w), Some(&b), Some(&res), true, Operands::F32).unwrap();
        let (sb, sw) = batch_norm_grad_sums(&gy, &x, Some(&y), d, centre, Operands::F32).unwrap();
        let (dx, dres) =
            batch_norm_backward(&gy, &x, Some(&y), d, centre, Some(&w), Some((&sb, &sw)), true, Operands::F32).unwrap();
        let (dx_eval, _) = batch_norm_backward(&gy, &x, None, d, centre, None, None, false, Operands::F32).unwrap();
        [stats, y, sb, sw, dx, dres.unwrap(), dx_eval]
    }
}

#[test]
fn batch_norm_matches_the_reference() {
    let (f, r) = pair();
    let mut rng = rng(4);
    // [A, C, B]: odd sizes, B = 1 (BatchNorm1d, layer norm's affine), a
    // shifted mean, and large (B = 1 large: channels split over threads).
    for (dims, shift) in [
        ((1, 1, 2), 0.0),
        ((3, 5, 7), 0.0),
        ((4, 3, 1), 100.0),
        ((2, 6, 9), 0.0),
        ((32, 16, 256), 0.5),
        ((2048, 67, 1), 0.0),
    ] {
        let case = BatchNormCase::random(&mut rng, dims, shift);
        let (d, n, channels) = (case.d, case.x.len(), case.d.channels);
        let (of, or) = (case.run(&f), case.run(&r));
        let lens = [2 * channels, n, channels, channels, n, n, n];
        for (i, what) in ["stats", "forward", "Σdy", "Σdy·xhat", "dx", "dres", "dx eval"].iter().enumerate() {
            same(&format!("{d:?}: {what}"), &of[i], &or[i], lens[i], 1e-4, 1e-4);
        }
    }
}

#[test]
fn cpu_buffers_are_pooled_and_come_back_zeroed() {
    let dev = Device::cpu();
    let a = Buffer::from_f32(&dev, &[1.0; 1000]).unwrap();
    let created = dev.stats().buffers_created;
    drop(a);
    let b = Buffer::alloc(&dev, 3990).unwrap();
    assert_eq!(dev.stats().buffers_created, created, "the freed buffer was reused");
    assert_eq!(b.to_bytes().unwrap(), vec![0u8; 3990], "a reused buffer reads as zeros");
    drop(b);
    assert!(dev.empty_cache() >= 4000);
    let _c = Buffer::alloc(&dev, 4000).unwrap();
    assert_eq!(dev.stats().buffers_created, created + 1, "an emptied pool allocates anew");
}

/// Bit-for-bit equality of two buffers' first `n` words (the fast paths
/// that add in the reference's order must give the reference's bits, NaNs
/// included).
fn identical(what: &str, fast: &Buffer, reference: &Buffer, n: usize) {
    let (a, b) = (fast.to_u32().unwrap(), reference.to_u32().unwrap());
    if let Some(i) = (0..n).find(|&i| a[i] != b[i]) {
        panic!("{what}: word {i} of {n} differs: fast {:#x} vs reference {:#x}", a[i], b[i]);
    }
}

#[test]
fn pooling_matches_the_reference_bit_for_bit() {
    use wgrad_gpu_core::ops::pool::{
        adaptive_avg_pool2d, adaptive_avg_pool2d_backward, avg_pool2d, avg_pool2d_backward, max_pool2d,
        max_pool2d_backward, max_pool2d_relu_io, Operands,
    };
    let (f, r) = pair();
    let mut rng = rng(5);
    // (shape, kernel, stride, padding, dilation, ceil_mode): MNIST's 2x2, odd
    // sizes with padding, dilation, overlapping windows, an empty batch,
    // enough planes to be split over threads, and ceil_mode (the 2x2 over
    // odd sizes then ends in a one-row window, off the 2x2 fast path).
    type Case = ([usize; 4], (usize, usize), (usize, usize), (usize, usize), (usize, usize), bool);
    let cases: [Case; 10] = [
        ([2, 3, 8, 8], (2, 2), (2, 2), (0, 0), (1, 1), false),
        // 2x2 at stride 2 over odd sizes: the last row and column unread.
        ([2, 3, 7, 9], (2, 2), (2, 2), (0, 0), (1, 1), false),
        ([1, 2, 7, 9], (3, 3), (2, 1), (1, 1), (1, 1), false),
        ([3, 1, 9, 8], (2, 3), (1, 2), (1, 0), (2, 2), false),
        ([2, 2, 5, 5], (3, 3), (1, 1), (1, 1), (1, 1), false),
        ([0, 4, 6, 6], (2, 2), (2, 2), (0, 0), (1, 1), false),
        ([32, 32, 26, 26], (2, 2), (2, 2), (0, 0), (1, 1), false),
        ([2, 3, 7, 9], (2, 2), (2, 2), (0, 0), (1, 1), true),
        ([2, 3, 8, 8], (3, 3), (2, 2), (0, 0), (1, 1), true),
        ([1, 2, 5, 7], (2, 2), (2, 2), (1, 1), (1, 1), true),
    ];
    for (shape, k, s, p, d, ceil) in cases {
        let w = window(k, s, p, d).ceil_mode(ceil);
        let wa = window(k, s, p, (1, 1)).ceil_mode(ceil);
        let n: usize = shape.iter().product();
        // Few distinct values, so windows hold ties, and a NaN now and then.
        // Negatives for the fused ReLU's all-zero windows.
        let x: Vec<f32> = rng
            .vec(n, -2.0, 4.0)
            .iter()
            .enumerate()
            .map(|(i, v)| if i % 97 == 5 { f32::NAN } else { v.floor() })
            .collect();
        let run = |dev: &Device| {
            let xb = Buffer::from_f32(dev, &x).unwrap();
            let (y, arg, out_shape) = max_pool2d(&xb, &shape, w).unwrap();
            let m: usize = out_shape.iter().product();
            let g = Buffer::from_f32(dev, &(0..m).map(|i| (i % 13) as f32 * 0.25 - 1.0).collect::<Vec<_>>()).unwrap();
            let dx = max_pool2d_backward(&g, &arg, &shape, w).unwrap();
            // Average pooling has no dilation: the dilated case instead
            // divides by the in-bounds count (count_include_pad = false).
            let (ya, avg_shape) = avg_pool2d(&xb, &shape, wa, d == (1, 1)).unwrap();
            let ma: usize = avg_shape.iter().product();
            let ga = Buffer::from_f32(dev, &(0..ma).map(|i| i as f32 * 0.01).collect::<Vec<_>>()).unwrap();
            let dxa = avg_pool2d_backward(&ga, &shape, wa, d == (1, 1)).unwrap();
            let (yd, _) = adaptive_avg_pool2d(&xb, &shape, (3, 2)).unwrap();
            let gd = Buffer::from_f32(dev, &vec![0.5; shape[0] * shape[1] * 6]).unwrap();
            let dxd = adaptive_avg_pool2d_backward(&gd, &shape, (3, 2)).unwrap();
            let (yr, argr, _) = max_pool2d_relu_io(&xb, &shape, w, Operands::F32).unwrap();
            let dxr = max_pool2d_backward(&g, &argr, &shape, w).unwrap();
            ([y, arg, dx, ya, dxa, yd, dxd, yr, argr, dxr], (m, ma))
        };
        let ((of, (m, ma)), (or, _)) = (run(&f), run(&r));
        let planes = shape[0] * shape[1];
        let lens = [m, m, n, ma, n, planes * 6, n, m, m, n];
        let names = [
            "max",
            "argmax",
            "max grad",
            "avg",
            "avg grad",
            "adaptive",
            "adaptive grad",
            "relu max",
            "relu argmax",
            "relu max grad",
        ];
        for (i, what) in names.iter().enumerate() {
            identical(&format!("{shape:?} k{k:?} s{s:?} p{p:?} d{d:?}: {what}"), &of[i], &or[i], lens[i]);
        }
    }
}

#[test]
fn reductions_match_the_reference_bit_for_bit() {
    use wgrad_gpu_core::ops::reduce::{reduce, ReduceOp};
    let (f, r) = pair();
    let mut rng = rng(6);
    type View = fn(Layout) -> Layout;
    let id: View = |l| l;
    // (buffer shape, view, axes): a bias gradient over N, H, W; rows and
    // columns of a matrix; a permuted and a narrowed (offset) view; all
    // axes; a scalar; zero outputs; large; long column runs.
    let cases: Vec<(Vec<usize>, View, Vec<usize>)> = vec![
        (vec![4, 3, 5, 7], id, vec![0, 2, 3]),
        (vec![9, 33], id, vec![1]),
        (vec![9, 33], id, vec![0]),
        (vec![6, 5, 4], |l| l.permute(&[2, 0, 1]).unwrap(), vec![1]),
        (vec![7, 10], |l| l.narrow(1, 3, 5).unwrap(), vec![0]),
        (vec![3, 4, 5], id, vec![]),
        (vec![], id, vec![]),
        (vec![0, 5], id, vec![1]),
        (vec![32, 64, 11, 11], id, vec![0, 2, 3]),
        (vec![300, 257], id, vec![0]),
        (vec![6, 40, 9], id, vec![1]),
        (vec![5, 30], |l| l.narrow(1, 4, 20).unwrap(), vec![0]),
        (vec![2048, 64], id, vec![0]),
        (vec![70_001], id, vec![0]),
        // Column runs longer than the fast path folds at a time (2048).
        (vec![3, 5000], id, vec![0]),
        (vec![2, 3, 4500], |l| l.narrow(2, 7, 4400).unwrap(), vec![1]),
    ];
    for (shape, view, axes) in cases {
        let n = shape.iter().product();
        let x: Vec<f32> =
            rng.vec(n, -2.0, 2.0).iter().enumerate().map(|(i, v)| if i == 17 { f32::NAN } else { *v }).collect();
        let layout = view(Layout::contiguous(&shape));
        for &op in ReduceOp::EXAMPLES {
            let run = |d: &Device| reduce(op, &Buffer::from_f32(d, &x).unwrap(), &layout, &axes, false).unwrap();
            let ((yf, out_shape), (yr, out_r)) = (run(&f), run(&r));
            assert_eq!(out_shape, out_r);
            identical(&format!("{} of {shape:?} over {axes:?}", op.name()), &yf, &yr, out_shape.iter().product());
        }
    }
}

#[test]
fn copies_match_the_reference_bit_for_bit() {
    use wgrad_gpu_core::ops::copy::{concat, contiguous, copy_into};
    let (f, r) = pair();
    let mut rng = rng(7);
    type View = fn(Layout) -> Layout;
    // Source views: permuted, narrowed (offset), broadcast (stride 0),
    // a scalar, zero-size, and large enough to be split over threads.
    let views: Vec<(Vec<usize>, View)> = vec![
        (vec![3, 4, 5], |l| l.permute(&[2, 0, 1]).unwrap()),
        (vec![6, 11], |l| l.narrow(1, 2, 7).unwrap()),
        (vec![1, 9], |l| Layout { shape: [5, 9].into(), strides: [0, 1].into(), offset: l.offset }),
        (vec![1], |l| l),
        (vec![0, 3], |l| l.permute(&[1, 0]).unwrap()),
        (vec![300, 257], |l| l.permute(&[1, 0]).unwrap()),
        (vec![64, 1200], |l| l.narrow(1, 100, 1000).unwrap()),
    ];
    for (shape, view) in views {
        let n = shape.iter().product();
        let x = rng.vec(n, -1.0, 1.0);
        let l = view(Layout::contiguous(&shape));
        let m = l.numel();
        let run = |d: &Device| {
            let xb = Buffer::from_f32(d, &x).unwrap();
            let dense = contiguous(&xb, &l).unwrap();
            // Into the middle of a wider buffer along the last dim: a
            // destination view that is not dense.
            let mut wide = l.shape.clone();
            *wide.last_mut().unwrap_or(&mut 0) += 3;
            let dst = Buffer::from_f32(d, &vec![7.0; wide.iter().product()]).unwrap();
            let last = wide.len() - 1;
            let dl = Layout::contiguous(&wide).narrow(last, 1, l.shape[last]).unwrap();
            copy_into(&xb, &l, &dst, &dl).unwrap();
            let (cat, _) = concat(&[(&xb, &l), (&dense, &Layout::contiguous(&l.shape))], 0).unwrap();
            ([dense, dst, cat], wide.iter().product::<usize>())
        };
        let ((of, wide), (or, _)) = (run(&f), run(&r));
        for (i, (what, len)) in [("contiguous", m), ("copy_into", wide), ("concat", 2 * m)].into_iter().enumerate() {
            identical(&format!("{what} of {:?} strides {:?}", l.shape, l.strides), &of[i], &or[i], len);
        }
    }
}

#[test]
fn gathers_and_scatters_match_the_reference_bit_for_bit() {
    use wgrad_gpu_core::ops::index::{gather, index_select, scatter_add};
    let (f, r) = pair();
    let mut rng = rng(8);
    // (x's buffer shape, view, dim): dense rows (an embedding table), a
    // transposed view along its last dim, a narrowed 3-D view, and large.
    type View = fn(Layout) -> Layout;
    let cases: Vec<(Vec<usize>, View, usize, usize)> = vec![
        (vec![10, 7], |l| l, 0, 13),
        (vec![6, 9], |l| l.permute(&[1, 0]).unwrap(), 1, 5),
        (vec![4, 8, 5], |l| l.narrow(1, 2, 5).unwrap(), 1, 9),
        (vec![3, 2], |l| l, 0, 0),
        (vec![300, 256], |l| l, 0, 2048),
    ];
    for (shape, view, dim, k) in cases {
        let n = shape.iter().product();
        let x = rng.vec(n, -1.0, 1.0);
        let l = view(Layout::contiguous(&shape));
        let size = l.shape[dim];
        // Repeats (out-of-range ids are errors, checked before either path
        // runs: parity_index.rs).
        let ids: Vec<u32> = (0..k).map(|_| rng.below(size as u32)).collect();
        let mut gshape = l.shape.clone();
        gshape[dim] = k.min(gshape[dim] + 1);
        let gn: usize = gshape.iter().product();
        let gids: Vec<u32> = (0..gn).map(|_| rng.below(size as u32)).collect();
        let src = rng.vec(gn, -1.0, 1.0);
        let run = |d: &Device| {
            let xb = Buffer::from_f32(d, &x).unwrap();
            let (sel, sel_shape) = index_select(&xb, &l, dim, &Buffer::from_u32(d, &ids).unwrap(), k).unwrap();
            let gi = Buffer::from_u32(d, &gids).unwrap();
            let gat = gather(&xb, &l, dim, &gi, &gshape).unwrap();
            let dst = Buffer::from_f32(d, &vec![0.5; l.numel()]).unwrap();
            scatter_add(&dst, &l.shape, dim, &gi, &Buffer::from_f32(d, &src).unwrap(), &gshape).unwrap();
            ([sel, gat, dst], sel_shape.iter().product::<usize>())
        };
        let ((of, sn), (or, _)) = (run(&f), run(&r));
        for (i, (what, len)) in
            [("index_select", sn), ("gather", gn), ("scatter_add", l.numel())].into_iter().enumerate()
        {
            identical(&format!("{what} of {:?} along {dim}", l.shape), &of[i], &or[i], len);
        }
    }
}

#[test]
fn row_ops_match_the_reference_bit_for_bit() {
    use wgrad_gpu_core::ops::softmax::{
        cross_entropy_rows, cross_entropy_rows_backward, softmax_rows, softmax_rows_backward, CeArgs, CeTarget,
    };
    let (f, r) = pair();
    let mut rng = rng(9);
    // (rows, cols): one row, odd, wide, and enough rows to split over threads.
    for (rows, cols) in [(1, 1), (7, 33), (3, 1000), (2048, 67)] {
        let n = rows * cols;
        let (x, g) = (rng.vec(n, -4.0, 4.0), rng.vec(n, -1.0, 1.0));
        let gr = rng.vec(rows, 0.1, 1.0);
        // Class targets with an ignored class and one out of range; class
        // weights; probability targets.
        // Class 0 is the ignore index below (out-of-range classes are errors: parity_softmax.rs).
        let classes: Vec<u32> = (0..rows).map(|_| rng.below(cols as u32)).collect();
        let (cw, probs) = (rng.vec(cols, 0.5, 2.0), rng.vec(n, 0.0, 1.0));
        let run = |d: &Device| {
            let up = |v: &[f32]| Buffer::from_f32(d, v).unwrap();
            let (xb, gb, rb) = (up(&x), up(&g), up(&gr));
            let mut out = Vec::new();
            for log in [false, true] {
                let y = softmax_rows(&xb, rows, cols, log).unwrap();
                out.push((softmax_rows_backward(&y, &gb, rows, cols, log).unwrap(), n));
                out.push((y, n));
            }
            let (t, w, p) = (Buffer::from_u32(d, &classes).unwrap(), up(&cw), up(&probs));
            let base = CeArgs {
                rows,
                cols,
                target: CeTarget::Classes(&t),
                weight: Some(&w),
                ignore_index: Some(0),
                label_smoothing: 0.1,
            };
            for args in [base, CeArgs { target: CeTarget::Probs(&p), weight: None, ignore_index: None, ..base }] {
                let (loss, weight, pr) = cross_entropy_rows(&xb, &args).unwrap();
                out.push((cross_entropy_rows_backward(&pr, &args, &rb).unwrap(), n));
                out.extend([(loss, rows), (weight, rows), (pr, n)]);
            }
            out
        };
        for (i, ((a, len), (b, _))) in run(&f).iter().zip(run(&r).iter()).enumerate() {
            identical(&format!("[{rows}, {cols}] result {i}"), a, b, *len);
        }
    }
}

/// Row normalisation (layer and group norm), plain and with an affine,
/// forward and backward: the fast path sums each row in lanes
/// (`cpu/norm_rows.rs`), so its last bits may differ from the reference's.
#[test]
fn row_norms_match_the_reference() {
    use wgrad_gpu_core::ops::norm::{
        normalize_rows, normalize_rows_affine_backward, normalize_rows_affine_io, normalize_rows_backward, Operands,
    };
    let (f, r) = pair();
    let mut rng = rng(10);
    // One row, odd widths (lane tails), a shifted mean, enough rows to split.
    for (rows, cols, shift) in [(1, 1, 0.0), (7, 33, 0.0), (3, 1000, 50.0), (2048, 67, 0.0), (300, 256, 3.0)] {
        let n = rows * cols;
        let x: Vec<f32> = rng.vec(n, -4.0, 4.0).into_iter().map(|v| v + shift).collect();
        let (g, w, b) = (rng.vec(n, -1.0, 1.0), rng.vec(cols, 0.5, 1.5), rng.vec(cols, -1.0, 1.0));
        let run = |d: &Device| {
            let up = |v: &[f32]| Buffer::from_f32(d, v).unwrap();
            let (xb, gb, wb, bb) = (up(&x), up(&g), up(&w), up(&b));
            let (y, mean, rstd) = normalize_rows(&xb, rows, cols, 1e-5).unwrap();
            let dx = normalize_rows_backward(&gb, &y, &rstd, rows, cols).unwrap();
            let mut out = vec![(y, n), (mean, rows), (rstd, rows), (dx, n)];
            for bias in [Some(&bb), None] {
                let (y, z, _, rstd) =
                    normalize_rows_affine_io(&xb, Operands::F32, (rows, cols, 1e-5), &wb, bias).unwrap();
                let dx = normalize_rows_affine_backward(&gb, &y, &rstd, &wb, (rows, cols)).unwrap();
                out.extend([(z, n), (dx, n)]);
            }
            out
        };
        for (i, ((a, len), (b, _))) in run(&f).iter().zip(run(&r).iter()).enumerate() {
            same(&format!("[{rows}, {cols}] result {i}"), a, b, *len, 1e-5, 1e-5);
        }
    }
}

/// The CPU backend's multiversioned kernels (`cpu/simd.rs`: batch norm's
/// passes, the LSTM cell, row normalisation) give the same bits at every vector level the
/// host has: the copies differ only in register width. On a host with
/// AVX-512 (CI's) this compares three builds of each kernel; a host with
/// only the baseline has nothing to compare.
#[test]
fn simd_levels_compute_the_same_bits() {
    use wgrad_gpu_core::ops::norm::{normalize_rows_affine_backward, normalize_rows_affine_io, Operands};
    use wgrad_gpu_core::ops::recurrent::{recurrent_backward, recurrent_forward, RecurrentKind};
    use wgrad_gpu_core::{host_simd_level, set_simd_level, simd_level, SimdLevel};
    let dev = Device::cpu();
    let mut rng = rng(9);
    let case = BatchNormCase::random(&mut rng, (6, 5, 301), 0.0);
    let (t, batch, h) = (5, 3, 37);
    let (xw, w_hh, b_hh) =
        (rng.vec(t * batch * 4 * h, -1.0, 1.0), rng.vec(4 * h * h, -0.2, 0.2), rng.vec(4 * h, -0.5, 0.5));
    let (h0, c0, dy) =
        (rng.vec(batch * h, -1.0, 1.0), rng.vec(batch * h, -1.0, 1.0), rng.vec(t * batch * h, -1.0, 1.0));
    let up = |v: &[f32]| Buffer::from_f32(&dev, v).unwrap();
    let bits = |b: &Buffer| b.to_u32().unwrap();
    let run = || {
        let mut out: Vec<Vec<u32>> = case.run(&dev).iter().map(bits).collect();
        let (whh, bhh) = (up(&w_hh), up(&b_hh));
        let saved = recurrent_forward(
            RecurrentKind::Lstm,
            &up(&xw),
            &whh,
            Some(&bhh),
            &up(&h0),
            Some(&up(&c0)),
            t,
            batch,
            h,
            false,
        )
        .unwrap();
        let g = recurrent_backward(&saved, &whh, &up(&dy), None, None).unwrap();
        out.extend([bits(saved.states()), bits(&g.dxw), bits(&g.dw_hh), bits(&g.dh0), bits(&g.dc0.unwrap())]);
        // Row normalisation with an affine, forward and backward (`cpu/norm_rows.rs`).
        let (rows, cols) = (8, 67);
        let (x, wb, bb) = (up(&xw[..rows * cols]), up(&b_hh[..cols]), up(&b_hh[cols..2 * cols]));
        let (y, z, mean, rstd) =
            normalize_rows_affine_io(&x, Operands::F32, (rows, cols, 1e-5), &wb, Some(&bb)).unwrap();
        let dx = normalize_rows_affine_backward(&up(&dy[..rows * cols]), &y, &rstd, &wb, (rows, cols)).unwrap();
        out.extend([bits(&y), bits(&z), bits(&mean), bits(&rstd), bits(&dx)]);
        out
    };
    let (host, before) = (host_simd_level(), simd_level());
    let levels: Vec<SimdLevel> =
        [SimdLevel::Baseline, SimdLevel::Avx2, SimdLevel::Avx512].into_iter().filter(|&l| l <= host).collect();
    let mut first = None;
    for &level in &levels {
        assert_eq!(set_simd_level(level), level, "the host has {}", level.name());
        let got = run();
        match &first {
            None => first = Some(got),
            Some(want) => {
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!(g == w, "output {i} at {} differs from the baseline's", level.name());
                }
            }
        }
    }
    // The level a capped run (`WGRAD_CPU_SIMD`, .ci/run) asked for, again.
    set_simd_level(before);
}

/// Outputs allocated without clearing (`Buffer::alloc_overwritten`: the
/// op writes every word) must not show what a pooled buffer held: each
/// op runs, its outputs are overwritten with NaN and freed, and the same
/// ops run again on the buffers they left; every word must come out as
/// the first time, on the fast device and on the reference. Empty dims
/// (attention with no queries or no keys) included, where a path that
/// splits work by rows has none to split.
#[test]
fn outputs_do_not_depend_on_what_pooled_buffers_held() {
    use wgrad_gpu_core::ops::attention::{attention_backward, attention_forward, AttnDims};
    use wgrad_gpu_core::ops::copy::{concat, contiguous};
    use wgrad_gpu_core::ops::epilogue::{Bias, BiasAxis, Epilogue};
    use wgrad_gpu_core::ops::index::gather;
    use wgrad_gpu_core::ops::matmul::{matmul_epilogue, MatmulConfig};
    use wgrad_gpu_core::ops::norm::{normalize_rows_affine_backward, normalize_rows_affine_io, Operands};
    use wgrad_gpu_core::ops::softmax::{
        cross_entropy_rows, cross_entropy_rows_backward, softmax_rows, softmax_rows_backward, CeArgs, CeTarget,
    };
    let mut rng = rng(12);
    let (rows, cols) = (300, 67);
    let n = rows * cols;
    let (x, g, w) = (rng.vec(n, -2.0, 2.0), rng.vec(n, -1.0, 1.0), rng.vec(cols, 0.5, 1.5));
    let classes: Vec<u32> = (0..rows).map(|_| rng.below(cols as u32)).collect();
    let square = rng.vec(cols * cols, -1.0, 1.0);
    let (bh, lq, lk, d) = (3, 37, 29, 8);
    let (q, k, v) = (rng.vec(bh * lq * d, -1.0, 1.0), rng.vec(bh * lk * d, -1.0, 1.0), rng.vec(bh * lk * d, -1.0, 1.0));
    let ops = |dev: &Device| -> Vec<Buffer> {
        let up = |v: &[f32]| Buffer::from_f32(dev, v).unwrap();
        let (xb, gb, wb) = (up(&x), up(&g), up(&w));
        let mut out = Vec::new();
        let (y, z, mean, rstd) =
            normalize_rows_affine_io(&xb, Operands::F32, (rows, cols, 1e-5), &wb, Some(&wb)).unwrap();
        out.push(normalize_rows_affine_backward(&gb, &y, &rstd, &wb, (rows, cols)).unwrap());
        out.extend([y, z, mean, rstd]);
        let s = softmax_rows(&xb, rows, cols, true).unwrap();
        out.push(softmax_rows_backward(&s, &gb, rows, cols, true).unwrap());
        out.push(s);
        let t = Buffer::from_u32(dev, &classes).unwrap();
        let args = CeArgs {
            rows,
            cols,
            target: CeTarget::Classes(&t),
            weight: None,
            ignore_index: Some(1),
            label_smoothing: 0.0,
        };
        let (loss, weight, probs) = cross_entropy_rows(&xb, &args).unwrap();
        out.push(cross_entropy_rows_backward(&probs, &args, &weight).unwrap());
        out.extend([loss, weight, probs]);
        // Transposed, a part of a concatenation, and a gather along dim 1.
        let l = Layout::contiguous(&[rows, cols]);
        let t_view = l.permute(&[1, 0]).unwrap();
        out.push(contiguous(&xb, &t_view).unwrap());
        out.push(concat(&[(&xb, &l), (&gb, &l)], 1).unwrap().0);
        let idx: Vec<u32> = (0..n).map(|i| ((i * 7) % cols) as u32).collect();
        out.push(gather(&xb, &l, 1, &Buffer::from_u32(dev, &idx).unwrap(), &[rows, cols]).unwrap());
        // A product with a bias by columns and a residual (the epilogue).
        let epi = Epilogue {
            bias: Some(Bias { values: &wb, axis: BiasAxis::Columns, groups: 1 }),
            residual: Some(&xb),
            ..Default::default()
        };
        let sq = Layout::contiguous(&[cols, cols]);
        let wsq = up(&square);
        out.push(matmul_epilogue(MatmulConfig::default(), &epi, &xb, &l, &wsq, &sq).unwrap().0);
        // Attention, causal and not, and with no queries or no keys.
        let (qb, kb, vb) = (up(&q), up(&k), up(&v));
        let full = AttnDims { batch: bh, heads: 1, lq, lk, d, dv: d };
        for (dims, causal) in
            [(full, false), (full, true), (AttnDims { lq: 0, ..full }, false), (AttnDims { lk: 0, ..full }, false)]
        {
            let (o, lse) = attention_forward(&qb, &kb, &vb, None, dims, causal, 0.3).unwrap();
            let go = up(&vec![0.5; (dims.bh() * dims.lq * d).max(1)]);
            let (dq, dk, dv) = attention_backward(&qb, &kb, &vb, &o, &lse, &go, None, dims, causal, 0.3).unwrap();
            out.extend([o, lse, dq, dk, dv]);
        }
        out
    };
    for dev in [Device::cpu(), Device::cpu_reference()] {
        let first = ops(&dev);
        let want: Vec<Vec<u32>> = first.iter().map(|b| b.to_u32().unwrap()).collect();
        for b in &first {
            b.write_bytes(&f32::NAN.to_le_bytes().repeat(b.len_bytes() as usize / 4)).unwrap();
        }
        drop(first);
        let again = ops(&dev);
        for (i, (b, want)) in again.iter().zip(&want).enumerate() {
            let got = b.to_u32().unwrap();
            if let Some(w) = (0..want.len()).find(|&w| got[w] != want[w]) {
                panic!(
                    "{}: result {i}, word {w}: {:#x}, was {:#x}: what its pooled buffer held",
                    dev.name(),
                    got[w],
                    want[w]
                );
            }
        }
    }
}

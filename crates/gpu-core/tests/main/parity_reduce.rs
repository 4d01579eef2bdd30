//! Reductions over any set of axes: GPU kernel vs CPU twin, hand-checked values, errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::reduce::{reduce, ReduceOp};
use wgrad_gpu_core::testing::assert_close;
use wgrad_gpu_core::{Buffer, Device, Layout};

fn is_arg(op: ReduceOp) -> bool {
    matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin)
}

/// Runs `op` on both devices over the same view and compares: indices and
/// max/min exactly, sums within f32 accumulation error (the twin sums in f64).
#[track_caller]
fn check(g: &Device, c: &Device, data: &[f32], view: &Layout, axes: &[usize], keepdim: bool) {
    let (xg, xc) = both(g, c, data);
    for &op in ReduceOp::EXAMPLES {
        let what = format!("{op:?} of {:?} (strides {:?}) over {axes:?}, keepdim {keepdim}", view.shape, view.strides);
        let (yg, sg) = reduce(op, &xg, view, axes, keepdim).unwrap();
        let (yc, sc) = reduce(op, &xc, view, axes, keepdim).unwrap();
        assert_eq!(sg, sc, "{what}: shapes");
        let n: usize = sg.iter().product();
        if is_arg(op) || matches!(op, ReduceOp::Max | ReduceOp::Min) {
            assert_eq!(yg.to_u32().unwrap()[..n], yc.to_u32().unwrap()[..n], "{what}");
        } else {
            same(&what, &yg, &yc, n, 1e-5, 1e-5);
        }
    }
}

/// (shape, axes): one axis, several non-adjacent axes, all axes (empty list), unsorted axes.
const CASES: &[(&[usize], &[usize])] = &[
    (&[1], &[0]),
    (&[7], &[0]),
    (&[33], &[]),
    (&[1023], &[0]),
    (&[], &[]),
    (&[7, 33], &[0]),
    (&[7, 33], &[1]),
    (&[1023, 3], &[0]),
    (&[3, 1, 5], &[0, 2]),
    (&[4, 1, 33], &[2, 0]),
    (&[2, 3, 4, 5], &[1, 3]),
    (&[2, 3, 4, 5], &[0, 2, 3]),
    (&[2, 3, 4, 5], &[]),
    (&[5, 7, 1, 9], &[2]),
    // Non-adjacent reduced axes longer than a workgroup (a bias gradient over
    // N, H, W): each thread's walk carries across the inner dim.
    (&[8, 3, 10, 13], &[0, 2, 3]),
    (&[33, 5, 70], &[0, 2]),
    // Column reductions (outputs along the unit-stride axis), one thread per column.
    (&[33, 130], &[0]),
    (&[2048, 300], &[0]),
    (&[3, 40, 129], &[0, 1]),
    // Long column sums run in two levels (64-row chunk partials, then their
    // sum): a last chunk of one row, and partials that are chunked again.
    (&[129, 128], &[0]),
    (&[8193, 130], &[0]),
    (&[2, 1000, 136], &[0, 1]),
    // One thread per output on CPU adapters (64 outputs or more): rows
    // longer than a workgroup, past SERIAL_MAX_LONG, and a two-axis walk.
    (&[100, 300], &[1]),
    (&[64, 5000], &[1]),
    (&[4, 70, 33], &[0, 2]),
    // Long sums and means over few outputs run on a workgroup per chunk of
    // 8,192 elements, then a sum of the partials: a last chunk of a few
    // elements, one output, and a walk over non-adjacent axes from a
    // chunk's start.
    (&[3, 40_970], &[1]),
    (&[70_000], &[]),
    (&[2, 300, 5, 60], &[1, 3]),
];

#[test]
fn every_reduction_matches_twin() {
    let Some((g, c)) = devices("every_reduction_matches_twin") else { return };
    let mut r = rng(10);
    for &(shape, axes) in CASES {
        let view = Layout::contiguous(shape);
        let data = r.vec(view.numel(), -1.0, 1.0);
        for keepdim in [false, true] {
            check(&g, &c, &data, &view, axes, keepdim);
        }
    }
}

#[test]
fn reductions_read_permuted_and_narrowed_views() {
    let Some((g, c)) = devices("reductions_read_permuted_and_narrowed_views") else { return };
    let mut r = rng(11);
    let base = Layout::contiguous(&[3, 5, 7, 4]);
    let data = r.vec(base.numel(), -2.0, 2.0);
    let permuted = base.permute(&[2, 0, 3, 1]).unwrap(); // [7, 3, 4, 5]
    let narrowed = permuted.narrow(0, 2, 4).unwrap().narrow(3, 1, 3).unwrap(); // [4, 3, 4, 3], offset > 0
    assert!(!narrowed.is_contiguous() && narrowed.offset > 0);
    for view in [&permuted, &narrowed] {
        for axes in [&[1][..], &[0, 3], &[2, 1], &[]] {
            check(&g, &c, &data, view, axes, false);
        }
    }
    check(&g, &c, &data, &permuted, &[0, 2], true);
}

#[test]
fn integer_data_has_ties_and_exact_sums() {
    // Small integers: argmax/argmin ties everywhere (first index must win on
    // both devices despite the tree), and sums that are exact in f32.
    let Some((g, c)) = devices("integer_data_has_ties_and_exact_sums") else { return };
    let mut r = rng(12);
    for (shape, axes) in [(&[1023][..], &[0][..]), (&[9, 600], &[1]), (&[6, 5, 70], &[0, 2])] {
        let view = Layout::contiguous(shape);
        let data: Vec<f32> = (0..view.numel()).map(|_| r.below(4) as f32).collect();
        check(&g, &c, &data, &view, axes, false);
        let (xg, xc) = both(&g, &c, &data);
        let sum = |x| reduce(ReduceOp::Sum, x, &view, axes, false).unwrap().0.to_f32().unwrap();
        assert_eq!(sum(&xg), sum(&xc), "exact sums");
    }
}

#[test]
fn sums_are_deterministic() {
    let Some((g, _)) = devices("sums_are_deterministic") else { return };
    let data = rng(13).vec(50_000, -1.0, 1.0);
    let x = Buffer::from_f32(&g, &data).unwrap();
    let view = Layout::contiguous(&[50_000]);
    let first = reduce(ReduceOp::Sum, &x, &view, &[], false).unwrap().0.to_u32().unwrap();
    for _ in 0..3 {
        assert_eq!(reduce(ReduceOp::Sum, &x, &view, &[], false).unwrap().0.to_u32().unwrap(), first);
    }
}

#[test]
fn variance_survives_a_large_mean() {
    // E[x²] − E[x]² in f32 would lose every digit here; two passes keep them.
    let Some((g, c)) = devices("variance_survives_a_large_mean") else { return };
    let data: Vec<f32> = rng(14).vec(1000, -1.0, 1.0).iter().map(|v| 10_000.0 + v).collect();
    let view = Layout::contiguous(&[1000]);
    let (xg, xc) = both(&g, &c, &data);
    let var = |x| reduce(ReduceOp::Var { correction: 1 }, x, &view, &[], false).unwrap().0.to_f32().unwrap();
    let (vg, vc) = (var(&xg), var(&xc));
    assert!((vc[0] - 1.0 / 3.0).abs() < 0.05, "twin variance {}", vc[0]);
    assert_close("var with mean 1e4", &vg, &vc, 1e-3, 0.0);
}

#[test]
fn more_than_65535_outputs_fold_the_grid() {
    let Some((g, c)) = devices("more_than_65535_outputs_fold_the_grid") else { return };
    let view = Layout::contiguous(&[2, 65_537]);
    let data = rng(15).vec(view.numel(), -1.0, 1.0);
    let (xg, xc) = both(&g, &c, &data);
    for op in [ReduceOp::Sum, ReduceOp::ArgMin] {
        let (yg, shape) = reduce(op, &xg, &view, &[0], false).unwrap();
        let (yc, _) = reduce(op, &xc, &view, &[0], false).unwrap();
        assert_eq!(shape, vec![65_537]);
        same(&format!("{op:?}"), &yg, &yc, 65_537, 1e-6, 1e-6);
    }
}

/// Runs `op` on the CPU twin and, when there is one, the GPU, and returns the
/// raw output words of both after checking that they agree exactly.
fn words(op: ReduceOp, data: &[f32], shape: &[usize], axes: &[usize], keepdim: bool) -> (Vec<u32>, Vec<usize>) {
    let view = Layout::contiguous(shape);
    let run = |d: &Device| {
        let (y, s) = reduce(op, &Buffer::from_f32(d, data).unwrap(), &view, axes, keepdim).unwrap();
        let n = s.iter().product::<usize>();
        (y.to_u32().unwrap()[..n].to_vec(), s)
    };
    let cpu = run(&Device::cpu_reference());
    if let Some(g) = wgrad_gpu_core::testing::gpu_or_skip("reduce hand-checked values") {
        let gpu = run(&g);
        assert_eq!(gpu.1, cpu.1, "{op:?}: shape");
        let (a, b): (Vec<f32>, Vec<f32>) = (from_bits(&gpu.0), from_bits(&cpu.0));
        if is_arg(op) {
            assert_eq!(gpu.0, cpu.0, "{op:?}");
        } else {
            assert_close(&format!("{op:?}"), &a, &b, 1e-6, 1e-6);
        }
    }
    (cpu.0, cpu.1.to_vec())
}

fn from_bits(w: &[u32]) -> Vec<f32> {
    w.iter().map(|&b| f32::from_bits(b)).collect()
}

fn values(op: ReduceOp, data: &[f32], shape: &[usize], axes: &[usize], keepdim: bool) -> (Vec<f32>, Vec<usize>) {
    let (w, s) = words(op, data, shape, axes, keepdim);
    (from_bits(&w), s.to_vec())
}

#[test]
fn hand_checked_values() {
    let x = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(values(ReduceOp::Sum, &x, &[4], &[0], false), (vec![10.0], vec![]));
    assert_eq!(values(ReduceOp::Mean, &x, &[4], &[], false).0, vec![2.5]);
    assert_close("var", &values(ReduceOp::Var { correction: 1 }, &x, &[4], &[0], false).0, &[1.666_666_6], 1e-6, 0.0);
    assert_eq!(values(ReduceOp::Var { correction: 0 }, &x, &[4], &[0], false).0, vec![1.25]);
    // Var of one element: 0 with correction 0, 0/0 = NaN with correction 1 (as torch.var).
    assert_eq!(values(ReduceOp::Var { correction: 0 }, &[5.0], &[1], &[0], false).0, vec![0.0]);
    assert!(values(ReduceOp::Var { correction: 1 }, &[5.0], &[1], &[0], false).0[0].is_nan());
    // dof < 0 clamps to 0: positive / 0 = inf.
    assert_eq!(values(ReduceOp::Var { correction: 3 }, &[1.0, 2.0], &[2], &[0], false).0, vec![f32::INFINITY]);

    // [[1, 5, 2], [7, 0, 7]]
    let m = [1.0, 5.0, 2.0, 7.0, 0.0, 7.0];
    assert_eq!(values(ReduceOp::Max, &m, &[2, 3], &[0], false), (vec![7.0, 5.0, 7.0], vec![3]));
    assert_eq!(values(ReduceOp::Min, &m, &[2, 3], &[1], true), (vec![1.0, 0.0], vec![2, 1]));
    assert_eq!(values(ReduceOp::Sum, &m, &[2, 3], &[0, 1], true), (vec![22.0], vec![1, 1]));
    assert_eq!(values(ReduceOp::Mean, &m, &[2, 3], &[1], false).0, vec![8.0 / 3.0, 14.0 / 3.0]);
    // Ties pick the first index: argmax of [7, 0, 7] is 0.
    assert_eq!(words(ReduceOp::ArgMax, &m, &[2, 3], &[1], false), (vec![1, 0], vec![2]));
    assert_eq!(words(ReduceOp::ArgMin, &m, &[2, 3], &[0], false), (vec![0, 1, 0], vec![3]));
    // Over all axes the index is into the flattened tensor: the first 7 is at 3.
    assert_eq!(words(ReduceOp::ArgMax, &m, &[2, 3], &[], false), (vec![3], vec![]));
    // Ties spread over a long axis, seen by different threads of the tree.
    let mut long = vec![0.0; 1000];
    long[700] = 9.0;
    long[300] = 9.0;
    long[999] = -1.0;
    long[600] = -1.0;
    assert_eq!(words(ReduceOp::ArgMax, &long, &[1000], &[0], false).0, vec![300]);
    assert_eq!(words(ReduceOp::ArgMin, &long, &[1000], &[0], false).0, vec![600]);
}

#[test]
fn several_axes_index_the_flattened_block() {
    // x[i, j, k] = -(distance to (1, 2, 3)); argmax over axes (0, 2) gives
    // i * 4 + k of the best element in each j-slice, here always 1 * 4 + 3.
    let shape = [2, 3, 4];
    let data: Vec<f32> = (0..24)
        .map(|f| {
            let (i, j, k) = (f / 12, f / 4 % 3, f % 4);
            -((i as f32 - 1.0).abs() + (j as f32 - 2.0).abs() + (k as f32 - 3.0).abs())
        })
        .collect();
    assert_eq!(words(ReduceOp::ArgMax, &data, &shape, &[2, 0], false), (vec![7, 7, 7], vec![3]));
    assert_eq!(words(ReduceOp::ArgMax, &data, &shape, &[0, 2], true), (vec![7, 7, 7], vec![1, 3, 1]));
    assert_eq!(values(ReduceOp::Max, &data, &shape, &[0, 2], false).0, vec![-2.0, -1.0, 0.0]);
}

#[test]
fn nan_propagates_like_pytorch() {
    let x = [1.0, f32::NAN, 3.0, f32::NAN];
    for op in [ReduceOp::Max, ReduceOp::Min, ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Var { correction: 1 }] {
        assert!(values(op, &x, &[4], &[0], false).0[0].is_nan(), "{op:?}");
    }
    assert_eq!(words(ReduceOp::ArgMax, &x, &[4], &[0], false).0, vec![1]);
    assert_eq!(words(ReduceOp::ArgMin, &x, &[4], &[0], false).0, vec![1]);
}

#[test]
fn zero_size_reductions_follow_pytorch() {
    let cpu = Device::cpu_reference();
    let devs: Vec<Device> = std::iter::once(cpu).chain(wgrad_gpu_core::testing::gpu_or_skip("zero-size")).collect();
    for d in &devs {
        let x = Buffer::from_f32(d, &[]).unwrap();
        let view = Layout::contiguous(&[0, 3]);
        let r = |op, axes: &[usize], keepdim| reduce(op, &x, &view, axes, keepdim);
        let (s, shape) = r(ReduceOp::Sum, &[0], false).unwrap();
        assert_eq!((s.to_f32().unwrap(), shape.to_vec()), (vec![0.0; 3], vec![3]), "{d:?}");
        let (m, shape) = r(ReduceOp::Mean, &[0], true).unwrap();
        assert_eq!(shape, vec![1, 3]);
        assert!(m.to_f32().unwrap().iter().all(|v| v.is_nan()), "{d:?}");
        assert!(r(ReduceOp::Var { correction: 1 }, &[], false).unwrap().0.to_f32().unwrap()[0].is_nan());
        // Reducing the non-empty axis leaves an empty result.
        let (e, shape) = r(ReduceOp::Max, &[1], false).unwrap();
        assert_eq!((e.to_f32().unwrap(), shape.to_vec()), (vec![], vec![0]));
        for op in [ReduceOp::Max, ReduceOp::Min, ReduceOp::ArgMax, ReduceOp::ArgMin] {
            let msg = r(op, &[0], false).unwrap_err().to_string();
            assert!(msg.contains(op.name()) && msg.contains("[0, 3]"), "{msg}");
        }
    }
}

#[test]
fn bad_axes_are_errors_naming_op_axes_and_shape() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[0.0; 6]).unwrap();
    let view = Layout::contiguous(&[2, 3]);
    for axes in [&[2][..], &[0, 0], &[1, 0, 1]] {
        let msg = reduce(ReduceOp::Mean, &x, &view, axes, false).unwrap_err().to_string();
        assert!(msg.contains("mean") && msg.contains(&format!("{axes:?}")) && msg.contains("[2, 3]"), "{msg}");
    }
    let short = Buffer::from_f32(&c, &[0.0; 5]).unwrap();
    assert!(reduce(ReduceOp::Sum, &short, &view, &[], false).is_err());
}

/// On CPU adapters a reduction with 64 outputs or more runs one thread per
/// output (`serial`), whatever its length: a workgroup per output pays a
/// barrier tree that makes llvmpipe run the shader as a coroutine. Fewer
/// outputs, and every GPU, keep a workgroup per output for long rows.
#[test]
fn long_reductions_pick_a_thread_per_output_on_cpu_adapters() {
    // A device of its own: the profile must not see the other tests' launches.
    let Some(g) = wgrad_gpu_core::testing::fresh_gpu_or_skip("long_reductions_pick_a_thread_per_output") else {
        return;
    };
    let cpu_adapter = g.info().device_type == "Cpu";
    for rows in [63, 64] {
        let cols = 300;
        let x = Buffer::from_f32(&g, &rng(5).vec(rows * cols, -1.0, 1.0)).unwrap();
        let view = Layout::contiguous(&[rows, cols]);
        let (_, p) = g.profile(|| reduce(ReduceOp::Sum, &x, &view, &[1], false).unwrap()).unwrap();
        let entries: Vec<&str> = p.launches.iter().map(|l| l.family.rsplit(':').next().unwrap()).collect();
        let want = if cpu_adapter && rows >= 64 { "serial" } else { "main" };
        assert_eq!(entries, [want], "{rows} rows of {cols} on {}", g.name());
    }
}

#[test]
fn long_sums_over_few_outputs_spread_over_workgroups() {
    // A device of its own: the profile must not see the other tests' launches.
    let Some(g) = wgrad_gpu_core::testing::fresh_gpu_or_skip("long_sums_over_few_outputs_spread_over_workgroups")
    else {
        return;
    };
    let c = Device::cpu_reference();
    // A loss's mean over a whole [64, 32, 256] tensor, read through a view
    // at an offset, as an LSTM's outputs are.
    let base = Layout::contiguous(&[65, 32, 256]);
    let view = base.narrow(0, 1, 64).unwrap();
    let data = rng(15).vec(base.numel(), -1.0, 1.0);
    let (xg, xc) = both(&g, &c, &data);
    for op in [ReduceOp::Sum, ReduceOp::Mean] {
        let ((yg, _), p) = g.profile(|| reduce(op, &xg, &view, &[], false).unwrap()).unwrap();
        let (yc, _) = reduce(op, &xc, &view, &[], false).unwrap();
        same(&format!("{op:?}"), &yg, &yc, 1, 1e-5, 1e-6);
        // One workgroup per output would be one launch.
        assert_eq!(p.launches.len(), 2, "{op:?}: the chunks' partial sums, then one launch adding them");
    }
}

//! The matmul kernels (tiled and subgroup) vs the CPU twin: awkward sizes,
//! batches with broadcasting, transposed and offset views, empty products.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::matmul::{matmul, matmul_config, matmul_with, MatmulConfig, MatmulKernel, SplitK};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip};
use wgrad_gpu_core::{Buffer, Device, Layout};

/// The GPU kernels under test: the tiled one always, the subgroup one where
/// the adapter can run it (lavapipe can).
fn kernels(gpu: &Device) -> Vec<MatmulKernel> {
    if gpu.name().contains("llvmpipe") {
        assert!(MatmulKernel::Subgroup.runs_on(gpu), "lavapipe offers 8-lane subgroups: the subgroup kernel must run");
        assert_eq!(MatmulKernel::Auto.resolve(gpu), MatmulKernel::Subgroup);
    }
    [MatmulKernel::Tiled, MatmulKernel::Subgroup].into_iter().filter(|k| k.runs_on(gpu)).collect()
}

/// Tolerance for sums of `k` products of values in [-1, 1). GPU and twin add
/// in different orders; f32 rounding in a length-k sum grows like a random
/// walk over partial sums of size ~sqrt(k)/3, i.e. an error of ~0.1 * eps * k
/// for sequential summation (less for the blocked sums both sides use).
/// eps * k is several times that, yet ~1e-4 at k = 1023 where results are
/// ~10: far below what an indexing bug (a wrong or missing term) produces.
fn atol(k: usize) -> f32 {
    f32::EPSILON * k.max(1) as f32
}

/// `a @ b` on the GPU with `kernel` and on the twin, over the same buffers
/// and views; asserts they agree and returns (result, shape) of the twin.
#[track_caller]
fn check(
    (g, c): (&Device, &Device),
    kernel: MatmulKernel,
    (da, la): (&[f32], &Layout),
    (db, lb): (&[f32], &Layout),
) -> (Vec<f32>, Vec<usize>) {
    let what = format!(
        "{kernel:?} {:?}{:?}+{} @ {:?}{:?}+{}",
        la.shape, la.strides, la.offset, lb.shape, lb.strides, lb.offset
    );
    let (ag, ac) = both(g, c, da);
    let (bg, bc) = both(g, c, db);
    let (zg, sg) = matmul_with(kernel, &ag, la, &bg, lb).unwrap();
    let (zc, sc) = matmul(&ac, la, &bc, lb).unwrap();
    assert_eq!(sg, sc, "{what}: shapes");
    let n: usize = sc.iter().product();
    let k = la.shape[la.rank() - 1];
    same(&what, &zg, &zc, n, 1e-5, atol(k));
    (zc.to_f32().unwrap()[..n].to_vec(), sc.to_vec())
}

/// Random data for a contiguous `shape` and its layout.
fn operand(r: &mut wgrad_gpu_core::testing::Rng, shape: &[usize]) -> (Vec<f32>, Layout) {
    let l = Layout::contiguous(shape);
    (r.vec(l.numel(), -1.0, 1.0), l)
}

#[test]
fn twin_matches_a_hand_computed_product() {
    let c = Device::cpu_reference();
    // [[1, 2, 3], [4, 5, 6]] @ [[7, 8], [9, 10], [11, 12]]
    let a = Buffer::from_f32(&c, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let b = Buffer::from_f32(&c, &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]).unwrap();
    let (z, shape) = matmul(&a, &Layout::contiguous(&[2, 3]), &b, &Layout::contiguous(&[3, 2])).unwrap();
    assert_eq!(shape, vec![2, 2]);
    assert_eq!(z.to_f32().unwrap(), vec![58.0, 64.0, 139.0, 154.0]);
    // aᵀ read as [3, 2] through strides: [[1, 4], [2, 5], [3, 6]] @ [[1, 0], [0, 1]]
    let eye = Buffer::from_f32(&c, &[1.0, 0.0, 0.0, 1.0]).unwrap();
    let at = Layout::contiguous(&[2, 3]).permute(&[1, 0]).unwrap();
    let (z, shape) = matmul(&a, &at, &eye, &Layout::contiguous(&[2, 2])).unwrap();
    assert_eq!(shape, vec![3, 2]);
    assert_eq!(z.to_f32().unwrap(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
}

/// (M, K, N) from {1, 7, 33, 64, 65, 1023}: every size on every axis, no
/// two axes alike, and one large cube; plus M of 9, 16, 24 and 32, where the
/// subgroup kernel computes only 2, 2, 3 and 4 of its row groups (with
/// buffer operands; texture operands cap small products at 2 and others at
/// 4), and N of 32 and 29 over several row tiles (the subgroup kernel's
/// 32-column tiles with buffer operands, full and ragged; N of 33 above
/// takes 64-column tiles again; tests/main/texture_operands.rs runs both kinds
/// of operand).
const SHAPES: &[(usize, usize, usize)] = &[
    (9, 64, 7),
    (16, 33, 65),
    (24, 7, 33),
    (32, 5, 70),
    (70, 12, 32),
    (40, 9, 29),
    (1, 7, 33),
    (7, 33, 1),
    (33, 1, 7),
    (64, 65, 33),
    (65, 64, 7),
    (33, 7, 65),
    (1023, 33, 7),
    (7, 1023, 65),
    (65, 7, 1023),
    (1, 1023, 64),
    (1023, 1023, 1023),
];

#[test]
fn awkward_sizes_match_the_twin() {
    let Some((g, c)) = devices("awkward_sizes_match_the_twin") else { return };
    let mut r = rng(10);
    for &(m, k, n) in SHAPES {
        let (a, b) = (operand(&mut r, &[m, k]), operand(&mut r, &[k, n]));
        for kernel in kernels(&g) {
            check((&g, &c), kernel, (&a.0, &a.1), (&b.0, &b.1));
        }
    }
}

#[test]
fn batches_broadcast_like_numpy() {
    let Some((g, c)) = devices("batches_broadcast_like_numpy") else { return };
    let mut r = rng(11);
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[3, 33, 17], &[3, 17, 9], &[3, 33, 9]),
        (&[2, 1, 65, 7], &[3, 7, 33], &[2, 3, 65, 33]),
        (&[7, 64], &[2, 3, 64, 5], &[2, 3, 7, 5]),
        (&[2, 1, 5, 8], &[1, 4, 8, 12], &[2, 4, 5, 12]),
        (&[1, 1, 3, 4], &[4, 6], &[1, 1, 3, 6]),
    ];
    for &(sa, sb, want) in cases {
        let (a, b) = (operand(&mut r, sa), operand(&mut r, sb));
        for kernel in kernels(&g) {
            let (_, shape) = check((&g, &c), kernel, (&a.0, &a.1), (&b.0, &b.1));
            assert_eq!(shape, want);
        }
    }
}

#[test]
fn batch_entries_are_independent_products() {
    // The twin's batch loop against single products of the same slices.
    let c = Device::cpu_reference();
    let mut r = rng(12);
    let (a, la) = operand(&mut r, &[2, 1, 3, 4]);
    let (b, lb) = operand(&mut r, &[3, 4, 5]);
    let (ab, bb) = (Buffer::from_f32(&c, &a).unwrap(), Buffer::from_f32(&c, &b).unwrap());
    let (z, shape) = matmul(&ab, &la, &bb, &lb).unwrap();
    assert_eq!(shape, vec![2, 3, 3, 5]);
    let z = z.to_f32().unwrap();
    for (i, j) in [(0, 0), (0, 2), (1, 1)] {
        let ai = Buffer::from_f32(&c, &a[i * 12..(i + 1) * 12]).unwrap();
        let bj = Buffer::from_f32(&c, &b[j * 20..(j + 1) * 20]).unwrap();
        let (y, _) = matmul(&ai, &Layout::contiguous(&[3, 4]), &bj, &Layout::contiguous(&[4, 5])).unwrap();
        let at = (i * 3 + j) * 15;
        assert_close(&format!("batch ({i}, {j})"), &z[at..at + 15], &y.to_f32().unwrap(), 0.0, 0.0);
    }
}

/// A [rows, cols] operand read through a transposed view of a [cols, rows] buffer.
fn transposed(r: &mut wgrad_gpu_core::testing::Rng, rows: usize, cols: usize) -> (Vec<f32>, Layout) {
    let (d, l) = operand(r, &[cols, rows]);
    (d, l.permute(&[1, 0]).unwrap())
}

#[test]
fn transposed_operands_are_read_in_place() {
    let Some((g, c)) = devices("transposed_operands_are_read_in_place") else { return };
    let mut r = rng(13);
    // Sizes that are multiples of 4 take the kernels' vector paths, odd ones
    // the element-by-element paths.
    for (m, k, n) in [(36, 20, 44), (33, 65, 7), (64, 1, 1)] {
        let (a, at) = (operand(&mut r, &[m, k]), transposed(&mut r, m, k));
        let (b, bt) = (operand(&mut r, &[k, n]), transposed(&mut r, k, n));
        for kernel in kernels(&g) {
            for (x, y) in [(&at, &b), (&a, &bt), (&at, &bt)] {
                check((&g, &c), kernel, (&x.0, &x.1), (&y.0, &y.1));
            }
        }
    }
    // Batched transposes: [2, K, M] viewed as [2, M, K] (aligned: vector path).
    let (d, l) = operand(&mut r, &[2, 12, 8]);
    let a = (d, l.permute(&[0, 2, 1]).unwrap());
    let b = transposed(&mut r, 12, 16);
    for kernel in kernels(&g) {
        check((&g, &c), kernel, (&a.0, &a.1), (&b.0, &b.1));
    }
}

#[test]
fn offset_and_sliced_views() {
    let Some((g, c)) = devices("offset_and_sliced_views") else { return };
    let mut r = rng(14);
    let (d, base) = operand(&mut r, &[40, 48]);
    let (e, ebase) = operand(&mut r, &[50, 36]);
    let views = [
        // aligned rows, K = 33 not a multiple of 4: a vector load reads 3
        // elements past K that must not count
        (base.narrow(0, 3, 30).unwrap().narrow(1, 4, 33).unwrap(), ebase.narrow(0, 1, 33).unwrap()),
        // odd offsets on both sides
        (base.narrow(1, 3, 21).unwrap(), ebase.narrow(0, 7, 21).unwrap().narrow(1, 5, 29).unwrap()),
        // a strided (every other column) view: no unit stride at all
        (
            Layout { shape: [40, 24].into(), strides: [48, 2].into(), offset: 1 },
            Layout { shape: [24, 18].into(), strides: [36, 2].into(), offset: 0 },
        ),
    ];
    for (la, lb) in &views {
        for kernel in kernels(&g) {
            check((&g, &c), kernel, (&d, la), (&e, lb));
        }
    }
}

/// Products cut into slices of K (one batched launch, then their sum in
/// slice order: `SplitK`, forced here on any adapter) match the twin on
/// both kernels: plain, transposed, broadcast batches, an offset and
/// strided view, slices a few values deep; each cut product records
/// exactly one launch more than the whole one (the sum), and a count that
/// does not divide K takes its largest divisor (a prime K stays whole).
/// Fails when a slice's views start or stride wrongly, or no cut happens.
#[test]
fn products_in_slices_of_k_match_the_twin() {
    let Some(g) = fresh_gpu_or_skip("products_in_slices_of_k_match_the_twin") else { return };
    let c = Device::cpu_reference();
    let mut r = rng(21);
    let (d, base) = operand(&mut r, &[40, 48]);
    // A, B, the slices asked for, the launches the cut adds.
    type Case = ((Vec<f32>, Layout), (Vec<f32>, Layout), usize, u64);
    let cases: Vec<Case> = vec![
        (operand(&mut r, &[5, 96]), operand(&mut r, &[96, 7]), 3, 1),
        (transposed(&mut r, 33, 64), transposed(&mut r, 64, 9), 4, 1),
        (operand(&mut r, &[2, 1, 5, 24]), operand(&mut r, &[3, 24, 6]), 2, 1),
        // Rows 3.., columns 4..37 (K = 33, three slices of 11) of a [40, 48] buffer.
        ((d.clone(), base.narrow(0, 3, 30).unwrap().narrow(1, 4, 33).unwrap()), operand(&mut r, &[33, 10]), 5, 1),
        // Every other column: no unit stride.
        (
            (d.clone(), Layout { shape: [40, 24].into(), strides: [48, 2].into(), offset: 1 }),
            operand(&mut r, &[24, 18]),
            8,
            1,
        ),
        // K = 7 has no divisor up to 4 but 1: whole, no extra launch.
        (operand(&mut r, &[6, 7]), operand(&mut r, &[7, 5]), 4, 0),
    ];
    for ((da, la), (db, lb), slices, extra) in &cases {
        for kernel in kernels(&g) {
            let what =
                format!("{kernel:?} {:?}{:?} @ {:?}{:?}, {slices} slices", la.shape, la.strides, lb.shape, lb.strides);
            let (ag, ac) = both(&g, &c, da);
            let (bg, bc) = both(&g, &c, db);
            let run = |split_k: SplitK| {
                let cfg = MatmulConfig { kernel, split_k, ..MatmulConfig::default() };
                let before = g.stats().dispatches;
                let (z, shape) = matmul_config(cfg, &ag, la, &bg, lb).unwrap();
                let values = z.to_f32().unwrap();
                (values, shape, g.stats().dispatches - before)
            };
            let (whole, _, one) = run(SplitK::Slices(1));
            let (cut, shape, launches) = run(SplitK::Slices(*slices));
            let (zc, sc) = matmul(&ac, la, &bc, lb).unwrap();
            assert_eq!(shape, sc, "{what}: shape");
            let n: usize = sc.iter().product();
            let want = zc.to_f32().unwrap();
            assert_close(&what, &cut[..n], &want[..n], 1e-5, atol(la.shape[la.rank() - 1]));
            assert_close(&format!("{what}, whole"), &whole[..n], &want[..n], 1e-5, atol(la.shape[la.rank() - 1]));
            assert_eq!(launches, one + extra, "{what}: launches");
        }
    }
}

#[test]
fn empty_products() {
    let Some((g, c)) = devices("empty_products") else { return };
    // Leave non-zero data in the pool so that a kernel that skips the
    // empty sum is caught returning stale memory.
    drop(Buffer::from_f32(&g, &[7.0; 5 * 9]).unwrap());
    for kernel in kernels(&g) {
        let a = Buffer::from_f32(&g, &[]).unwrap();
        let (z, shape) =
            matmul_with(kernel, &a, &Layout::contiguous(&[5, 0]), &a, &Layout::contiguous(&[0, 9])).unwrap();
        assert_eq!(shape, vec![5, 9]);
        assert_eq!(z.to_f32().unwrap(), vec![0.0; 45], "{kernel:?}: K = 0");
        let x = Buffer::from_f32(&g, &[1.0; 12]).unwrap();
        let (z, shape) =
            matmul_with(kernel, &a, &Layout::contiguous(&[0, 3]), &x, &Layout::contiguous(&[3, 4])).unwrap();
        assert_eq!((shape.to_vec(), z.to_f32().unwrap().len()), (vec![0, 4], 0), "{kernel:?}: M = 0");
        let (z, shape) =
            matmul_with(kernel, &x, &Layout::contiguous(&[2, 2, 3]), &a, &Layout::contiguous(&[3, 0])).unwrap();
        assert_eq!((shape.to_vec(), z.to_f32().unwrap().len()), (vec![2, 2, 0], 0), "{kernel:?}: N = 0");
    }
    let a = Buffer::from_f32(&c, &[]).unwrap();
    let (z, _) = matmul(&a, &Layout::contiguous(&[5, 0]), &a, &Layout::contiguous(&[0, 9])).unwrap();
    assert_eq!(z.to_f32().unwrap(), vec![0.0; 45], "twin: K = 0");
}

#[test]
fn more_tiles_than_one_grid_dimension() {
    // 70,000 batch entries of 1 x 1 tiles: the launch folds its grid and the
    // kernel must rebuild the linear tile number.
    let Some((g, c)) = devices("more_tiles_than_one_grid_dimension") else { return };
    let mut r = rng(15);
    let (a, la) = operand(&mut r, &[70_000, 1, 2]);
    let (b, lb) = operand(&mut r, &[70_000, 2, 1]);
    for kernel in kernels(&g) {
        check((&g, &c), kernel, (&a, &la), (&b, &lb));
    }
}

#[test]
fn auto_picks_a_kernel_that_matches() {
    let Some((g, c)) = devices("auto_picks_a_kernel_that_matches") else { return };
    let mut r = rng(16);
    let (a, b) = (operand(&mut r, &[70, 90]), operand(&mut r, &[90, 50]));
    check((&g, &c), MatmulKernel::Auto, (&a.0, &a.1), (&b.0, &b.1));
}

#[test]
fn shape_errors_name_both_shapes() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[0.0; 64]).unwrap();
    let l = Layout::contiguous;
    let cases: &[(&[usize], &[usize], &str)] =
        &[(&[4], &[4, 2], "rank"), (&[2, 3], &[4, 2], "inner dimensions"), (&[2, 2, 3], &[3, 3, 1], "batch")];
    for &(sa, sb, why) in cases {
        let msg = matmul(&x, &l(sa), &x, &l(sb)).unwrap_err().to_string();
        assert!(msg.contains(&format!("{sa:?}")) && msg.contains(&format!("{sb:?}")) && msg.contains(why), "{msg}");
    }
    let short = Buffer::from_f32(&c, &[0.0; 5]).unwrap();
    assert!(matmul(&short, &l(&[2, 3]), &x, &l(&[3, 2])).is_err(), "a buffer smaller than its view");
    let gpu_err = devices("shape_errors_name_both_shapes").map(|(g, _)| {
        let y = Buffer::from_f32(&g, &[0.0; 6]).unwrap();
        matmul(&x, &l(&[2, 3]), &y, &l(&[3, 2])).unwrap_err().to_string()
    });
    if let Some(msg) = gpu_err {
        assert!(msg.contains("different devices"), "{msg}");
    }
}

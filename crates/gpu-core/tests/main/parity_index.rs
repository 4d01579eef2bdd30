//! GPU indexing kernels vs their CPU twins: index_select, gather, scatter_add
//! and one_hot, including repeated indices; out-of-range indices are errors
//! (at once on the CPU, at the next readback on a GPU). index_add:
//! `parity_index_add.rs`.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::index::{gather, index_select, one_hot, scatter_add};
use wgrad_gpu_core::testing::{fresh_gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device, Layout};

/// Uploads the same u32 indices to both devices.
fn both_u32(g: &Device, c: &Device, data: &[u32]) -> (Buffer, Buffer) {
    (Buffer::from_u32(g, data).unwrap(), Buffer::from_u32(c, data).unwrap())
}

/// `n` indices below `bound` (so repeats are frequent when `n` is large).
fn indices(r: &mut Rng, n: usize, bound: usize) -> Vec<u32> {
    (0..n).map(|_| r.below(bound as u32)).collect()
}

/// Shapes exercised along each of their dims.
const SHAPES: &[&[usize]] = &[&[1023], &[7, 33], &[1, 7, 5], &[3, 1, 7, 2], &[2, 3, 1, 7, 2]];

#[test]
fn index_select_matches_along_each_dim() {
    let Some((g, c)) = devices("index_select_matches_along_each_dim") else { return };
    let mut r = rng(20);
    for &shape in SHAPES {
        let base = Layout::contiguous(shape);
        let data = r.vec(base.numel(), -1.0, 1.0);
        let (xg, xc) = both(&g, &c, &data);
        // Also through a reversed-dims (transposed) view of the same data.
        let mut rev: Vec<usize> = (0..shape.len()).collect();
        rev.reverse();
        for view in [base.clone(), base.permute(&rev).unwrap()] {
            for dim in 0..shape.len() {
                for n_idx in [1, 7, 33] {
                    let idx = indices(&mut r, n_idx, view.shape[dim]);
                    let (ig, ic) = both_u32(&g, &c, &idx);
                    let (yg, sg) = index_select(&xg, &view, dim, &ig, n_idx).unwrap();
                    let (yc, sc) = index_select(&xc, &view, dim, &ic, n_idx).unwrap();
                    assert_eq!(sg, sc);
                    let mut want = view.shape.clone();
                    want[dim] = n_idx;
                    assert_eq!(sg, want);
                    same(&format!("index_select {:?} dim {dim}", view.shape), &yg, &yc, sg.iter().product(), 0.0, 0.0);
                }
            }
        }
    }
}

#[test]
fn index_select_twin_by_hand() {
    // torch.index_select(x, 0, [0, 2]) and (x, 1, [3, 3, 0]) on a 3×4 matrix.
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &(0..12).map(|v| v as f32).collect::<Vec<_>>()).unwrap();
    let l = Layout::contiguous(&[3, 4]);
    let (y, s) = index_select(&x, &l, 0, &Buffer::from_u32(&c, &[0, 2]).unwrap(), 2).unwrap();
    assert_eq!((s.to_vec(), y.to_f32().unwrap()), (vec![2, 4], vec![0.0, 1.0, 2.0, 3.0, 8.0, 9.0, 10.0, 11.0]));
    let (y, s) = index_select(&x, &l, 1, &Buffer::from_u32(&c, &[3, 3, 0]).unwrap(), 3).unwrap();
    assert_eq!((s.to_vec(), y.to_f32().unwrap()), (vec![3, 3], vec![3.0, 3.0, 0.0, 7.0, 7.0, 4.0, 11.0, 11.0, 8.0]));
}

#[test]
fn gather_matches_along_each_dim() {
    let Some((g, c)) = devices("gather_matches_along_each_dim") else { return };
    let mut r = rng(21);
    for &shape in SHAPES {
        let base = Layout::contiguous(shape);
        let data = r.vec(base.numel(), -1.0, 1.0);
        let (xg, xc) = both(&g, &c, &data);
        // A narrowed view (offset and gaps) when the last dim allows it.
        let view = if shape[shape.len() - 1] > 2 { base.narrow(shape.len() - 1, 1, 2).unwrap() } else { base.clone() };
        for l in [&base, &view] {
            for dim in 0..shape.len() {
                // Index smaller than x off `dim` (where possible), larger along it.
                let ishape: Vec<usize> =
                    l.shape.iter().enumerate().map(|(d, &s)| if d == dim { s + 3 } else { s.div_ceil(2) }).collect();
                let n: usize = ishape.iter().product();
                let idx = indices(&mut r, n, l.shape[dim]);
                let (ig, ic) = both_u32(&g, &c, &idx);
                let yg = gather(&xg, l, dim, &ig, &ishape).unwrap();
                let yc = gather(&xc, l, dim, &ic, &ishape).unwrap();
                same(&format!("gather {:?} dim {dim} index {ishape:?}", l.shape), &yg, &yc, n, 0.0, 0.0);
            }
        }
    }
}

#[test]
fn gather_follows_the_pytorch_doc_example() {
    // torch.gather(tensor([[1, 2], [3, 4]]), 1, tensor([[0, 0], [1, 0]])) == [[1, 1], [4, 3]]
    let Some((g, c)) = devices("gather_follows_the_pytorch_doc_example") else { return };
    for dev in [&g, &c] {
        let x = Buffer::from_f32(dev, &[1.0, 2.0, 3.0, 4.0]).unwrap();
        let i = Buffer::from_u32(dev, &[0, 0, 1, 0]).unwrap();
        let y = gather(&x, &Layout::contiguous(&[2, 2]), 1, &i, &[2, 2]).unwrap();
        assert_eq!(y.to_f32().unwrap(), vec![1.0, 1.0, 4.0, 3.0], "{}", dev.name());
        // Along dim 0: out[i][j] = x[index[i][j]][j].
        let y = gather(&x, &Layout::contiguous(&[2, 2]), 0, &i, &[2, 2]).unwrap();
        assert_eq!(y.to_f32().unwrap(), vec![1.0, 2.0, 3.0, 2.0], "{}", dev.name());
    }
}

#[test]
fn scatter_add_matches_along_each_dim() {
    let Some((g, c)) = devices("scatter_add_matches_along_each_dim") else { return };
    let mut r = rng(22);
    for &shape in SHAPES {
        let dn: usize = shape.iter().product();
        for dim in 0..shape.len() {
            // Many more sources than destinations along dim: heavy collisions.
            let ishape: Vec<usize> =
                shape.iter().enumerate().map(|(d, &s)| if d == dim { 3 * s + 1 } else { s }).collect();
            let n: usize = ishape.iter().product();
            let idx = indices(&mut r, n, shape[dim]);
            let (ig, ic) = both_u32(&g, &c, &idx);
            let src = r.vec(n, -1.0, 1.0);
            let (sg, sc) = both(&g, &c, &src);
            let init = r.vec(dn, -1.0, 1.0);
            let (dg, dc) = both(&g, &c, &init);
            scatter_add(&dg, shape, dim, &ig, &sg, &ishape).unwrap();
            scatter_add(&dc, shape, dim, &ic, &sc, &ishape).unwrap();
            // Atomic adds land in any order: compare within rounding of ~3·size terms.
            same(&format!("scatter_add {shape:?} dim {dim}"), &dg, &dc, dn, 1e-5, 1e-5);
        }
    }
    // An index smaller than dst off `dim`: only the covered part changes.
    let (shape, ishape) = ([7usize, 33], [3usize, 5]);
    let idx = indices(&mut r, 15, 33);
    let (ig, ic) = both_u32(&g, &c, &idx);
    let (sg, sc) = both(&g, &c, &r.vec(15, -1.0, 1.0));
    let (dg, dc) = both(&g, &c, &vec![0.0; 7 * 33]);
    scatter_add(&dg, &shape, 1, &ig, &sg, &ishape).unwrap();
    scatter_add(&dc, &shape, 1, &ic, &sc, &ishape).unwrap();
    same("scatter_add partial index", &dg, &dc, 7 * 33, 1e-6, 1e-6);
    assert!(dc.to_f32().unwrap()[3 * 33..].iter().all(|&v| v == 0.0));
}

#[test]
fn scatter_add_follows_the_pytorch_doc_example() {
    // src = ones(2, 5); index = [[0, 1, 2, 0, 0], [0, 1, 2, 2, 2]];
    // zeros(3, 5).scatter_add_(0, index, src)
    let Some((g, c)) = devices("scatter_add_follows_the_pytorch_doc_example") else { return };
    let want = vec![2.0, 0.0, 0.0, 1.0, 1.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 1.0];
    for dev in [&g, &c] {
        let dst = Buffer::from_f32(dev, &[0.0; 15]).unwrap();
        let index = Buffer::from_u32(dev, &[0, 1, 2, 0, 0, 0, 1, 2, 2, 2]).unwrap();
        let src = Buffer::from_f32(dev, &[1.0; 10]).unwrap();
        scatter_add(&dst, &[3, 5], 0, &index, &src, &[2, 5]).unwrap();
        assert_eq!(dst.to_f32().unwrap(), want, "{}", dev.name());
        // With only the first index row: [[1, 0, 0, 1, 1], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0]].
        let dst = Buffer::from_f32(dev, &[0.0; 15]).unwrap();
        scatter_add(&dst, &[3, 5], 0, &index, &src, &[1, 5]).unwrap();
        let first = vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        assert_eq!(dst.to_f32().unwrap(), first, "{}", dev.name());
    }
}

#[test]
fn one_hot_matches_for_one_and_many_classes() {
    let Some((g, c)) = devices("one_hot_matches_for_one_and_many_classes") else { return };
    let mut r = rng(23);
    for &classes in &[1usize, 33] {
        for &n in SIZES {
            let labels = indices(&mut r, n, classes);
            let (lg, lc) = both_u32(&g, &c, &labels);
            let (yg, yc) = (one_hot(&lg, n, classes).unwrap(), one_hot(&lc, n, classes).unwrap());
            same(&format!("one_hot n={n} classes={classes}"), &yg, &yc, n * classes, 0.0, 0.0);
            let y = yc.to_f32().unwrap();
            for (row, &l) in y.chunks(classes).zip(&labels) {
                assert_eq!(row.iter().sum::<f32>(), 1.0);
                assert_eq!(row[l as usize], 1.0);
            }
        }
    }
}

#[test]
fn out_of_range_indices_are_errors_on_both_devices() {
    // A device of its own: the record it leaves must not reach other tests' reads.
    let Some(g) = fresh_gpu_or_skip("out_of_range_indices_are_errors_on_both_devices") else { return };
    let c = Device::cpu_reference();
    let x = |d: &Device| Buffer::from_f32(d, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let l = Layout::contiguous(&[2, 3]);
    // index_select: row 2 is past the end of dim 0 (size 2); u32::MAX (a cast -1) too.
    let rows = |d: &Device| Buffer::from_u32(d, &[1, 2, u32::MAX]).unwrap();
    assert_eq!(index_error(index_select(&x(&c), &l, 0, &rows(&c), 3)), ("index_select", 2, 2));
    // On the GPU the op records, the next readback reports, the data keeps
    // the fixed meaning (zeros) and the record is cleared by the report.
    let (y, _) = index_select(&x(&g), &l, 0, &rows(&g), 3).unwrap();
    assert_eq!(index_error(y.to_f32()), ("index_select", 2, 2), "the first bad index wins");
    assert_eq!(y.to_f32().unwrap(), vec![4.0, 5.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);

    // gather: index 7 along dim 1 (size 3).
    let idx = |d: &Device| Buffer::from_u32(d, &[2, 1, 0, 7]).unwrap();
    assert_eq!(index_error(gather(&x(&c), &l, 1, &idx(&c), &[2, 2])), ("gather", 7, 3));
    let y = gather(&x(&g), &l, 1, &idx(&g), &[2, 2]).unwrap();
    assert_eq!(index_error(y.to_f32()), ("gather", 7, 3));
    assert_eq!(y.to_f32().unwrap(), vec![3.0, 2.0, 4.0, 0.0]);

    // scatter_add: index 5 along dim 1 (size 3) is skipped on the GPU and reported.
    let idx = |d: &Device| Buffer::from_u32(d, &[0, 5, 1, 2, 2, 0]).unwrap();
    let src = |d: &Device| Buffer::from_f32(d, &[1.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0]).unwrap();
    let dst = |d: &Device| Buffer::from_f32(d, &[0.0; 6]).unwrap();
    let dc = dst(&c);
    assert_eq!(index_error(scatter_add(&dc, &[2, 3], 1, &idx(&c), &src(&c), &[2, 3])), ("scatter_add", 5, 3));
    assert_eq!(dc.to_f32().unwrap(), vec![0.0; 6], "the CPU checks before writing anything");
    let dg = dst(&g);
    scatter_add(&dg, &[2, 3], 1, &idx(&g), &src(&g), &[2, 3]).unwrap();
    assert_eq!(index_error(dg.to_f32()), ("scatter_add", 5, 3));
    assert_eq!(dg.to_f32().unwrap(), vec![1.0, 100.0, 0.0, 3000.0, 0.0, 3000.0]);

    // one_hot does not check: labels 3 and u32::MAX with 3 classes give zero rows.
    for dev in [&g, &c] {
        let labels = Buffer::from_u32(dev, &[2, 3, 0, u32::MAX]).unwrap();
        let y = one_hot(&labels, 4, 3).unwrap();
        let want = vec![0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(y.to_f32().unwrap(), want, "{}", dev.name());
    }
}

#[test]
fn index_checks_ride_on_the_next_readback() {
    // Valid indices: one submission and one readback, as without checks; a
    // bad index recorded before a flush is still reported by the next read.
    let Some(g) = fresh_gpu_or_skip("index_checks_ride_on_the_next_readback") else { return };
    let x = Buffer::from_f32(&g, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let l = Layout::contiguous(&[2, 3]);
    g.flush().unwrap();
    let before = g.stats();
    let (y, _) = index_select(&x, &l, 0, &Buffer::from_u32(&g, &[1, 0]).unwrap(), 2).unwrap();
    assert_eq!(y.to_f32().unwrap(), vec![4.0, 5.0, 6.0, 1.0, 2.0, 3.0]);
    let after = g.stats();
    assert_eq!((after.submissions - before.submissions, after.readbacks - before.readbacks), (1, 1));

    let (bad, _) = index_select(&x, &l, 0, &Buffer::from_u32(&g, &[9]).unwrap(), 1).unwrap();
    g.flush().unwrap();
    let unrelated = Buffer::from_f32(&g, &[7.0]).unwrap();
    assert_eq!(index_error(unrelated.to_f32()), ("index_select", 9, 2));
    assert_eq!(unrelated.to_f32().unwrap(), vec![7.0], "reported once");
    assert_eq!(bad.to_f32().unwrap(), vec![0.0; 3]);
}

#[test]
fn indexing_errors_name_the_op() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[0.0; 6]).unwrap();
    let i = Buffer::from_u32(&c, &[0; 6]).unwrap();
    let l = Layout::contiguous(&[2, 3]);
    let msg = index_select(&x, &l, 2, &i, 1).unwrap_err().to_string();
    assert!(msg.starts_with("index_select:") && msg.contains("dim 2") && msg.contains("[2, 3]"), "{msg}");
    assert!(index_select(&x, &l, 0, &i, 7).unwrap_err().to_string().contains("indices"));
    let msg = gather(&x, &l, 0, &i, &[2, 4]).unwrap_err().to_string();
    assert!(msg.starts_with("gather:") && msg.contains("[2, 4]") && msg.contains("[2, 3]"), "{msg}");
    assert!(gather(&x, &l, 0, &i, &[6]).is_err());
    assert!(gather(&x, &l, 5, &i, &[2, 3]).unwrap_err().to_string().contains("dim 5"));
    let src = Buffer::from_f32(&c, &[0.0; 6]).unwrap();
    let msg = scatter_add(&x, &[2, 3], 3, &i, &src, &[2, 3]).unwrap_err().to_string();
    assert!(msg.starts_with("scatter_add:") && msg.contains("dim 3"), "{msg}");
    assert!(scatter_add(&x, &[2, 3], 0, &i, &src, &[3, 4]).is_err());
    assert!(scatter_add(&x, &[2, 3], 0, &i, &x, &[2, 3]).unwrap_err().to_string().contains("share memory"));
    assert!(one_hot(&i, 7, 3).unwrap_err().to_string().starts_with("one_hot:"));
}

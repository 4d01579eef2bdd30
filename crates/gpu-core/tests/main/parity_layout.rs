//! GPU copy kernel vs its CPU twin: contiguous (permute, narrow, broadcast),
//! copy_into, concat, and a copy large enough to fold the launch grid.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::copy::{concat, contiguous, contiguous_f16, copy_into};
use wgrad_gpu_core::ops::fill::arange;
use wgrad_gpu_core::testing::{fresh_gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device, Layout};

/// A seeded random permutation of `0..n`.
fn permutation(r: &mut Rng, n: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, r.below(i as u32 + 1) as usize);
    }
    p
}

/// Runs `contiguous` on both devices over the same data and compares bit-exactly.
fn check_contiguous(g: &Device, c: &Device, data: &[f32], view: &Layout, what: &str) {
    let (xg, xc) = both(g, c, data);
    let (yg, yc) = (contiguous(&xg, view).unwrap(), contiguous(&xc, view).unwrap());
    same(what, &yg, &yc, view.numel(), 0.0, 0.0);
}

#[test]
fn contiguous_materialises_permutations_of_every_rank() {
    let Some((g, c)) = devices("contiguous_materialises_permutations_of_every_rank") else { return };
    let mut r = rng(10);
    let shapes: &[&[usize]] =
        &[&[1023], &[7, 33], &[33, 1], &[1, 7, 33], &[0, 7], &[7, 1, 3, 5], &[2, 7, 1, 3, 5], &[3, 2, 4, 1, 7]];
    for &shape in shapes {
        let base = Layout::contiguous(shape);
        let data = r.vec(base.numel(), -1.0, 1.0);
        for _ in 0..3 {
            let perm = permutation(&mut r, shape.len());
            let view = base.permute(&perm).unwrap();
            check_contiguous(&g, &c, &data, &view, &format!("{shape:?} permuted {perm:?}"));
        }
    }
}

#[test]
fn contiguous_twin_transposes_by_hand() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let t = Layout::contiguous(&[2, 3]).permute(&[1, 0]).unwrap();
    assert_eq!(contiguous(&x, &t).unwrap().to_f32().unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    // The [1.., 1..3] block of the 2×3 matrix, then broadcast of its column.
    let n = Layout::contiguous(&[2, 3]).narrow(0, 1, 1).unwrap().narrow(1, 1, 2).unwrap();
    assert_eq!(contiguous(&x, &n).unwrap().to_f32().unwrap(), vec![4.0, 5.0]);
    let b = Layout::contiguous(&[2, 1]).broadcast_to(&[2, 3]).unwrap();
    assert_eq!(contiguous(&x, &b).unwrap().to_f32().unwrap(), vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn contiguous_of_a_transposed_narrowed_view() {
    let Some((g, c)) = devices("contiguous_of_a_transposed_narrowed_view") else { return };
    let mut r = rng(11);
    let base = Layout::contiguous(&[7, 33, 5]);
    let data = r.vec(base.numel(), -1.0, 1.0);
    // Narrow the middle dim (offset), the last dim (gaps), then transpose.
    let view = base.narrow(1, 3, 20).unwrap().narrow(2, 1, 3).unwrap().permute(&[2, 0, 1]).unwrap();
    assert_eq!(view.shape, vec![3, 7, 20]);
    check_contiguous(&g, &c, &data, &view, "transposed narrow");
    // A single element and an empty narrow of a transposed view.
    let t = base.permute(&[1, 0, 2]).unwrap();
    check_contiguous(&g, &c, &data, &t.narrow(0, 32, 1).unwrap().narrow(1, 6, 1).unwrap(), "one element");
    check_contiguous(&g, &c, &data, &t.narrow(2, 5, 0).unwrap(), "empty");
    // The twin agrees with direct indexing of the data.
    let xc = Buffer::from_f32(&c, &data).unwrap();
    let y = contiguous(&xc, &view).unwrap().to_f32().unwrap();
    // y[k, i, j] = data[i, 3 + j, 1 + k]
    assert_eq!(y[2 * 140 + 4 * 20 + 9], data[4 * 165 + (3 + 9) * 5 + 3]);
}

#[test]
fn contiguous_expands_broadcast_views() {
    let Some((g, c)) = devices("contiguous_expands_broadcast_views") else { return };
    let mut r = rng(12);
    let cases: &[(&[usize], &[usize])] =
        &[(&[7, 1], &[3, 7, 33]), (&[1], &[1023]), (&[], &[2, 7]), (&[33], &[7, 1, 33]), (&[5, 1, 3], &[2, 5, 7, 3])];
    for &(from, to) in cases {
        let base = Layout::contiguous(from);
        let data = r.vec(base.numel(), -1.0, 1.0);
        let view = base.broadcast_to(to).unwrap();
        check_contiguous(&g, &c, &data, &view, &format!("{from:?} -> {to:?}"));
    }
    // Broadcast of a transposed view.
    let data = r.vec(7 * 33, -1.0, 1.0);
    let view = Layout::contiguous(&[7, 33]).permute(&[1, 0]).unwrap().broadcast_to(&[2, 33, 7]).unwrap();
    check_contiguous(&g, &c, &data, &view, "broadcast transpose");
}

#[test]
fn copy_into_writes_a_view_of_a_bigger_buffer() {
    let Some((g, c)) = devices("copy_into_writes_a_view_of_a_bigger_buffer") else { return };
    let mut r = rng(13);
    let big = r.vec(7 * 33, -1.0, 1.0);
    let small = r.vec(5 * 7, -1.0, 1.0);
    let (dg, dc) = both(&g, &c, &big);
    let (sg, sc) = both(&g, &c, &small);
    // Source: a [5, 7] buffer seen transposed; destination: columns 10..15 of [7, 33].
    let src = Layout::contiguous(&[5, 7]).permute(&[1, 0]).unwrap();
    let dst = Layout::contiguous(&[7, 33]).narrow(1, 10, 5).unwrap();
    copy_into(&sg, &src, &dg, &dst).unwrap();
    copy_into(&sc, &src, &dc, &dst).unwrap();
    same("copy_into", &dg, &dc, 7 * 33, 0.0, 0.0);
    let out = dc.to_f32().unwrap();
    for i in 0..7 {
        for j in 0..33 {
            let want = if (10..15).contains(&j) { small[(j - 10) * 7 + i] } else { big[i * 33 + j] };
            assert_eq!(out[i * 33 + j], want, "[{i}, {j}]");
        }
    }
    // A transposed destination of rank 5 from a broadcast source.
    let dst5 = Layout::contiguous(&[3, 1, 7, 2, 5]);
    let d5 = r.vec(dst5.numel(), -1.0, 1.0);
    let (dg, dc) = both(&g, &c, &d5);
    let view = dst5.permute(&[4, 2, 0, 3, 1]).unwrap();
    let s = Layout::contiguous(&[7, 1, 1, 1]).broadcast_to(&view.shape).unwrap();
    let sdata = r.vec(7, -1.0, 1.0);
    let (sg, sc) = both(&g, &c, &sdata);
    copy_into(&sg, &s, &dg, &view).unwrap();
    copy_into(&sc, &s, &dc, &view).unwrap();
    same("copy_into rank 5", &dg, &dc, dst5.numel(), 0.0, 0.0);
}

#[test]
fn copy_into_the_same_buffer_reads_before_writing() {
    let Some((g, c)) = devices("copy_into_the_same_buffer_reads_before_writing") else { return };
    let data: Vec<f32> = (0..10).map(|v| v as f32).collect();
    let want = vec![0.0, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
    for dev in [&g, &c] {
        // Shift right by 2 within one buffer: overlapping views.
        let x = Buffer::from_f32(dev, &data).unwrap();
        let base = Layout::contiguous(&[10]);
        copy_into(&x, &base.narrow(0, 0, 8).unwrap(), &x, &base.narrow(0, 2, 8).unwrap()).unwrap();
        assert_eq!(x.to_f32().unwrap(), want, "{}", dev.name());
    }
}

#[test]
fn copy_into_rejects_bad_views() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[0.0; 12]).unwrap();
    let (a, b) = (Layout::contiguous(&[3, 4]), Layout::contiguous(&[4, 3]));
    let msg = copy_into(&x, &a, &x, &b).unwrap_err().to_string();
    assert!(msg.contains("copy_into") && msg.contains("[3, 4]") && msg.contains("[4, 3]"), "{msg}");
    let too_big = Layout::contiguous(&[13]);
    assert!(copy_into(&x, &too_big, &x, &too_big).unwrap_err().to_string().contains("bytes"));
    let bcast = Layout::contiguous(&[4]).broadcast_to(&[3, 4]).unwrap();
    let msg = copy_into(&x, &a, &x, &bcast).unwrap_err().to_string();
    assert!(msg.contains("twice"), "{msg}");
    let msg = contiguous(&x, &too_big).unwrap_err().to_string();
    assert!(msg.starts_with("contiguous:"), "{msg}");
}

#[test]
fn concat_along_first_middle_and_last_dims() {
    let Some((g, c)) = devices("concat_along_first_middle_and_last_dims") else { return };
    let mut r = rng(14);
    let base: &[usize] = &[3, 5, 7];
    for dim in 0..3 {
        // Uneven parts, one of size zero, one a strided (transposed) view.
        let sizes = [2, 0, 1, 7];
        let mut datas = vec![];
        let mut layouts = vec![];
        for (k, &s) in sizes.iter().enumerate() {
            let mut shape = base.to_vec();
            shape[dim] = s;
            let l = if k == 3 {
                let mut rev = shape.clone();
                rev.reverse();
                Layout::contiguous(&rev).permute(&[2, 1, 0]).unwrap()
            } else {
                Layout::contiguous(&shape)
            };
            datas.push(r.vec(l.numel(), -1.0, 1.0));
            layouts.push(l);
        }
        let gb: Vec<Buffer> = datas.iter().map(|d| Buffer::from_f32(&g, d).unwrap()).collect();
        let cb: Vec<Buffer> = datas.iter().map(|d| Buffer::from_f32(&c, d).unwrap()).collect();
        let gp: Vec<(&Buffer, &Layout)> = gb.iter().zip(&layouts).collect();
        let cp: Vec<(&Buffer, &Layout)> = cb.iter().zip(&layouts).collect();
        let (yg, shape) = concat(&gp, dim).unwrap();
        let (yc, shape_c) = concat(&cp, dim).unwrap();
        let mut want = base.to_vec();
        want[dim] = 10;
        assert_eq!((shape.to_vec(), shape_c.to_vec()), (want.clone(), want));
        same(&format!("concat dim {dim}"), &yg, &yc, shape.iter().product(), 0.0, 0.0);
    }
}

#[test]
fn concat_twin_by_hand() {
    let c = Device::cpu_reference();
    let a = Buffer::from_f32(&c, &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let b = Buffer::from_f32(&c, &[5.0, 6.0]).unwrap();
    let (la, lb) = (Layout::contiguous(&[2, 2]), Layout::contiguous(&[2, 1]));
    let (y, shape) = concat(&[(&a, &la), (&b, &lb)], 1).unwrap();
    assert_eq!(shape, vec![2, 3]);
    assert_eq!(y.to_f32().unwrap(), vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
    let lb0 = Layout::contiguous(&[1, 2]);
    let (y, shape) = concat(&[(&b, &lb0), (&a, &la)], 0).unwrap();
    assert_eq!(shape, vec![3, 2]);
    assert_eq!(y.to_f32().unwrap(), vec![5.0, 6.0, 1.0, 2.0, 3.0, 4.0]);
    // All parts empty along dim.
    let (y, shape) = concat(&[(&a, &Layout::contiguous(&[0, 2])), (&b, &Layout::contiguous(&[0, 2]))], 0).unwrap();
    assert_eq!((shape.to_vec(), y.to_f32().unwrap()), (vec![0, 2], vec![]));
}

#[test]
fn concat_errors_name_the_op_and_shapes() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[0.0; 12]).unwrap();
    let (a, b) = (Layout::contiguous(&[2, 3]), Layout::contiguous(&[2, 4]));
    let msg = concat(&[(&x, &a), (&x, &b)], 0).unwrap_err().to_string();
    assert!(msg.starts_with("concat:") && msg.contains("[2, 3]") && msg.contains("[2, 4]"), "{msg}");
    assert!(concat(&[(&x, &a), (&x, &b)], 1).is_ok());
    let msg = concat(&[(&x, &a), (&x, &Layout::contiguous(&[6]))], 0).unwrap_err().to_string();
    assert!(msg.contains("[6]"), "{msg}");
    let msg = concat(&[(&x, &a)], 2).unwrap_err().to_string();
    assert!(msg.starts_with("concat:") && msg.contains("dim 2") && msg.contains("[2, 3]"), "{msg}");
    assert!(concat(&[], 0).unwrap_err().to_string().starts_with("concat:"));
}

#[test]
fn copy_over_more_than_65535_workgroups() {
    // 4097 × 4096 > 65,535 × 256 elements: the transpose's launch must fold its grid.
    let Some((g, _)) = devices("copy_over_more_than_65535_workgroups") else { return };
    let (rows, cols) = (4097, 4096);
    let n = rows * cols;
    assert!(n > 65_535 * 256);
    let x = arange(&g, n, 0.0, 1.0).unwrap();
    let t = Layout::contiguous(&[rows, cols]).permute(&[1, 0]).unwrap();
    let y = contiguous(&x, &t).unwrap().to_f32().unwrap();
    let xs = x.to_f32().unwrap();
    for i in [0, 1, 4097, 65_535 * 256 - 1, 65_535 * 256, 65_535 * 256 + 300, n - 2, n - 1] {
        let (c, r) = (i / rows, i % rows);
        assert_eq!(y[i].to_bits(), xs[r * cols + c].to_bits(), "element {i}");
    }
}

/// Random f16 bit patterns, NaN payloads, infinities, -0 and subnormals included.
fn random_halves(r: &mut Rng, n: usize) -> Vec<half::f16> {
    (0..n).map(|_| half::f16::from_bits(r.below(1 << 16) as u16)).collect()
}

/// f16 views of every kind (permuted, narrowed at odd offsets, broadcast,
/// odd element counts), made dense by one launch on the GPU and by both CPU
/// twins, bit-exactly equal to the halves the view names.
#[test]
fn contiguous_f16_moves_every_half_bit_exactly() {
    let gpu = fresh_gpu_or_skip("contiguous_f16_moves_every_half_bit_exactly");
    let devices: Vec<Device> =
        [Some(Device::cpu_reference()), Some(Device::cpu()), gpu].into_iter().flatten().collect();
    let mut r = rng(16);
    let base = Layout::contiguous(&[5, 7, 3]);
    let data = random_halves(&mut r, base.numel() + 1);
    let views = [
        ("permuted", base.permute(&[2, 0, 1]).unwrap()),
        ("narrowed at an odd offset", base.narrow(0, 1, 3).unwrap().narrow(2, 1, 1).unwrap()),
        ("transposed narrow", base.narrow(1, 2, 5).unwrap().permute(&[1, 2, 0]).unwrap()),
        ("broadcast column", Layout::contiguous(&[5, 1]).broadcast_to(&[5, 9]).unwrap()),
        ("one element at offset 3", Layout { offset: 3, ..Layout::contiguous(&[1]) }),
        ("odd dense tail", Layout { offset: 1, ..Layout::contiguous(&[7, 15]) }),
        ("empty", base.narrow(0, 2, 0).unwrap()),
    ];
    for dev in &devices {
        let x = Buffer::from_f16(dev, &data).unwrap();
        for (what, view) in &views {
            let n = view.numel();
            let before = dev.stats().dispatches;
            let y = contiguous_f16(&x, view).unwrap();
            let launches = dev.stats().dispatches - before;
            let got = y.to_f16().unwrap();
            assert!(got.len() >= n, "{what}: {} halves for {n}", got.len());
            let want: Vec<u16> = (0..n).map(|i| data[view.index_of(i)].to_bits()).collect();
            let got: Vec<u16> = got[..n].iter().map(|h| h.to_bits()).collect();
            assert_eq!(got, want, "{what} on {}", dev.name());
            if dev.is_gpu() {
                assert_eq!(launches, u64::from(n > 0), "{what}: one launch on {}", dev.name());
            }
        }
    }
}

#[test]
fn contiguous_f16_rejects_a_view_past_the_buffer() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f16(&c, &[half::f16::ONE; 6]).unwrap();
    let err = contiguous_f16(&x, &Layout::contiguous(&[3, 3])).unwrap_err().to_string();
    assert!(err.contains("contiguous (f16)") && err.contains("input buffer has"), "{err}");
}

//! index_add (`ops/index_add.rs`) on a GPU against its CPU twin, bit for
//! bit: every destination adds its rows in position order on both, with
//! repeated ids, ids past the sort's tile, along every dim, and sorts of
//! many tiles in ranges (past 65,536 ids, or in windows past a lowered
//! binding limit); past a 2 KiB limit, ranges of rows and groups of outer
//! indices, the last ones partial, with fusion on and off; PyTorch's
//! documented example; out-of-range ids and bad arguments are errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::index_add::index_add;
use wgrad_gpu_core::testing::{fresh_gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device};

/// Shapes exercised along each of their dims.
const SHAPES: &[&[usize]] = &[&[1023], &[7, 33], &[1, 7, 5], &[3, 1, 7, 2], &[2, 3, 1, 7, 2]];

/// `n` ids below `bound` (so repeats are frequent when `n` is large).
fn ids(r: &mut Rng, n: usize, bound: usize) -> Vec<u32> {
    (0..n).map(|_| r.below(bound as u32)).collect()
}

/// The first `n` values of both buffers have the same bits.
#[track_caller]
fn same_bits(what: &str, gpu: &Buffer, cpu: &Buffer, n: usize) {
    let (g, c) = (gpu.to_f32().unwrap(), cpu.to_f32().unwrap());
    if let Some(i) = (0..n).find(|&i| g[i].to_bits() != c[i].to_bits()) {
        panic!(
            "{what}: element {i} of {n}: GPU {} ({:#010x}), CPU {} ({:#010x})",
            g[i],
            g[i].to_bits(),
            c[i],
            c[i].to_bits()
        );
    }
}

#[test]
fn index_add_equals_the_twin_bit_for_bit() {
    let Some((g, c)) = devices("index_add_equals_the_twin_bit_for_bit") else { return };
    let mut r = rng(23);
    for &shape in SHAPES {
        let dn: usize = shape.iter().product();
        for dim in 0..shape.len() {
            let size = shape[dim];
            // Repeats everywhere (ids below the size), one id for all, all
            // ids distinct and descending; past one workgroup's 256 threads,
            // past the sort's tile of 1,024 and not a power of two.
            let mut cases = [1, 7, 300, 3000].map(|k| ids(&mut r, k, size)).to_vec();
            cases.push(vec![(size - 1) as u32; 1000]);
            cases.push((0..size as u32).rev().collect());
            for ids in cases {
                let k = ids.len();
                let n = dn / size * k;
                let (ig, ic) = (Buffer::from_u32(&g, &ids).unwrap(), Buffer::from_u32(&c, &ids).unwrap());
                let (sg, sc) = both(&g, &c, &r.vec(n, -1.0, 1.0));
                let (dg, dc) = both(&g, &c, &r.vec(dn, -1.0, 1.0));
                index_add(&dg, shape, dim, &ig, k, &sg).unwrap();
                index_add(&dc, shape, dim, &ic, k, &sc).unwrap();
                // Every destination adds its rows in increasing position on both.
                same_bits(&format!("index_add {shape:?} dim {dim}, {k} ids"), &dg, &dc, dn);
            }
        }
    }
}

#[test]
fn index_add_follows_the_pytorch_doc_example() {
    // x = ones(5, 3); t = [[1, 2, 3], [4, 5, 6], [7, 8, 9]];
    // x.index_add_(0, tensor([0, 4, 2]), t); then along dim 1 with ids [2, 0, 2].
    let Some((g, c)) = devices("index_add_follows_the_pytorch_doc_example") else { return };
    let t: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    for dev in [&g, &c] {
        let x = Buffer::from_f32(dev, &[1.0; 15]).unwrap();
        let src = Buffer::from_f32(dev, &t).unwrap();
        index_add(&x, &[5, 3], 0, &Buffer::from_u32(dev, &[0, 4, 2]).unwrap(), 3, &src).unwrap();
        let want = [2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 8.0, 9.0, 10.0, 1.0, 1.0, 1.0, 5.0, 6.0, 7.0];
        assert_eq!(x.to_f32().unwrap()[..15], want, "{}", dev.name());
        let x = Buffer::from_f32(dev, &[0.0; 9]).unwrap();
        index_add(&x, &[3, 3], 1, &Buffer::from_u32(dev, &[2, 0, 2]).unwrap(), 3, &src).unwrap();
        assert_eq!(x.to_f32().unwrap()[..9], [2.0, 0.0, 4.0, 5.0, 0.0, 10.0, 8.0, 0.0, 16.0], "{}", dev.name());
    }
}

#[test]
fn out_of_range_ids_are_errors_on_both_devices() {
    // A device of its own: the record it leaves must not reach other tests' reads.
    let Some(g) = fresh_gpu_or_skip("index_add::out_of_range_ids_are_errors_on_both_devices") else { return };
    let c = Device::cpu_reference();
    let src = |d: &Device| Buffer::from_f32(d, &[1.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0]).unwrap();
    let dst = |d: &Device| Buffer::from_f32(d, &[0.0; 6]).unwrap();
    // Id 5 along dim 1 (size 3): its slice is skipped on the GPU and reported.
    let ids = |d: &Device| Buffer::from_u32(d, &[2, 5, 2]).unwrap();
    let dc = dst(&c);
    assert_eq!(index_error(index_add(&dc, &[2, 3], 1, &ids(&c), 3, &src(&c))), ("index_add", 5, 3));
    assert_eq!(dc.to_f32().unwrap(), vec![0.0; 6], "the CPU checks before writing anything");
    let dg = dst(&g);
    index_add(&dg, &[2, 3], 1, &ids(&g), 3, &src(&g)).unwrap();
    assert_eq!(index_error(dg.to_f32()), ("index_add", 5, 3));
    assert_eq!(dg.to_f32().unwrap(), vec![0.0, 0.0, 101.0, 0.0, 0.0, 4000.0]);
}

#[test]
fn bad_arguments_are_errors_naming_index_add() {
    let c = Device::cpu_reference();
    let x = Buffer::from_f32(&c, &[0.0; 6]).unwrap();
    let i = Buffer::from_u32(&c, &[0; 6]).unwrap();
    let src = Buffer::from_f32(&c, &[0.0; 6]).unwrap();
    let msg = index_add(&x, &[2, 3], 2, &i, 2, &src).unwrap_err().to_string();
    assert!(msg.starts_with("index_add:") && msg.contains("dim 2"), "{msg}");
    // Four ids along dim 1 want a source of 2 x 4 = 8 values; there are 6.
    let msg = index_add(&x, &[2, 3], 1, &i, 4, &src).unwrap_err().to_string();
    assert!(msg.starts_with("index_add:") && msg.contains("source"), "{msg}");
    assert!(index_add(&x, &[2, 3], 0, &i, 7, &src).unwrap_err().to_string().contains("ids"));
    assert!(index_add(&x, &[2, 3], 0, &i, 2, &x).unwrap_err().to_string().contains("share memory"));
}

/// `index_add` of `ids` into `shape` along `dim` (random source and
/// destination from `seed`) on `dev` and on the CPU twin: the same bits.
fn same_as_twin(dev: &Device, what: &str, (shape, dim): (&[usize], usize), ids: &[u32], seed: u64) {
    let dn: usize = shape.iter().product();
    let n = dn / shape[dim] * ids.len();
    let mut r = rng(seed);
    let (src, init) = (r.vec(n, -1.0, 1.0), r.vec(dn, -1.0, 1.0));
    let run = |d: &Device| {
        let dst = Buffer::from_f32(d, &init).unwrap();
        let (i, s) = (Buffer::from_u32(d, ids).unwrap(), Buffer::from_f32(d, &src).unwrap());
        index_add(&dst, shape, dim, &i, ids.len(), &s).unwrap();
        dst
    };
    same_bits(what, &run(dev), &run(&Device::cpu_reference()), dn);
}

#[test]
fn long_sorts_run_in_ranges_with_the_twins_bits() {
    let Some((g, _)) = devices("long_sorts_run_in_ranges_with_the_twins_bits") else { return };
    let mut r = rng(24);
    // One range of 1,025 to 16,385 ids (storage stages past one tile), and
    // 70,001 (two ranges of at most 65,536, the second partial).
    for k in [1025usize, 2049, 16385, 70001] {
        let ids: Vec<u32> = (0..k).map(|_| r.below(50)).collect();
        same_as_twin(&g, &format!("{k} ids over 50 rows"), (&[50, 2], 0), &ids, k as u64);
    }
    let descending: Vec<u32> = (0..5000u32).rev().map(|i| i % 1000).collect();
    same_as_twin(&g, "5,000 descending ids", (&[1000], 0), &descending, 1);
    // A 64 KiB binding limit: ranges of 4,093 ids, each a sort of 4,096
    // keys (storage stages) in windows.
    let Some(small) = limited_gpu("long_sorts_run_in_ranges_with_the_twins_bits", 65536) else { return };
    let ids: Vec<u32> = (0..20011).map(|_| r.below(97)).collect();
    same_as_twin(&small, "20,011 ids in windows", (&[97], 0), &ids, 2);
    let ids: Vec<u32> = (0..9001).map(|_| r.below(7)).collect();
    same_as_twin(&small, "9,001 ids along dim 1 in windows", (&[3, 7], 1), &ids, 3);
    same_as_twin(&small, "one id 9,001 times in windows", (&[3, 7], 1), &[3; 9001], 4);
}

#[test]
fn past_a_2_kib_binding_limit_ranges_and_groups_keep_the_twins_bits() {
    let test = "past_a_2_kib_binding_limit_ranges_and_groups_keep_the_twins_bits";
    let Some(small) = limited_gpu(test, 2048) else { return };
    // Each binds 12 KB or more somewhere and ends on a partial range of
    // rows or group of outer indices.
    let cases: [(&str, &[usize], usize, Vec<u32>); 3] = [
        ("an embedding gradient from 317 rows of 10 (ranges of rows)", &[40, 10], 0, {
            (0..317u32).map(|i| (i * 17 + 3) % 40).collect()
        }),
        ("along dim 1 of [25, 5, 4] (groups of the outer dim)", &[25, 5, 4], 1, {
            (0..32u32).map(|i| (i * 3 + 1) % 5).collect()
        }),
        ("along dim 1 of [3, 40, 10] (ranges of rows in each outer index)", &[3, 40, 10], 1, {
            (0..117u32).map(|i| (i * 7) % 40).collect()
        }),
    ];
    for fusion in [true, false] {
        small.set_fusion(fusion).unwrap();
        for (seed, (what, shape, dim, ids)) in cases.iter().enumerate() {
            let what = format!("{what} (fusion {fusion})");
            small.flush().unwrap();
            let before = small.stats().dispatches;
            same_as_twin(&small, &what, (shape, *dim), ids, 29 + seed as u64);
            // Uploads are not launches: some launch split into at least 6
            // ranges or groups of at most 2 KiB.
            let launches = small.stats().dispatches - before;
            assert!(launches >= 6, "{what}: {launches} launches");
        }
    }
}

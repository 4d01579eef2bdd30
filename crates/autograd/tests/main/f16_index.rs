//! f16 tables and views without widening: embedding and index_select gather
//! whole words of an f16 table, and f16 views are made dense by one f16
//! copy. Values are moved, never converted, so every result must equal the
//! f32 path's exactly; gradients sum in f32 and round once.

use crate::common;
use common::{backends, rand};
use wgrad_autograd::{DType, Device, Tensor};
use wgrad_gpu_core::testing::fresh_gpu_or_skip;

/// An F16 table (values rounded once) and its exact F32 widening.
fn table(rows: usize, width: usize, seed: u64, dev: &Device) -> (Tensor, Tensor) {
    let h = rand(&[rows, width], seed, -2.0, 2.0, dev).to_dtype(DType::F16);
    let wide = h.to_dtype(DType::F32);
    (h, wide)
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn f16_embedding_gives_the_f32_rows_exactly() {
    for dev in backends("f16_embedding_gives_the_f32_rows_exactly") {
        // Even widths gather words; odd ones go through f32.
        for width in [6, 5, 2, 1] {
            let (h, wide) = table(9, width, width as u64, &dev);
            let ids = Tensor::from_u32(&[3, 0, 8, 3, 7, 1], &[2, 3], &dev);
            let got = ids.embedding(&h, None);
            assert_eq!(got.dtype(), DType::F16, "width {width}");
            assert_eq!(got.shape(), vec![2, 3, width]);
            let want = ids.embedding(&wide, None);
            assert_eq!(bits(&got), bits(&want), "width {width} on {}", dev.name());
        }
    }
}

/// The gradient reaching an f32 master table through its f16 copy: summed in
/// f32 over repeated ids, rounded to f16 once, so it equals the f32 path's
/// gradient rounded (the output gradient is exact in f16 here), with the
/// padding row's gradient zero.
#[test]
fn f16_embedding_gradient_sums_in_f32_and_rounds_once() {
    for dev in backends("f16_embedding_gradient_sums_in_f32_and_rounds_once") {
        for (width, pad) in [(4, None), (4, Some(3)), (3, Some(0))] {
            let master = rand(&[6, width], 11, -1.0, 1.0, &dev).requires_grad_();
            let ids = Tensor::from_u32(&[3, 0, 5, 3, 3, 1, 0], &[7], &dev);
            // Output-gradient weights on a 1/8 grid: exact in f16.
            let w: Vec<f32> = (0..7 * width).map(|i| ((i * 7) % 23) as f32 / 8.0 - 1.0).collect();
            let w = Tensor::from_vec(&w, &[7, width], &dev);
            let grad = |half: bool| {
                master.zero_grad();
                let rows = if half {
                    ids.embedding(&master.to_dtype(DType::F16), pad).to_dtype(DType::F32)
                } else {
                    ids.embedding(&master, pad)
                };
                (&rows * &w).sum(&[], false).backward();
                master.grad().unwrap().to_vec()
            };
            let (g16, g32) = (grad(true), grad(false));
            let rounded: Vec<f32> = g32.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
            assert_eq!(g16, rounded, "width {width}, padding {pad:?} on {}", dev.name());
            if let Some(p) = pad.map(|p| p as usize) {
                assert!(g16[p * width..(p + 1) * width].iter().all(|&v| v == 0.0), "padding row gets no gradient");
            }
            assert!(g16.iter().any(|&v| v != 0.0), "some gradient arrives");
        }
    }
}

#[test]
fn f16_index_select_matches_the_f32_op_along_every_dim() {
    for dev in backends("f16_index_select_matches_the_f32_op_along_every_dim") {
        let (h, wide) = table(7, 4, 5, &dev);
        let h3 = h.reshape(&[7, 2, 2]);
        let ids = Tensor::from_u32(&[1, 0, 0, 6], &[4], &dev);
        for (x, w, dim) in [(&h, &wide, 0), (&h, &wide, 1), (&h3, &wide.reshape(&[7, 2, 2]), 2)] {
            let ids = ids.narrow(0, 0, if dim == 0 { 4 } else { 3 }).contiguous();
            let got = x.index_select(dim, &ids);
            assert_eq!(got.dtype(), DType::F16);
            let want = w.index_select(dim, &ids);
            assert_eq!(bits(&got), bits(&want), "dim {dim} on {}", dev.name());
        }
        // A transposed table has no whole-word rows: the f32 route, same values.
        let t = h.transpose(0, 1);
        let ids = ids.narrow(0, 0, 3).contiguous();
        let want = wide.transpose(0, 1).index_select(0, &ids);
        assert_eq!(bits(&t.index_select(0, &ids)), bits(&want), "transposed on {}", dev.name());
    }
}

/// On a fresh GPU: an f16 embedding is one gather (the widened route casts
/// the whole table first), and an f16 view is made dense by one copy (it
/// used to widen, copy and narrow).
#[test]
fn f16_gathers_and_copies_are_one_launch() {
    let Some(dev) = fresh_gpu_or_skip("f16_gathers_and_copies_are_one_launch") else { return };
    let (h, _) = table(50, 8, 2, &dev);
    let ids = Tensor::from_u32(&[4, 9, 49], &[3], &dev);
    let t = h.reshape(&[10, 5, 8]).permute(&[2, 0, 1]);
    dev.flush().unwrap();
    let count = |f: &dyn Fn() -> Tensor| {
        dev.flush().unwrap();
        let before = dev.stats().dispatches;
        let y = f();
        dev.flush().unwrap();
        (y.dtype(), dev.stats().dispatches - before)
    };
    assert_eq!(count(&|| ids.embedding(&h, None)), (DType::F16, 1), "f16 embedding");
    assert_eq!(count(&|| t.contiguous()), (DType::F16, 1), "f16 permuted copy");
    assert_eq!(count(&|| t.deep_copy()), (DType::F16, 1), "f16 deep copy of a view");
}

//! Pooling on F16 tensors (mixed precision): max_pool2d, avg_pool2d and
//! adaptive_avg_pool2d of an F16 input return F16, recorded on the F16
//! input itself (no widened copy), with values equal to the F32 op on the
//! widened input rounded to f16 (averages within one f16 ulp) and F16
//! gradients likewise, on every backend; unbatched input too. On a GPU of
//! its own, the F16 max pool is one dispatch where the widened path is two.

use crate::common;
use common::*;
use half::f16;
use wgrad_autograd::{DType, Device, Tensor};
use wgrad_gpu_core::testing::{fresh_gpu_or_skip, Rng};

type Pair = (usize, usize);

/// Seeded values already rounded to f16, with ±65504 and subnormals mixed in.
fn halves(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let special = [65504.0, -65504.0, 5.96e-8, -3.0e-5];
    let v = Rng::new(seed).vec(n, lo, hi);
    v.iter()
        .enumerate()
        .map(|(i, &x)| if i % 9 == 8 { special[i / 9 % special.len()] } else { x })
        .map(|x| f16::from_f32(x).to_f32())
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Max(Pair, Pair, Pair, Pair),
    Avg(Pair, Pair, Pair, bool),
    Adaptive(Pair),
}

impl Op {
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Op::Max(k, s, p, d) => x.max_pool2d(k, s, p, d),
            Op::Avg(k, s, p, c) => x.avg_pool2d(k, s, p, c),
            Op::Adaptive(o) => x.adaptive_avg_pool2d(o),
        }
    }

    /// Max pooling and its gradient are exact; averages round once.
    fn ulps(self) -> u16 {
        match self {
            Op::Max(..) => 0,
            _ => 1,
        }
    }
}

fn compare(dev: &Device, shape: &[usize], op: Op, seed: u64) {
    let what = format!("{} {op:?} on {shape:?}", dev.name());
    let n: usize = shape.iter().product();
    let x = halves(n, seed, -3.0, 3.0);
    let run = |half: bool| {
        let leaf = Tensor::from_vec(&x, shape, dev).requires_grad_();
        let input = if half { leaf.to_dtype(DType::F16) } else { leaf.clone() };
        let y = op.apply(&input);
        let (dtype, out_shape) = (y.dtype(), y.shape());
        let m: usize = out_shape.iter().product();
        let gy = halves(m, seed + 1, -1.0, 1.0);
        let gy = if half {
            Tensor::from_f16(&gy.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(), &out_shape, dev)
        } else {
            Tensor::from_vec(&gy, &out_shape, dev)
        };
        y.backward_with(&gy);
        (dtype, out_shape, y.to_vec(), leaf.grad().expect("a gradient").to_vec())
    };
    let (d16, s16, y16, g16) = run(true);
    let (d32, s32, y32, g32) = run(false);
    assert_eq!((d16, d32), (DType::F16, DType::F32), "{what}: output dtypes");
    assert_eq!(s16, s32, "{what}: shapes");
    close_to_f16_ulps(&format!("{what}: y"), &y16, &y32, op.ulps());
    // The F16 input's gradient is F16 (the cast's backward widens it exactly).
    close_to_f16_ulps(&format!("{what}: grad"), &g16, &g32, op.ulps());
}

#[test]
fn f16_pooling_matches_the_f32_op_rounded() {
    for dev in backends("f16_pooling_matches_the_f32_op_rounded") {
        let mut seed = 100;
        let ops = [
            ([2, 3, 7, 9].as_slice(), Op::Max((3, 3), (2, 2), (1, 1), (1, 1))),
            (&[1, 3, 9, 9], Op::Max((3, 3), (2, 2), (1, 1), (1, 1))),
            (&[1, 1, 9, 7], Op::Max((3, 2), (1, 2), (1, 0), (2, 2))),
            (&[2, 1, 5, 6], Op::Max((3, 3), (1, 1), (0, 0), (1, 1))),
            (&[1, 3, 9, 9], Op::Avg((3, 3), (2, 2), (1, 1), true)),
            (&[1, 2, 6, 11], Op::Avg((2, 4), (3, 2), (1, 2), false)),
            (&[2, 3, 7, 5], Op::Adaptive((3, 2))),
            (&[1, 3, 7, 5], Op::Adaptive((3, 3))),
            (&[3, 4, 6, 9], Op::Adaptive((1, 1))),
            // unbatched [C, H, W]
            (&[3, 7, 5], Op::Max((2, 2), (2, 2), (0, 0), (1, 1))),
            (&[3, 7, 5], Op::Adaptive((2, 3))),
        ];
        for (shape, op) in ops {
            seed += 10;
            compare(&dev, shape, op, seed);
        }
    }
}

/// The average of four 60000s is 60000 (an f16 sum would overflow), and
/// the gradient stays F16 through a second pooling.
#[test]
fn f16_average_sums_in_f32() {
    for dev in backends("f16_average_sums_in_f32") {
        let x = Tensor::from_vec(&[60000.0; 8], &[1, 2, 2, 2], &dev).to_dtype(DType::F16);
        let y = x.adaptive_avg_pool2d((1, 1));
        assert_eq!(y.dtype(), DType::F16);
        assert_eq!(y.to_vec(), vec![60000.0, 60000.0], "{}", dev.name());
        let z = x.max_pool2d((2, 1), (1, 1), (0, 0), (1, 1)).avg_pool2d((1, 2), (1, 1), (0, 0), true);
        assert_eq!((z.dtype(), z.shape().to_vec()), (DType::F16, vec![1, 2, 1, 1]));
        assert_eq!(z.to_vec(), vec![60000.0, 60000.0], "{}", dev.name());
    }
}

#[test]
#[should_panic(expected = "max_pool2d: expects F32 or F16 tensors, got U32")]
fn u32_input_panics() {
    let dev = Device::cpu();
    Tensor::from_u32(&[1, 2, 3, 4], &[1, 1, 2, 2], &dev).max_pool2d((2, 2), (2, 2), (0, 0), (1, 1));
}

/// On a GPU of its own (exact counters): the F16 max pool is one dispatch
/// (no cast), the widened path a cast and the pool; from a dense F16
/// output gradient, the F16 backward is the pool's and the leaf's widen,
/// the widened path's the f32 pool's and its rounding to f16 and back to
/// the f32 leaf (a narrow read back by a widen: one fused launch).
#[test]
fn f16_max_pool_records_no_cast() {
    let Some(dev) = fresh_gpu_or_skip("f16_max_pool_records_no_cast") else { return };
    let x = halves(2 * 3 * 9 * 9, 7, -2.0, 2.0);
    let pool = |t: &Tensor| t.max_pool2d((3, 3), (2, 2), (1, 1), (1, 1));
    // (output dtype, forward dispatches, backward dispatches) of a fresh graph.
    let count = |widen: bool| {
        let h = Tensor::from_vec(&x, &[2, 3, 9, 9], &dev).requires_grad_().to_dtype(DType::F16);
        dev.flush().unwrap();
        let before = dev.stats().dispatches;
        let y = if widen { pool(&h.to_dtype(DType::F32)) } else { pool(&h) };
        dev.flush().unwrap();
        let forward = dev.stats().dispatches - before;
        let gy = Tensor::from_vec(&vec![0.5; 2 * 3 * 5 * 5], &y.shape(), &dev).to_dtype(y.dtype());
        dev.flush().unwrap();
        let before = dev.stats().dispatches;
        y.backward_with(&gy);
        dev.flush().unwrap();
        (y.dtype(), forward, dev.stats().dispatches - before)
    };
    let (d16, f16_forward, f16_backward) = count(false);
    let (d32, wide_forward, wide_backward) = count(true);
    assert_eq!((d16, d32), (DType::F16, DType::F32));
    assert_eq!(f16_forward, 1, "the F16 max pool is one dispatch");
    assert_eq!(wide_forward, 2, "the widened path casts, then pools");
    assert_eq!((f16_backward, wide_backward), (2, 2), "backward dispatches: F16, widened");
}

//! pad (every mode), pixel_shuffle/pixel_unshuffle, masked_fill, tril and
//! triu: finite-difference gradient checks on the CPU backend and the GPU,
//! small hand-worked results, F16 (and U32) data kept exact, the primitives
//! a trace records, and panics that name the op and the shape.

use crate::common;
use common::*;
use wgrad_autograd::{trace, DType, PadMode, Tensor, TraceOp};

const MODES: [PadMode; 4] = [PadMode::Constant(0.5), PadMode::Reflect, PadMode::Replicate, PadMode::Circular];

#[test]
fn pad_gradients() {
    for mode in MODES {
        let m = format!("{mode:?}");
        gradcheck(&format!("pad {m} last dim"), &[&[2, 5]], |x| x[0].pad(&[2, 1], mode));
        gradcheck(&format!("pad {m} two dims"), &[&[2, 3, 4]], |x| x[0].pad(&[1, 3, 2, 0], mode));
        gradcheck(&format!("pad {m} three dims"), &[&[3, 4, 3]], |x| x[0].pad(&[0, 2, 1, 1, 2, 1], mode));
        gradcheck(&format!("pad {m} of a transposed view"), &[&[4, 3]], |x| x[0].t().pad(&[1, 2, 2, 1], mode));
    }
    // The largest pads each mode takes: size - 1 to reflect, size to wrap.
    gradcheck("pad reflect by size - 1", &[&[2, 4]], |x| x[0].pad(&[3, 3], PadMode::Reflect));
    gradcheck("pad circular by the size", &[&[3, 2]], |x| x[0].pad(&[2, 2, 3, 1], PadMode::Circular));
    gradcheck("pad replicate far past a size-1 dim", &[&[1, 3]], |x| x[0].pad(&[0, 0, 3, 2], PadMode::Replicate));
}

#[test]
fn pad_fills_as_pytorch_does() {
    for dev in backends("gradients_padding::pad_fills_as_pytorch_does") {
        let x = Tensor::from_vec(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &dev);
        let cases = [
            (PadMode::Constant(-1.0), vec![-1.0, 1.0, 2.0, 3.0, -1.0, -1.0, -1.0, 4.0, 5.0, 6.0, -1.0, -1.0]),
            (PadMode::Reflect, vec![2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 5.0, 4.0, 5.0, 6.0, 5.0, 4.0]),
            (PadMode::Replicate, vec![1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 4.0, 4.0, 5.0, 6.0, 6.0, 6.0]),
            (PadMode::Circular, vec![3.0, 1.0, 2.0, 3.0, 1.0, 2.0, 6.0, 4.0, 5.0, 6.0, 4.0, 5.0]),
        ];
        for (mode, want) in cases {
            let y = x.pad(&[1, 2], mode);
            assert_eq!(y.shape().to_vec(), vec![2, 6], "{mode:?} on {}", dev.name());
            assert_eq!(y.to_vec(), want, "{mode:?} on {}", dev.name());
        }
        // Corners of two padded dims: a reflection of a reflection.
        let y = x.pad(&[1, 0, 1, 0], PadMode::Reflect);
        assert_eq!(y.to_vec(), vec![5.0, 4.0, 5.0, 6.0, 2.0, 1.0, 2.0, 3.0, 5.0, 4.0, 5.0, 6.0]);
        // No padding: a copy of the same values; an empty pad list too.
        assert_eq!(x.pad(&[0, 0, 0, 0], PadMode::Reflect).to_vec(), x.to_vec());
        assert_eq!(x.pad(&[], PadMode::Constant(1.0)).to_vec(), x.to_vec());
        // Dims padded by (0, 0) are not checked: an empty batch pads.
        for mode in MODES {
            let e = Tensor::zeros(&[0, 3], &dev).pad(&[2, 1, 0, 0], mode);
            assert_eq!(e.shape().to_vec(), vec![0, 6], "{mode:?} of an empty batch on {}", dev.name());
        }
        // Constant padding of an empty dim is all constant.
        let e = Tensor::zeros(&[2, 0], &dev).pad(&[1, 1], PadMode::Constant(7.0));
        assert_eq!((e.shape().to_vec(), e.to_vec()), (vec![2, 2], vec![7.0; 4]));
    }
}

#[test]
fn pixel_shuffle_gradients_and_inverse() {
    gradcheck("pixel_shuffle r=2 batched", &[&[2, 8, 2, 3]], |x| x[0].pixel_shuffle(2));
    gradcheck("pixel_shuffle r=3 unbatched", &[&[9, 2, 1]], |x| x[0].pixel_shuffle(3));
    gradcheck("pixel_shuffle two batch dims", &[&[2, 1, 4, 1, 2]], |x| x[0].pixel_shuffle(2));
    gradcheck("pixel_unshuffle r=2 batched", &[&[2, 2, 4, 6]], |x| x[0].pixel_unshuffle(2));
    gradcheck("pixel_unshuffle r=3 unbatched", &[&[1, 3, 6]], |x| x[0].pixel_unshuffle(3));
    for dev in backends("gradients_padding::pixel_shuffle_gradients_and_inverse") {
        // Channel c·r² + i·r + j at (h, w) lands at (c, h·r + i, w·r + j).
        let x = Tensor::arange(0.0, 8.0, 1.0, &dev).reshape(&[4, 1, 2]);
        let y = x.pixel_shuffle(2);
        assert_eq!(y.shape().to_vec(), vec![1, 2, 4]);
        assert_eq!(y.to_vec(), vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0], "on {}", dev.name());
        let x = rand(&[2, 3, 6, 9], 3, -1.0, 1.0, &dev);
        assert_eq!(x.pixel_unshuffle(3).pixel_shuffle(3).to_vec(), x.to_vec(), "round trip on {}", dev.name());
        assert_eq!(x.pixel_unshuffle(1).to_vec(), x.to_vec());
    }
}

#[test]
fn masked_fill_gradients() {
    let mask = |dev: &wgrad_autograd::Device, shape: &[usize]| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * 7 + 3) % 5 < 2) as u32 as f32).collect();
        Tensor::from_vec(&v, shape, dev)
    };
    // The mask is made inside `f`: a finite-difference step on it would
    // move its zeros, and it has no gradient.
    gradcheck("masked_fill with a broadcast mask", &[&[2, 3, 4]], |x| {
        x[0].masked_fill(&mask(&x[0].device(), &[3, 1]), 2.5)
    });
    gradcheck("masked_fill broadcasting self", &[&[4]], |x| x[0].masked_fill(&mask(&x[0].device(), &[3, 4]), -1.0));
    gradcheck("masked_fill with a U32 mask", &[&[3, 4]], |x| {
        x[0].masked_fill(&mask(&x[0].device(), &[3, 4]).to_dtype(DType::U32), 0.0)
    });
    for dev in backends("gradients_padding::masked_fill_gradients") {
        let x = Tensor::from_vec(&[1.0, 2.0, 3.0, 4.0], &[2, 2], &dev);
        let m = Tensor::from_u32(&[0, 3], &[2], &dev);
        assert_eq!(x.masked_fill(&m, f32::NEG_INFINITY).to_vec(), vec![1.0, f32::NEG_INFINITY, 3.0, f32::NEG_INFINITY]);
        // Filled elements take the value even where the input is NaN.
        let odd = Tensor::from_vec(&[f32::NAN, 1.0], &[2], &dev);
        assert_eq!(odd.masked_fill(&Tensor::from_vec(&[1.0, 0.0], &[2], &dev), 5.0).to_vec(), vec![5.0, 1.0]);
        // A comparison's mask, the way attention scores are masked.
        let y = x.masked_fill(&x.gt(&Tensor::scalar(2.5, &dev)), 0.0);
        assert_eq!(y.to_vec(), vec![1.0, 2.0, 0.0, 0.0]);
    }
}

#[test]
fn tril_and_triu_gradients() {
    for d in [-2, -1, 0, 1, 3] {
        gradcheck(&format!("tril diagonal {d}, batched 3x4"), &[&[2, 3, 4]], |x| x[0].tril(d));
        gradcheck(&format!("triu diagonal {d}, 4x3"), &[&[4, 3]], |x| x[0].triu(d));
    }
    gradcheck("tril of a transposed view", &[&[4, 3, 2]], |x| x[0].transpose(0, 2).tril(0));
    for dev in backends("gradients_padding::tril_and_triu_gradients") {
        let x = Tensor::arange(1.0, 7.0, 1.0, &dev).reshape(&[2, 3]);
        assert_eq!(x.tril(0).to_vec(), vec![1.0, 0.0, 0.0, 4.0, 5.0, 0.0]);
        assert_eq!(x.tril(-1).to_vec(), vec![0.0, 0.0, 0.0, 4.0, 0.0, 0.0]);
        assert_eq!(x.triu(1).to_vec(), vec![0.0, 2.0, 3.0, 0.0, 0.0, 6.0]);
        assert_eq!(x.triu(-1).to_vec(), x.to_vec());
        assert_eq!(x.tril(-2).to_vec(), vec![0.0; 6]);
        // Zeroed elements are 0 even where the input is not finite.
        let (inf, nan) = (f32::INFINITY, f32::NAN);
        let odd = Tensor::from_vec(&[1.0, inf, nan, 3.0, 2.0, -inf], &[2, 3], &dev);
        assert_eq!(odd.tril(0).to_vec(), vec![1.0, 0.0, 0.0, 3.0, 2.0, 0.0], "tril on {}", dev.name());
        let odd = Tensor::from_vec(&[nan, 1.0, inf, -inf], &[2, 2], &dev);
        assert_eq!(odd.triu(1).to_vec(), vec![0.0, 1.0, 0.0, 0.0], "triu on {}", dev.name());
    }
}

/// An op under test, applied to F32 and F16 data alike.
type TensorFn<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;

#[test]
fn f16_and_integer_data_stay_exact() {
    for dev in backends("gradients_padding::f16_and_integer_data_stay_exact") {
        // Halves are exact in f16: the ops only move or replace values.
        let v: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 5.5).collect();
        let x = Tensor::from_vec(&v, &[2, 3, 4], &dev);
        let h = x.to_dtype(DType::F16);
        let mask = x.lt(&Tensor::scalar(0.0, &dev));
        let ops: Vec<(&str, TensorFn)> = vec![
            ("pad constant", Box::new(|t| t.pad(&[1, 2, 0, 1], PadMode::Constant(0.25)))),
            ("pad reflect", Box::new(|t| t.pad(&[3, 1, 2, 2], PadMode::Reflect))),
            ("pad replicate", Box::new(|t| t.pad(&[1, 2, 1, 0, 1, 1], PadMode::Replicate))),
            ("pad circular", Box::new(|t| t.pad(&[4, 0, 3, 1], PadMode::Circular))),
            ("pixel_shuffle", Box::new(|t| t.reshape(&[1, 4, 3, 2]).pixel_shuffle(2))),
            ("pixel_unshuffle", Box::new(|t| t.reshape(&[2, 6, 2]).pixel_unshuffle(2))),
            ("masked_fill", Box::new(|t| t.masked_fill(&mask, -0.75))),
            ("tril", Box::new(|t| t.tril(1))),
            ("triu", Box::new(|t| t.triu(-1))),
        ];
        for (name, f) in &ops {
            let (y, want) = (f(&h), f(&x));
            assert_eq!(y.dtype(), DType::F16, "{name} on {}: dtype", dev.name());
            assert_eq!(y.shape(), want.shape(), "{name} on {}: shape", dev.name());
            assert_eq!(y.to_vec(), want.to_vec(), "{name} on {}", dev.name());
        }
        // Gradients flow back through the F16 ops: the same (exact) values
        // as through the F32 ones.
        let chain = |t: &Tensor| t.pad(&[2, 1], PadMode::Reflect).tril(0).masked_fill(&mask.narrow(2, 0, 1), 1.0);
        let grad_of = |f16: bool| {
            let leaf = x.detach().requires_grad_();
            let y = chain(&if f16 { leaf.to_dtype(DType::F16) } else { leaf.clone() });
            assert_eq!(y.dtype(), if f16 { DType::F16 } else { DType::F32 });
            let w = Tensor::arange(0.0, y.numel() as f32, 1.0, &dev).reshape(&y.shape());
            (y.float() * w).sum_all().backward();
            leaf.grad().expect("a gradient").to_vec()
        };
        assert_eq!(grad_of(true), grad_of(false), "gradient through F16 on {}", dev.name());

        // U32 data pads exactly in every mode.
        let ids = Tensor::from_u32(&[10, 11, 12, 13, 14, 15], &[2, 3], &dev);
        assert_eq!(ids.pad(&[1, 1], PadMode::Constant(7.0)).to_vec_u32(), [7, 10, 11, 12, 7, 7, 13, 14, 15, 7]);
        assert_eq!(ids.pad(&[2, 0], PadMode::Reflect).to_vec_u32(), [12, 11, 10, 11, 12, 15, 14, 13, 14, 15]);
        assert_eq!(
            ids.pad(&[0, 1, 1, 0], PadMode::Replicate).to_vec_u32(),
            [10, 11, 12, 12, 10, 11, 12, 12, 13, 14, 15, 15]
        );
        assert_eq!(
            ids.pad(&[0, 0, 2, 0], PadMode::Circular).to_vec_u32(),
            [10, 11, 12, 13, 14, 15, 10, 11, 12, 13, 14, 15]
        );
        assert_eq!(ids.pad(&[1, 2], PadMode::Circular).to_vec_u32(), [12, 10, 11, 12, 10, 11, 15, 13, 14, 15, 13, 14]);
    }
}

#[test]
fn a_trace_records_only_primitive_ops() {
    let dev = wgrad_autograd::Device::cpu();
    let x = rand(&[1, 4, 3, 4], 1, -1.0, 1.0, &dev).requires_grad_();
    let (_, ops, _) = trace(|| {
        let padded: Vec<Tensor> = [PadMode::Constant(1.0), PadMode::Reflect, PadMode::Replicate, PadMode::Circular]
            .into_iter()
            .map(|m| x.pad(&[1, 1, 2, 0], m))
            .collect();
        let shuffled = x.pixel_shuffle(2).pixel_unshuffle(2);
        let masked = x.tril(0).triu(-1).masked_fill(&x.gt(&Tensor::scalar(0.5, &dev)), 0.0);
        (padded, shuffled, masked)
    });
    for o in &ops {
        assert!(
            matches!(
                o.op,
                TraceOp::Slice { .. }
                    | TraceOp::Concat { .. }
                    | TraceOp::IndexSelect { .. }
                    | TraceOp::Constant { .. }
                    | TraceOp::Reshape
                    | TraceOp::Permute { .. }
                    | TraceOp::Identity
                    | TraceOp::Expand
                    | TraceOp::Where
                    | TraceOp::Binary(_)
            ),
            "unexpected traced op {:?}",
            o.op
        );
    }
    for want in ["Slice", "Concat", "IndexSelect", "Expand", "Permute", "Where", "Constant"] {
        assert!(ops.iter().any(|o| format!("{:?}", o.op).starts_with(want)), "no {want} traced: {ops:?}");
    }
}

/// A call that should panic.
type Call<'a> = Box<dyn FnOnce() -> Tensor + 'a>;

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce() -> Tensor) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
}

#[test]
fn bad_arguments_panic_naming_the_op_and_the_shape() {
    let dev = wgrad_autograd::Device::cpu();
    let x = Tensor::zeros(&[2, 3], &dev);
    let img = Tensor::zeros(&[1, 6, 4, 3], &dev);
    let ids = Tensor::from_u32(&[1, 2], &[1, 2], &dev);
    let cases: Vec<(Call, &str)> = vec![
        (
            Box::new(|| x.pad(&[1, 2, 3], PadMode::Constant(0.0))),
            "pad: padding length must be divisible by 2, got [1, 2, 3] (shape [2, 3])",
        ),
        (
            Box::new(|| x.pad(&[1, 1, 1, 1, 1, 1], PadMode::Constant(0.0))),
            "pad: 6 pads [1, 1, 1, 1, 1, 1] for shape [2, 3]; at most two per dim (4)",
        ),
        (
            Box::new(|| x.pad(&[3, 0], PadMode::Reflect)),
            "pad: reflect padding (3, 0) of dim 1 of shape [2, 3] must be smaller than the dim (3)",
        ),
        (
            Box::new(|| x.pad(&[0, 0, 0, 2], PadMode::Reflect)),
            "pad: reflect padding (0, 2) of dim 0 of shape [2, 3] must be smaller than the dim (2)",
        ),
        (
            Box::new(|| x.pad(&[1, 4], PadMode::Circular)),
            "pad: circular padding (1, 4) of dim 1 of shape [2, 3] wraps around more than once (at most 3)",
        ),
        (
            Box::new(|| Tensor::zeros(&[2, 0], &dev).pad(&[1, 0], PadMode::Replicate)),
            "pad: replicate padding (1, 0) of dim 1 of shape [2, 0], which is empty",
        ),
        (
            Box::new(|| img.pixel_shuffle(0)),
            "pixel_shuffle: upscale_factor must be positive, got 0 (shape [1, 6, 4, 3])",
        ),
        (Box::new(|| x.pixel_shuffle(2)), "pixel_shuffle: expects at least 3 dims [*, C, H, W], got shape [2, 3]"),
        (
            Box::new(|| img.pixel_shuffle(2)),
            "pixel_shuffle: channels 6 (dim -3 of shape [1, 6, 4, 3]) are not divisible by upscale_factor² = 4",
        ),
        (
            Box::new(|| img.pixel_unshuffle(0)),
            "pixel_unshuffle: downscale_factor must be positive, got 0 (shape [1, 6, 4, 3])",
        ),
        (
            Box::new(|| img.pixel_unshuffle(2)),
            "pixel_unshuffle: width 3 (dim -1 of shape [1, 6, 4, 3]) is not divisible by downscale_factor 2",
        ),
        (
            Box::new(|| img.pixel_unshuffle(3)),
            "pixel_unshuffle: height 4 (dim -2 of shape [1, 6, 4, 3]) is not divisible by downscale_factor 3",
        ),
        (
            Box::new(|| x.masked_fill(&Tensor::zeros(&[2], &dev), 1.0)),
            "masked_fill: mask of shape [2] cannot be broadcast with shape [2, 3]",
        ),
        (Box::new(|| ids.masked_fill(&ids, 1.0)), "masked_fill: expects F32 or F16 tensors, got U32 of shape [1, 2]"),
        (Box::new(|| Tensor::zeros(&[3], &dev).tril(0)), "tril: expects at least a 2-D tensor, got shape [3]"),
        (Box::new(|| ids.triu(0)), "triu: expects F32 or F16 tensors, got U32 of shape [1, 2]"),
    ];
    for (f, want) in cases {
        let m = panic_message(f);
        assert!(m.starts_with(want), "got {m:?}, want it to start with {want:?}");
    }
}

//! chunk, split, split_sizes, repeat, flip and roll: finite-difference
//! gradient checks on the CPU backend and the GPU, U32 and F16 data kept
//! exact, empty pieces, the primitives a trace records, and panics that
//! name the op and the shape.

use crate::common;
use common::*;
use wgrad_autograd::{trace, DType, Tensor, TraceOp};

/// Every piece flattened and joined: one output per element of every piece,
/// so the check's random weights reach each piece's gradient path.
fn joined(pieces: &[Tensor]) -> Tensor {
    let flat: Vec<Tensor> = pieces.iter().map(|p| p.reshape(&[p.numel()])).collect();
    Tensor::cat(&flat.iter().collect::<Vec<_>>(), 0)
}

#[test]
fn chunk_and_split_gradients() {
    gradcheck("chunk 7 into 3", &[&[3, 7]], |x| joined(&x[0].chunk(3, 1)));
    gradcheck("chunk 6 into 4 (3 pieces), negative dim", &[&[2, 6]], |x| joined(&x[0].chunk(4, -1)));
    gradcheck("chunk more chunks than elements", &[&[3, 2, 2]], |x| joined(&x[0].chunk(5, 0)));
    gradcheck("split 7 by 3", &[&[7, 2]], |x| joined(&x[0].split(3, 0)));
    gradcheck("split of a transposed view", &[&[3, 5]], |x| joined(&x[0].t().split(2, 0)));
    gradcheck("split_sizes with an empty piece", &[&[2, 3, 6]], |x| joined(&x[0].split_sizes(&[1, 0, 3, 2], -1)));
    // Only some pieces used: the others get no gradient.
    gradcheck("one piece of a split", &[&[5, 3]], |x| x[0].split(2, 0)[1].clone());
}

#[test]
fn repeat_gradients() {
    gradcheck("repeat 2-D", &[&[2, 3]], |x| x[0].repeat(&[3, 2]));
    gradcheck("repeat adding dims", &[&[3]], |x| x[0].repeat(&[2, 1, 2]));
    gradcheck("repeat a size-1 dim", &[&[2, 1, 3]], |x| x[0].repeat(&[1, 4, 2]));
    gradcheck("repeat of a transposed view", &[&[3, 2]], |x| x[0].t().repeat(&[2, 2]));
    gradcheck("repeat a 0-d tensor", &[&[]], |x| x[0].repeat(&[3, 2]));
}

#[test]
fn flip_gradients() {
    gradcheck("flip dim 0", &[&[4, 3]], |x| x[0].flip(&[0]));
    gradcheck("flip two dims, one negative", &[&[2, 3, 5]], |x| x[0].flip(&[0, -1]));
    gradcheck("flip a size-1 dim and another", &[&[1, 5, 2]], |x| x[0].flip(&[1, 0]));
    gradcheck("flip of a transposed view", &[&[3, 4]], |x| x[0].t().flip(&[0, 1]));
}

#[test]
fn roll_gradients() {
    gradcheck("roll by 2", &[&[5]], |x| x[0].roll(&[2], &[0]));
    gradcheck("roll by a negative shift", &[&[3, 6]], |x| x[0].roll(&[-1], &[1]));
    gradcheck("roll oversized shifts", &[&[3, 4, 5]], |x| x[0].roll(&[7, -9], &[0, -1]));
    gradcheck("roll one dim twice", &[&[2, 5]], |x| x[0].roll(&[3, 1], &[1, 1]));
    gradcheck("roll by the whole size", &[&[3, 4]], |x| x[0].roll(&[4], &[1]));
    gradcheck("roll of a transposed view", &[&[3, 4]], |x| x[0].t().roll(&[1, -2], &[0, 1]));
}

#[test]
fn integer_and_f16_data_stay_exact() {
    for dev in backends("gradients_rearrange::integer_and_f16_data_stay_exact") {
        let ids = Tensor::from_u32(&[0, 1, 2, 3, 4, 5], &[2, 3], &dev);
        assert_eq!(ids.flip(&[1]).to_vec_u32(), vec![2, 1, 0, 5, 4, 3]);
        assert_eq!(ids.roll(&[1], &[1]).to_vec_u32(), vec![2, 0, 1, 5, 3, 4]);
        assert_eq!(ids.repeat(&[1, 2]).to_vec_u32(), vec![0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]);
        let pieces: Vec<Vec<u32>> = ids.chunk(2, 1).iter().map(|p| p.to_vec_u32()).collect();
        assert_eq!(pieces, vec![vec![0, 1, 3, 4], vec![2, 5]]);

        // Halves are exact in f16: the ops only move values.
        let v: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.5).collect();
        let h = Tensor::from_vec(&v, &[3, 4], &dev).to_dtype(DType::F16);
        for (name, y, want) in [
            ("flip", h.flip(&[0, 1]), Tensor::from_vec(&v, &[3, 4], &dev).flip(&[0, 1])),
            ("roll", h.roll(&[-1, 3], &[0, 1]), Tensor::from_vec(&v, &[3, 4], &dev).roll(&[-1, 3], &[0, 1])),
            ("repeat", h.repeat(&[2, 1, 2]), Tensor::from_vec(&v, &[3, 4], &dev).repeat(&[2, 1, 2])),
        ] {
            assert_eq!(y.dtype(), DType::F16, "{name} on {}: dtype", dev.name());
            assert_eq!(y.to_vec(), want.to_vec(), "{name} on {}", dev.name());
        }
    }
}

#[test]
fn empty_dims_and_pieces_follow_pytorch() {
    for dev in backends("gradients_rearrange::empty_dims_and_pieces_follow_pytorch") {
        let e = Tensor::zeros(&[2, 0], &dev);
        let shapes = |ps: Vec<Tensor>| ps.iter().map(|p| p.shape().to_vec()).collect::<Vec<_>>();
        // torch.chunk gives `chunks` empty pieces, torch.split one.
        assert_eq!(shapes(e.chunk(3, 1)), vec![vec![2, 0]; 3]);
        assert_eq!(shapes(e.split(2, 1)), vec![vec![2, 0]]);
        assert_eq!(e.roll(&[1], &[1]).shape().to_vec(), vec![2, 0]);
        assert_eq!(e.flip(&[0, 1]).shape().to_vec(), vec![2, 0]);
        let x = rand(&[2, 3], 1, -1.0, 1.0, &dev);
        let zero = x.repeat(&[0, 2]);
        assert_eq!((zero.shape().to_vec(), zero.to_vec()), (vec![0, 6], vec![]));
    }
}

#[test]
fn a_trace_records_only_primitive_ops() {
    let dev = wgrad_autograd::Device::cpu();
    let x = rand(&[2, 6], 1, -1.0, 1.0, &dev).requires_grad_();
    let (_, ops, _) = trace(|| {
        let p = x.chunk(2, 1);
        let q = x.split_sizes(&[1, 1], 0);
        (p[0].flip(&[1]).roll(&[1], &[0]).repeat(&[2, 1]), q[1].clone())
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
                    | TraceOp::Expand
            ),
            "unexpected traced op {:?}",
            o.op
        );
    }
    for want in ["Slice", "Concat", "IndexSelect", "Expand"] {
        assert!(ops.iter().any(|o| format!("{:?}", o.op).starts_with(want)), "no {want} traced: {ops:?}");
    }
}

/// A call that should panic, returning what the op returns.
type Call<'a> = Box<dyn FnOnce() -> Vec<Tensor> + 'a>;

/// The message of the panic `f` raises.
fn panic_message(f: impl FnOnce() -> Vec<Tensor>) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
}

#[test]
fn bad_arguments_panic_naming_the_op_and_the_shape() {
    let dev = wgrad_autograd::Device::cpu();
    let x = Tensor::zeros(&[2, 3], &dev);
    let s = Tensor::scalar(1.0, &dev);
    let cases: Vec<(Call, &str)> = vec![
        (Box::new(|| x.chunk(0, 0)), "chunk: chunks must be positive, got 0 (shape [2, 3])"),
        (Box::new(|| x.chunk(2, 2)), "chunk: dimension 2 out of range for shape [2, 3]"),
        (Box::new(|| s.chunk(1, 0)), "chunk: expects at least a 1-D tensor, got shape []"),
        (Box::new(|| x.split(0, 1)), "split: split size must be positive, got 0 (dim 1 of shape [2, 3])"),
        (Box::new(|| x.split(2, -3)), "split: dimension -3 out of range for shape [2, 3]"),
        (
            Box::new(|| x.split_sizes(&[2, 2], 1)),
            "split_sizes: sizes [2, 2] sum to 4, but dim 1 of shape [2, 3] has size 3",
        ),
        (Box::new(|| vec![x.repeat(&[2])]), "repeat: 1 repeats [2] for shape [2, 3]; need at least one per dim (2)"),
        (Box::new(|| vec![x.flip(&[2])]), "flip: dimension 2 out of range for shape [2, 3]"),
        (Box::new(|| vec![x.flip(&[0, -2])]), "flip: dim 0 appears more than once in dims [0, -2] (shape [2, 3])"),
        (
            Box::new(|| vec![x.roll(&[1, 2], &[0])]),
            "roll: 2 shifts [1, 2] for 1 dims [0] (shape [2, 3]); give one shift per dim, at least one",
        ),
        (Box::new(|| vec![x.roll(&[], &[])]), "roll: 0 shifts [] for 0 dims []"),
        (Box::new(|| vec![x.roll(&[1], &[-3])]), "roll: dimension -3 out of range for shape [2, 3]"),
        (Box::new(|| vec![s.roll(&[1], &[0])]), "roll: expects at least a 1-D tensor, got shape []"),
    ];
    for (f, want) in cases {
        let m = panic_message(f);
        assert!(m.starts_with(want), "got {m:?}, want it to start with {want:?}");
    }
}

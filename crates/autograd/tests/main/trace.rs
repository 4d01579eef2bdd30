//! `trace`: each op a traced function calls is recorded once, with its
//! attributes, inputs and outputs; the ops it runs inside are not.

use std::panic::AssertUnwindSafe;

use crate::common::{backends, rand};
use wgrad_autograd::trace::is_tracing;
use wgrad_autograd::{
    trace, try_run, BinaryOp, Conv2dOptions, DType, Generator, PoolWindow, RecurrentKind, Tensor, TraceOp, TracedOp,
    UnaryOp,
};
use wgrad_gpu_core::ops::reduce::ReduceOp;

/// The ids of a record's inputs (`None` for an optional input not given).
fn input_ids(op: &TracedOp) -> Vec<Option<u64>> {
    op.inputs.iter().map(|t| t.as_ref().map(Tensor::id)).collect()
}

/// The ids of a record's outputs.
fn output_ids(op: &TracedOp) -> Vec<u64> {
    op.outputs.iter().map(Tensor::id).collect()
}

/// The ops of a trace, for messages and whole-list comparisons.
fn kinds(ops: &[TracedOp]) -> Vec<TraceOp> {
    ops.iter().map(|o| o.op.clone()).collect()
}

#[test]
fn linear_relu_reshape_softmax() {
    for dev in backends("trace::linear_relu_reshape_softmax") {
        let x = rand(&[2, 3], 1, -1.0, 1.0, &dev);
        let w = rand(&[4, 3], 2, -1.0, 1.0, &dev).requires_grad_();
        let b = rand(&[4], 3, -1.0, 1.0, &dev).requires_grad_();
        let ((h, r, s, p), ops, _) = trace(|| {
            let h = x.linear(&w, Some(&b));
            let r = h.relu();
            let s = r.reshape(&[2, 2, 2]);
            let p = s.softmax(-1);
            (h, r, s, p)
        });
        assert_eq!(
            kinds(&ops),
            vec![
                TraceOp::Linear,
                TraceOp::Unary(UnaryOp::Relu),
                TraceOp::Reshape,
                TraceOp::Softmax { dim: 2, log: false }
            ]
        );
        assert_eq!(input_ids(&ops[0]), vec![Some(x.id()), Some(w.id()), Some(b.id())]);
        assert_eq!(output_ids(&ops[0]), vec![h.id()]);
        assert_eq!(input_ids(&ops[1]), vec![Some(h.id())]);
        assert_eq!(output_ids(&ops[1]), vec![r.id()]);
        assert_eq!(input_ids(&ops[2]), vec![Some(r.id())]);
        assert_eq!(output_ids(&ops[2]), vec![s.id()]);
        assert_eq!(ops[2].outputs[0].shape().to_vec(), vec![2, 2, 2], "the reshape's target is its output's shape");
        assert_eq!(input_ids(&ops[3]), vec![Some(s.id())]);
        assert_eq!(output_ids(&ops[3]), vec![p.id()]);
        // Tracing changes nothing it computes.
        let want = x.linear(&w, Some(&b)).relu().reshape(&[2, 2, 2]).softmax(-1);
        assert_eq!(p.to_vec(), want.to_vec());
    }
}

#[test]
fn nested_ops_are_not_recorded() {
    for dev in backends("trace::nested_ops_are_not_recorded") {
        // A 3-D input: linear reshapes it to rows, multiplies by wᵀ (a
        // transpose and a matmul) and reshapes back, all inside.
        let x = rand(&[2, 1, 3], 1, -1.0, 1.0, &dev);
        let w = rand(&[4, 3], 2, -1.0, 1.0, &dev);
        let (y, ops, _) = trace(|| x.linear(&w, None));
        assert_eq!(kinds(&ops), vec![TraceOp::Linear], "linear records itself only");
        assert_eq!(input_ids(&ops[0]), vec![Some(x.id()), Some(w.id()), None]);
        assert_eq!(output_ids(&ops[0]), vec![y.id()]);

        // Ops built from others record once: softmax over a middle dim
        // (permutes inside), stack (unsqueezes and a cat), rms_norm.
        let (outs, ops, _) = trace(|| {
            let a = x.softmax(0);
            let s = Tensor::stack(&[&x, &x], -1);
            let n = x.rms_norm(&[3], None, 1e-6);
            [a, s, n]
        });
        assert_eq!(
            kinds(&ops),
            vec![
                TraceOp::Softmax { dim: 0, log: false },
                TraceOp::Concat { dim: 3, stack: true },
                TraceOp::RmsNorm { normalized_shape: vec![3], eps: 1e-6 },
            ]
        );
        assert_eq!(input_ids(&ops[1]), vec![Some(x.id()), Some(x.id())]);
        assert_eq!(
            ops.iter().flat_map(output_ids).collect::<Vec<_>>(),
            outs.iter().map(Tensor::id).collect::<Vec<_>>()
        );

        // A backward pass inside a trace records nothing of its own.
        let p = rand(&[3], 4, -1.0, 1.0, &dev).requires_grad_();
        let (_, ops, _) = trace(|| (&p * &p).sum_all().backward());
        assert_eq!(
            kinds(&ops),
            vec![TraceOp::Binary(BinaryOp::Mul), TraceOp::Reduce { op: ReduceOp::Sum, axes: vec![0], keepdim: false }]
        );
    }
}

#[test]
fn constants_made_inside_are_recorded() {
    for dev in backends("trace::constants_made_inside_are_recorded") {
        let x = rand(&[2, 3], 1, -1.0, 1.0, &dev);
        let ((z, f, d, l, u), ops, _) = trace(|| {
            (
                Tensor::zeros(&[2, 3], &dev),
                Tensor::full(&[2], 2.5, &dev),
                Tensor::from_vec(&[1.0, 2.0], &[2], &dev),
                x.ones_like(),
                Tensor::from_u32(&[1, 2], &[2], &dev),
            )
        });
        assert_eq!(
            kinds(&ops),
            vec![
                TraceOp::Constant { fill: Some(0.0) },
                TraceOp::Constant { fill: Some(2.5) },
                TraceOp::Constant { fill: None },
                TraceOp::Constant { fill: Some(1.0) },
                TraceOp::Constant { fill: None },
            ]
        );
        assert!(ops.iter().all(|o| o.inputs.is_empty()), "constants have no inputs");
        assert_eq!(ops.iter().flat_map(output_ids).collect::<Vec<_>>(), vec![z.id(), f.id(), d.id(), l.id(), u.id()]);

        // The tables of rotary embeddings are two constants.
        let ((cos, sin), ops, _) = trace(|| Tensor::rotary_tables(3, 4, 0, 10_000.0, &dev));
        assert_eq!(kinds(&ops), vec![TraceOp::Constant { fill: None }; 2]);
        assert_eq!((output_ids(&ops[0]), output_ids(&ops[1])), (vec![cos.id()], vec![sin.id()]));
    }
}

#[test]
fn early_returns_record_the_outer_op() {
    for dev in backends("trace::early_returns_record_the_outer_op") {
        // U32 comparisons widen both operands first (an early return).
        let (a, b) = (Tensor::from_u32(&[1, 2, 3], &[3], &dev), Tensor::from_u32(&[1, 0, 3], &[3], &dev));
        let (eq, ops, _) = trace(|| a.eq(&b));
        assert_eq!(kinds(&ops), vec![TraceOp::Binary(BinaryOp::Eq)], "one op, not the casts inside");
        assert_eq!(input_ids(&ops[0]), vec![Some(a.id()), Some(b.id())]);
        assert_eq!(output_ids(&ops[0]), vec![eq.id()]);
        assert_eq!(eq.to_vec(), vec![1.0, 0.0, 1.0]);

        // F16 with F32 widens the F16 operand; where with an F16 operand too.
        let h = rand(&[3], 1, -1.0, 1.0, &dev).to_dtype(DType::F16);
        let f = rand(&[3], 2, -1.0, 1.0, &dev);
        let ((sum, sel), ops, _) = trace(|| (&h + &f, Tensor::where_cond(&f, &h, &f)));
        assert_eq!(kinds(&ops), vec![TraceOp::Binary(BinaryOp::Add), TraceOp::Where]);
        assert_eq!(input_ids(&ops[0]), vec![Some(h.id()), Some(f.id())]);
        assert_eq!(input_ids(&ops[1]), vec![Some(f.id()), Some(h.id()), Some(f.id())]);
        assert_eq!(ops.iter().flat_map(output_ids).collect::<Vec<_>>(), vec![sum.id(), sel.id()]);

        // Ops that return their input make no record; real casts do.
        let mut gen = Generator::new(0);
        let (c, ops, _) = trace(|| {
            let _ = f.to_dtype(DType::F32);
            let _ = f.contiguous();
            let _ = f.dropout(0.5, false, &mut gen);
            f.to_dtype(DType::F16)
        });
        assert_eq!(kinds(&ops), vec![TraceOp::Cast(DType::F16)]);
        assert_eq!(output_ids(&ops[0]), vec![c.id()]);

        // A scalar product is one affine.
        let (_, ops, _) = trace(|| &f * 3.0);
        assert_eq!(kinds(&ops), vec![TraceOp::Unary(UnaryOp::Affine { scale: 3.0, shift: 0.0 })]);
    }
}

#[test]
fn attributes_are_recorded() {
    for dev in backends("trace::attributes_are_recorded") {
        let x = rand(&[1, 2, 5, 5], 1, -1.0, 1.0, &dev);
        let w = rand(&[3, 2, 3, 3], 2, -1.0, 1.0, &dev);
        let opts = Conv2dOptions::new().stride(2).padding_hw(1, 0).dilation_hw(1, 2);
        let ((c, p, (pm, pi), m, s), ops, _) = trace(|| {
            let c = x.conv2d(&w, None, &opts);
            let p = x.max_pool2d((3, 2), (2, 1), (1, 0), (1, 2));
            let pi = x.max_pool2d_with_indices((2, 2), (2, 2), (0, 0), (1, 1));
            let m = c.mean(&[-1], true);
            let s = x.sum(&[], false);
            (c, p, pi, m, s)
        });
        assert_eq!(
            kinds(&ops),
            vec![
                TraceOp::Conv2d(opts),
                TraceOp::MaxPool2d {
                    window: PoolWindow::new((3, 2)).stride((2, 1)).padding((1, 0)).dilation((1, 2)),
                    indices: false
                },
                TraceOp::MaxPool2d { window: PoolWindow::new((2, 2)), indices: true },
                TraceOp::Reduce { op: ReduceOp::Mean, axes: vec![3], keepdim: true },
                TraceOp::Reduce { op: ReduceOp::Sum, axes: vec![0, 1, 2, 3], keepdim: false },
            ]
        );
        assert_eq!(input_ids(&ops[0]), vec![Some(x.id()), Some(w.id()), None]);
        assert_eq!(output_ids(&ops[0]), vec![c.id()]);
        assert_eq!(output_ids(&ops[1]), vec![p.id()]);
        assert_eq!(output_ids(&ops[2]), vec![pm.id(), pi.id()], "values, then indices");
        assert_eq!((output_ids(&ops[3]), output_ids(&ops[4])), (vec![m.id()], vec![s.id()]));

        // Negative dims are resolved; slices keep start, length and step.
        let y = rand(&[2, 6], 3, -1.0, 1.0, &dev);
        let (_, ops, _) =
            trace(|| (y.narrow(-1, 1, 3), y.slice_step(1, 1, 2), y.transpose(0, -1), y.argmax(-1, false)));
        assert_eq!(
            kinds(&ops),
            vec![
                TraceOp::Slice { dim: 1, start: 1, len: 3, step: 1 },
                TraceOp::Slice { dim: 1, start: 1, len: 3, step: 2 },
                TraceOp::Permute { dims: vec![1, 0] },
                TraceOp::Reduce { op: ReduceOp::ArgMax, axes: vec![1], keepdim: false },
            ]
        );

        // Attention's default scale is resolved as the op computes it.
        let q = rand(&[2, 3, 4], 4, -1.0, 1.0, &dev);
        let (_, ops, _) = trace(|| q.scaled_dot_product_attention(&q, &q, None, true, None));
        assert_eq!(kinds(&ops), vec![TraceOp::Attention { causal: true, scale: 0.5 }]);
        assert_eq!(input_ids(&ops[0]), vec![Some(q.id()), Some(q.id()), Some(q.id()), None]);
    }
}

#[test]
fn recurrent_records_every_output() {
    for dev in backends("trace::recurrent_records_every_output") {
        let (t, b, h) = (2, 1, 2);
        let xw = rand(&[t, b, 4 * h], 1, -1.0, 1.0, &dev);
        let w_hh = rand(&[4 * h, h], 2, -1.0, 1.0, &dev);
        let b_hh = rand(&[4 * h], 3, -1.0, 1.0, &dev);
        let (h0, c0) = (rand(&[b, h], 4, -1.0, 1.0, &dev), rand(&[b, h], 5, -1.0, 1.0, &dev));
        let (out, ops, _) = trace(|| xw.recurrent(RecurrentKind::Lstm, &w_hh, Some(&b_hh), &h0, Some(&c0), true));
        assert_eq!(kinds(&ops), vec![TraceOp::Recurrent { kind: RecurrentKind::Lstm, reverse: true }]);
        assert_eq!(
            input_ids(&ops[0]),
            vec![Some(xw.id()), Some(w_hh.id()), Some(b_hh.id()), Some(h0.id()), Some(c0.id())]
        );
        let c_n = out.c_n.expect("an LSTM's c_n");
        assert_eq!(output_ids(&ops[0]), vec![out.output.id(), out.h_n.id(), c_n.id()]);

        // A GRU without a bias: two outputs, the bias slot empty.
        let xw = rand(&[t, b, 3 * h], 6, -1.0, 1.0, &dev);
        let w_hh = rand(&[3 * h, h], 7, -1.0, 1.0, &dev);
        let (out, ops, _) = trace(|| xw.recurrent(RecurrentKind::Gru, &w_hh, None, &h0, None, false));
        assert_eq!(input_ids(&ops[0]), vec![Some(xw.id()), Some(w_hh.id()), None, Some(h0.id()), None]);
        assert_eq!(output_ids(&ops[0]), vec![out.output.id(), out.h_n.id()]);
    }
}

#[test]
fn nothing_is_recorded_outside_a_trace() {
    let dev = wgrad_autograd::Device::cpu();
    let x = rand(&[2, 2], 1, -1.0, 1.0, &dev);
    assert!(!is_tracing());
    let _ = x.relu().sum_all();
    let (_, ops, _) = trace(|| {
        assert!(is_tracing());
        (x.exp(), x.neg())
    });
    assert_eq!(kinds(&ops), vec![TraceOp::Unary(UnaryOp::Exp), TraceOp::Unary(UnaryOp::Neg)], "none from before");
    assert!(!is_tracing());
    let _ = x.tanh();
    let (_, ops, _) = trace(|| x.sqrt());
    assert_eq!(kinds(&ops), vec![TraceOp::Unary(UnaryOp::Sqrt)], "a second trace starts empty");

    // An op that fails inside a trace leaves it working: the next op is
    // outermost again (a panic inside an op and an error it returns).
    let bad = rand(&[3], 2, -1.0, 1.0, &dev);
    let (failed, ops, _) = trace(|| {
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| x.linear(&bad, None))).is_err();
        let returned = try_run(|| x.reshape(&[3])).is_err();
        let _ = x.abs();
        panicked && returned
    });
    assert!(failed);
    assert_eq!(kinds(&ops), vec![TraceOp::Unary(UnaryOp::Abs)]);
    // And a trace that panics ends: the next one starts.
    let r = std::panic::catch_unwind(|| trace(|| panic!("inside")));
    assert!(r.is_err() && !is_tracing());
    let (_, ops, _) = trace(|| x.sin());
    assert_eq!(kinds(&ops), vec![TraceOp::Unary(UnaryOp::Sin)]);
}

#[test]
fn first_id_splits_made_before_from_made_during() {
    let dev = wgrad_autograd::Device::cpu();
    let x = rand(&[3], 1, -1.0, 1.0, &dev);
    let w = rand(&[3], 2, -1.0, 1.0, &dev);
    let ((y, k), ops, first) = trace(|| (&x * &w, Tensor::ones(&[3], &dev)));
    assert!(x.id() < first && w.id() < first, "inputs made before: {} {} vs {first}", x.id(), w.id());
    assert!(y.id() >= first && k.id() >= first, "made during: {} {} vs {first}", y.id(), k.id());
    assert!(ops.iter().flat_map(|o| &o.outputs).all(|t| t.id() >= first));
    let later = Tensor::zeros(&[1], &dev);
    assert!(later.id() > y.id());
}

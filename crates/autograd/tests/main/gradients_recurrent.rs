//! Finite-difference checks of `Tensor::recurrent` for every cell, both
//! directions, with and without b_hh, through the outputs, h_n and c_n to
//! every input, on the CPU backend and the GPU; that a whole sequence's
//! forward and backward only record GPU work; shape errors.

use crate::common;
use common::*;
use wgrad_autograd::gradcheck::GradCheck;
use wgrad_autograd::{Device, RecurrentKind, Tensor};
use wgrad_gpu_core::testing::fresh_gpu_or_skip;

const KINDS: [RecurrentKind; 4] =
    [RecurrentKind::RnnTanh, RecurrentKind::RnnRelu, RecurrentKind::Lstm, RecurrentKind::Gru];

/// Input shapes for T = 3, B = 2, H = 3: xw, w_hh, h0, then b_hh and c0 when present.
fn shapes(kind: RecurrentKind, bias: bool) -> Vec<Vec<usize>> {
    let (t, b, h, gh) = (3, 2, 3, kind.gates() * 3);
    let mut s = vec![vec![t, b, gh], vec![gh, h], vec![b, h]];
    if bias {
        s.push(vec![gh]);
    }
    if kind == RecurrentKind::Lstm {
        s.push(vec![b, h]);
    }
    s
}

/// The sequence on inputs laid out as [`shapes`], every result flattened into one vector.
fn run(kind: RecurrentKind, bias: bool, reverse: bool, x: &[Tensor]) -> Tensor {
    let b_hh = bias.then(|| &x[3]);
    let c0 = (kind == RecurrentKind::Lstm).then(|| &x[x.len() - 1]);
    let r = x[0].recurrent(kind, &x[1], b_hh, &x[2], c0, reverse);
    let flat = |t: &Tensor| t.reshape(&[t.numel()]);
    let mut parts = vec![flat(&r.output), flat(&r.h_n)];
    parts.extend(r.c_n.as_ref().map(flat));
    Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)
}

#[test]
fn recurrent_gradients() {
    for kind in KINDS {
        for reverse in [false, true] {
            for bias in [false, true] {
                let s = shapes(kind, bias);
                let refs: Vec<&[usize]> = s.iter().map(|v| v.as_slice()).collect();
                let name = format!("recurrent {} reverse={reverse} b_hh={bias}", kind.name());
                // relu's kink: a step of 1e-2 across a pre-activation near 0
                // measures half a slope, so the relu cell takes a finer step.
                let eps = if kind == RecurrentKind::RnnRelu { 1e-3 } else { 1e-2 };
                let opts = GradCheck { eps, ..GradCheck::default() };
                gradcheck_in(&name, &refs, (-1.0, 1.0), opts, move |x| run(kind, bias, reverse, x));
            }
        }
    }
}

/// Only h_n (or c_n) used: the gradient enters through the final slot alone.
#[test]
fn final_state_gradients() {
    gradcheck("gru h_n only", &[&[4, 1, 6], &[6, 2], &[1, 2]], |x| {
        x[0].recurrent(RecurrentKind::Gru, &x[1], None, &x[2], None, false).h_n
    });
    gradcheck("lstm reverse c_n only", &[&[4, 2, 8], &[8, 2], &[2, 2], &[8], &[2, 2]], |x| {
        x[0].recurrent(RecurrentKind::Lstm, &x[1], Some(&x[3]), &x[2], Some(&x[4]), true).c_n.unwrap()
    });
    // T = 0: h_n is h0 and c_n is c0.
    gradcheck("lstm empty sequence", &[&[0, 2, 8], &[8, 2], &[2, 2], &[2, 2]], |x| {
        let r = x[0].recurrent(RecurrentKind::Lstm, &x[1], None, &x[2], Some(&x[3]), false);
        assert_eq!(r.output.shape(), [0, 2, 2]);
        &r.h_n * &r.c_n.unwrap()
    });
}

#[test]
fn a_sequence_records_without_reading_back() {
    let Some(dev) = fresh_gpu_or_skip("a_sequence_records_without_reading_back") else { return };
    let (t, b, h) = (64, 4, 16);
    for (i, kind) in KINDS.into_iter().enumerate() {
        let gh = kind.gates() * h;
        let seed = 10 * i as u64;
        let xw = rand(&[t, b, gh], seed, -1.0, 1.0, &dev).requires_grad_();
        let w = rand(&[gh, h], seed + 1, -0.25, 0.25, &dev).requires_grad_();
        let bias = rand(&[gh], seed + 2, -0.5, 0.5, &dev).requires_grad_();
        let h0 = rand(&[b, h], seed + 3, -1.0, 1.0, &dev).requires_grad_();
        let c0 = (kind == RecurrentKind::Lstm).then(|| rand(&[b, h], seed + 4, -1.0, 1.0, &dev).requires_grad_());
        let weights = rand(&[t, b, h], seed + 5, 0.5, 1.5, &dev);
        let before = dev.stats();
        let r = xw.recurrent(kind, &w, Some(&bias), &h0, c0.as_ref(), i % 2 == 1);
        let forward = dev.stats() - before;
        let mut loss = (&r.output * &weights).sum_all() + r.h_n.sum_all();
        if let Some(c) = &r.c_n {
            loss = loss + c.sum_all();
        }
        loss.backward();
        let d = dev.stats() - before;
        let what = kind.name();
        assert_eq!((d.submissions, d.readbacks), (0, 0), "{what}: forward and backward only record");
        // Per step one matmul and one cell kernel each way, plus a few launches per sequence.
        assert!(forward.dispatches <= 2 * t as u64 + 4, "{what}: forward recorded {} launches", forward.dispatches);
        assert!(d.dispatches <= 4 * t as u64 + 40, "{what}: forward + backward recorded {} launches", d.dispatches);
        for p in [&xw, &w, &bias, &h0].into_iter().chain(c0.as_ref()) {
            let g = p.grad().expect("every input gets a gradient").to_vec();
            assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|&v| v != 0.0), "{what}: gradient {g:?}");
        }
    }
}

#[test]
#[should_panic(expected = "recurrent: lstm needs c0, the initial cell state")]
fn lstm_without_c0_panics() {
    let dev = Device::cpu();
    let xw = Tensor::zeros(&[2, 1, 8], &dev);
    xw.recurrent(RecurrentKind::Lstm, &Tensor::zeros(&[8, 2], &dev), None, &Tensor::zeros(&[1, 2], &dev), None, false);
}

#[test]
#[should_panic(expected = "recurrent: c0 given for gru")]
fn c0_for_a_gru_panics() {
    let dev = Device::cpu();
    let s = Tensor::zeros(&[1, 2], &dev);
    Tensor::zeros(&[2, 1, 6], &dev).recurrent(
        RecurrentKind::Gru,
        &Tensor::zeros(&[6, 2], &dev),
        None,
        &s,
        Some(&s),
        false,
    );
}

#[test]
#[should_panic(expected = "recurrent: gru expects w_hh of shape [3·H, H]")]
fn mismatched_w_hh_panics() {
    let dev = Device::cpu();
    let xw = Tensor::zeros(&[2, 1, 6], &dev);
    xw.recurrent(RecurrentKind::Gru, &Tensor::zeros(&[8, 2], &dev), None, &Tensor::zeros(&[1, 2], &dev), None, false);
}

#[test]
#[should_panic(expected = "recurrent: rnn_tanh with hidden size 2 expects xw of shape [T, B, 2], got [2, 1, 3]")]
fn mismatched_xw_panics() {
    let dev = Device::cpu();
    let xw = Tensor::zeros(&[2, 1, 3], &dev);
    xw.recurrent(
        RecurrentKind::RnnTanh,
        &Tensor::zeros(&[2, 2], &dev),
        None,
        &Tensor::zeros(&[1, 2], &dev),
        None,
        false,
    );
}

#[test]
#[should_panic(expected = "recurrent: h0 has shape [2, 2], expected [B, H] = [1, 2]")]
fn mismatched_h0_panics() {
    let dev = Device::cpu();
    let xw = Tensor::zeros(&[2, 1, 2], &dev);
    xw.recurrent(
        RecurrentKind::RnnRelu,
        &Tensor::zeros(&[2, 2], &dev),
        None,
        &Tensor::zeros(&[2, 2], &dev),
        None,
        false,
    );
}

//! A Linear layer's forward and backward on a GPU whose binding limit is
//! lowered to 4 KiB (`Device::set_max_binding_bytes`): the input, output
//! and gradients are past it, so the products split (rows, split-K) and
//! the bias gradient's sum splits; every value matches the unsplit GPU and
//! the CPU backend. Likewise recurrent sequences (RNN, LSTM, GRU), which
//! run on chunks of batch rows.

use crate::common;
use common::rand;
use wgrad_autograd::{Device, RecurrentKind};
use wgrad_gpu_core::testing::{assert_close, fresh_gpu_or_skip, gpu_or_skip};

/// y = x Wᵀ + b for x [3, 20, 24], W [30, 24]: y, then the gradients of
/// x, W and b for an upstream gradient of y, and the launches taken.
fn linear_step(dev: &Device) -> (Vec<Vec<f32>>, u64) {
    let x = rand(&[3, 20, 24], 1, -1.0, 1.0, dev).requires_grad_();
    let w = rand(&[30, 24], 2, -1.0, 1.0, dev).requires_grad_();
    let b = rand(&[30], 3, -1.0, 1.0, dev).requires_grad_();
    let gy = rand(&[3, 20, 30], 4, -1.0, 1.0, dev);
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let y = x.linear(&w, Some(&b));
    y.backward_with(&gy);
    dev.flush().unwrap();
    let launches = dev.stats().dispatches - before;
    let values = [&y, &x.grad().unwrap(), &w.grad().unwrap(), &b.grad().unwrap()].map(|t| t.to_vec());
    (values.to_vec(), launches)
}

#[test]
fn linear_forward_and_backward_split_past_the_binding_limit() {
    let Some(small) = fresh_gpu_or_skip("linear_forward_and_backward_split_past_the_binding_limit") else { return };
    small.set_max_binding_bytes(Some(4096)).unwrap();
    let whole = gpu_or_skip("linear split").unwrap();
    let (split, launches) = linear_step(&small);
    let (unsplit, _) = linear_step(&whole);
    let (cpu, _) = linear_step(&Device::cpu());
    // Unsplit: the forward product, two gradient products, the bias sum.
    assert!(launches > 4, "{launches} launches: nothing split");
    for (i, what) in ["y", "dx", "dW", "db"].iter().enumerate() {
        assert_close(&format!("{what} vs unsplit"), &split[i], &unsplit[i], 1e-5, 1e-4);
        assert_close(&format!("{what} vs CPU"), &split[i], &cpu[i], 1e-5, 1e-4);
    }
}

/// A recurrent kind over 10 steps of 12 sequences of hidden size 8 (the
/// states alone are 4,224 bytes): outputs, final states and the gradients
/// of the input projection, the weights and the initial states; and the
/// launches.
fn recurrent_step(dev: &Device, kind: RecurrentKind) -> (Vec<Vec<f32>>, u64) {
    let (t, b, h, g) = (10, 12, 8, kind.gates());
    let lstm = kind == RecurrentKind::Lstm;
    let xw = rand(&[t, b, g * h], 1, -1.0, 1.0, dev).requires_grad_();
    let w = rand(&[g * h, h], 2, -0.5, 0.5, dev).requires_grad_();
    let bias = rand(&[g * h], 3, -0.5, 0.5, dev).requires_grad_();
    let h0 = rand(&[b, h], 4, -1.0, 1.0, dev).requires_grad_();
    let c0 = lstm.then(|| rand(&[b, h], 5, -1.0, 1.0, dev).requires_grad_());
    dev.flush().unwrap();
    let before = dev.stats().dispatches;
    let out = xw.recurrent(kind, &w, Some(&bias), &h0, c0.as_ref(), false);
    let mut loss = out.output.square().sum_all().add(&out.h_n.sum_all());
    if let Some(c) = &out.c_n {
        loss = loss.add(&c.square().sum_all());
    }
    loss.backward();
    dev.flush().unwrap();
    let launches = dev.stats().dispatches - before;
    let mut v = vec![out.output.to_vec(), out.h_n.to_vec()];
    v.extend(out.c_n.map(|c| c.to_vec()));
    v.extend([&xw, &w, &bias, &h0].iter().map(|p| p.grad().unwrap().to_vec()));
    v.extend(c0.map(|c| c.grad().unwrap().to_vec()));
    (v, launches)
}

#[test]
fn recurrent_sequences_past_the_binding_limit_run_on_chunks_of_batch_rows() {
    let Some(small) = fresh_gpu_or_skip("recurrent_sequences_past_the_binding_limit_run_on_chunks_of_batch_rows")
    else {
        return;
    };
    small.set_max_binding_bytes(Some(4096)).unwrap();
    let whole = fresh_gpu_or_skip("recurrent split").unwrap();
    for kind in [RecurrentKind::RnnTanh, RecurrentKind::Lstm, RecurrentKind::Gru] {
        let (split, launches) = recurrent_step(&small, kind);
        let (unsplit, one) = recurrent_step(&whole, kind);
        let (cpu, _) = recurrent_step(&Device::cpu(), kind);
        assert!(launches > one, "{kind:?}: {launches} launches, {one} unsplit: nothing split");
        for (i, ((a, b), c)) in split.iter().zip(&unsplit).zip(&cpu).enumerate() {
            assert_close(&format!("{kind:?} value {i} vs unsplit"), a, b, 1e-5, 1e-5);
            assert_close(&format!("{kind:?} value {i} vs CPU"), a, c, 1e-4, 1e-5);
        }
    }
}

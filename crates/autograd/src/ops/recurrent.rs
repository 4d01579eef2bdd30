//! Recurrent sequences (RNN, LSTM, GRU), the op under `nn`'s recurrent
//! layers and cells: gpu-core's fused per-step cell kernels run the whole
//! time loop, and the backward is gpu-core's fused reverse loop. Both only
//! record launches on a GPU.
//!
//! An op has one output, so the op's result is gpu-core's buffer of all
//! states (`[K·(T+1), B, H]`: every hidden state, then for the LSTM every
//! cell state); the outputs, h_n and c_n are views of it. Their gradients
//! meet in that one tensor, where the gradient of h_n lands on the same
//! element as the gradient of the last output processed, which is exactly
//! how they add up in the recurrence.

use wgrad_gpu_core::ops::recurrent::{recurrent_backward_at, recurrent_forward};
use wgrad_gpu_core::Layout;

pub use wgrad_gpu_core::ops::recurrent::RecurrentKind;

use crate::tensor::expect;
use crate::trace::TraceOp;
use crate::{DType, Tensor};

/// Output of [`Tensor::recurrent`].
pub struct RecurrentOutput {
    /// Hidden state after every time step, `[T, B, H]`, at its time index
    /// (also for a reverse sequence).
    pub output: Tensor,
    /// The final hidden state, `[B, H]`: after t = T−1, or after t = 0 for a
    /// reverse sequence. Equal to `h0` when T = 0.
    pub h_n: Tensor,
    /// The final cell state `[B, H]` (LSTM only).
    pub c_n: Option<Tensor>,
}

impl Tensor {
    /// Runs a recurrent cell over a whole sequence, one direction, with
    /// PyTorch's semantics (`torch.nn.RNN` / `LSTM` / `GRU`).
    ///
    /// `self` is `xw = x W_ihᵀ + b_ih`, `[T, B, G·H]` for G =
    /// [`RecurrentKind::gates`] (gate blocks in PyTorch's order: LSTM i, f, g,
    /// o; GRU r, z, n); `w_hh` is `[G·H, H]`, `b_hh` `[G·H]`, `h0` and `c0`
    /// `[B, H]`, with `c0` given exactly for the LSTM. `reverse` runs t = T−1
    /// down to 0 (the backward direction of a bidirectional layer; outputs
    /// stay at their time index). T = 0 gives an empty output with h_n = h0.
    ///
    /// Gradients flow to `self`, `w_hh`, `b_hh`, `h0` and `c0`.
    ///
    /// # Panics
    /// On shapes that do not fit together, a `c0` missing for the LSTM or
    /// given for another cell, H = 0, non-f32 tensors or mixed devices.
    pub fn recurrent(
        &self,
        kind: RecurrentKind,
        w_hh: &Tensor,
        b_hh: Option<&Tensor>,
        h0: &Tensor,
        c0: Option<&Tensor>,
        reverse: bool,
    ) -> RecurrentOutput {
        let scope = crate::trace::scope();
        // The op itself, as a closure: its early return (a long sequence run
        // in chunks) comes back here, to the trace record below.
        let out = (|| -> RecurrentOutput {
            const OP: &str = "recurrent";
            let name = kind.name();
            let all: Vec<&Tensor> = [self, w_hh, h0].into_iter().chain(b_hh).chain(c0).collect();
            for t in &all {
                t.expect_dtype(OP, DType::F32);
                self.expect_same_device(OP, t);
            }
            let (xs, ws) = (self.shape(), w_hh.shape());
            let g = kind.gates();
            assert!(
                ws.len() == 2 && ws[1] > 0 && ws[0] == g * ws[1],
                "{OP}: {name} expects w_hh of shape [{g}·H, H] with H > 0, got {ws:?}"
            );
            let h = ws[1];
            assert!(
                xs.len() == 3 && xs[2] == g * h,
                "{OP}: {name} with hidden size {h} expects xw of shape [T, B, {}], got {xs:?}",
                g * h
            );
            let (t, b) = (xs[0], xs[1]);
            if let Some(bias) = b_hh {
                assert_eq!(bias.shape(), [g * h], "{OP}: b_hh has shape {:?}, expected [{}]", bias.shape(), g * h);
            }
            assert_eq!(h0.shape(), [b, h], "{OP}: h0 has shape {:?}, expected [B, H] = [{b}, {h}]", h0.shape());
            let lstm = kind == RecurrentKind::Lstm;
            match c0 {
                Some(c) => {
                    assert!(lstm, "{OP}: c0 given for {name}, which has no cell state");
                    assert_eq!(c.shape(), [b, h], "{OP}: c0 has shape {:?}, expected [B, H] = [{b}, {h}]", c.shape());
                }
                None => assert!(!lstm, "{OP}: lstm needs c0, the initial cell state"),
            }

            if let Some(per) = batch_chunk(&self.device(), (t, b, h), g, lstm) {
                return self.recurrent_in_chunks(kind, (w_hh, b_hh), (h0, c0), reverse, per);
            }
            let w_buf = w_hh.dense_buffer();
            let (bias_buf, c0_buf) = (b_hh.map(Tensor::dense_buffer), c0.map(Tensor::dense_buffer));
            let saved = expect(
                OP,
                recurrent_forward(
                    kind,
                    &self.dense_buffer(),
                    &w_buf,
                    bias_buf.as_ref(),
                    &h0.dense_buffer(),
                    c0_buf.as_ref(),
                    t,
                    b,
                    h,
                    reverse,
                ),
            );
            let shape = saved.states_shape();
            let (start, last) = (saved.output_start(), saved.final_slot());
            let packed = Layout::contiguous(&shape);
            let (has_bias, states) = (b_hh.is_some(), saved.states().clone());
            let all_states = Tensor::from_op(OP, states, packed.clone(), &all, move |grad, _, _| {
                let gb = grad.dense_buffer();
                // Each read in place: dy, the output slots, and the final
                // states' slots. The gradient of h_n is already in dy, except
                // when T = 0 and h_n is h0's slot alone.
                let slot = |s: usize| (&gb, s * b * h);
                let dy = (&gb, saved.output_layout().offset);
                let dh_n = (t == 0).then(|| slot(last));
                let dc_n = lstm.then(|| slot(t + 1 + last));
                let grads = expect(OP, recurrent_backward_at(&saved, &w_buf, dy, dh_n, dc_n));
                let dense = |buf, shape: &[usize]| Some(Tensor::from_parts(buf, Layout::contiguous(shape), DType::F32));
                let mut out =
                    vec![dense(grads.dxw, &[t, b, g * h]), dense(grads.dw_hh, &[g * h, h]), dense(grads.dh0, &[b, h])];
                if has_bias {
                    out.push(dense(grads.db_hh.expect("b_hh has a gradient"), &[g * h]));
                }
                if let Some(dc0) = grads.dc0 {
                    out.push(dense(dc0, &[b, h]));
                }
                out
            });
            let slot = |s: usize| all_states.narrow(0, s, 1).reshape(&[b, h]);
            RecurrentOutput {
                output: all_states.narrow(0, start, t),
                h_n: slot(last),
                c_n: lstm.then(|| slot(t + 1 + last)),
            }
        })();
        let (op, inputs) = (|| TraceOp::Recurrent { kind, reverse }, [Some(self), Some(w_hh), b_hh, Some(h0), c0]);
        match &out.c_n {
            Some(c_n) => scope.record(op, &inputs, &[&out.output, &out.h_n, c_n]),
            None => scope.record(op, &inputs, &[&out.output, &out.h_n]),
        }
        out
    }

    /// [`recurrent`](Self::recurrent) on chunks of `per` batch rows, whose
    /// sequences are independent: each chunk's input and initial states
    /// are narrowed views, its outputs are concatenated, and autograd adds
    /// the chunks' gradients of the shared weights.
    fn recurrent_in_chunks(
        &self,
        kind: RecurrentKind,
        (w_hh, b_hh): (&Tensor, Option<&Tensor>),
        (h0, c0): (&Tensor, Option<&Tensor>),
        reverse: bool,
        per: usize,
    ) -> RecurrentOutput {
        let b = self.shape()[1];
        let parts: Vec<RecurrentOutput> = (0..b)
            .step_by(per)
            .map(|b0| {
                let n = per.min(b - b0);
                let (h, c) = (h0.narrow(0, b0, n), c0.map(|c| c.narrow(0, b0, n)));
                self.narrow(1, b0, n).recurrent(kind, w_hh, b_hh, &h, c.as_ref(), reverse)
            })
            .collect();
        let cat =
            |f: &dyn Fn(&RecurrentOutput) -> &Tensor, dim| Tensor::cat(&parts.iter().map(f).collect::<Vec<_>>(), dim);
        RecurrentOutput {
            output: cat(&|p| &p.output, 1),
            h_n: cat(&|p| &p.h_n, 0),
            c_n: parts[0].c_n.is_some().then(|| cat(&|p| p.c_n.as_ref().expect("an LSTM's c_n"), 0)),
        }
    }
}

/// Batch rows per chunk when a recurrent sequence's buffers (the input
/// projection `[T, B, G·H]`, the states `[K, T+1, B, H]`, the saved gates
/// `[T, B, 4H]`) are past the device's binding limit, which gpu-core's
/// per-step kernels bind whole; `None` when they fit or one row does not.
fn batch_chunk(dev: &crate::Device, (t, b, h): (usize, usize, usize), g: usize, lstm: bool) -> Option<usize> {
    let limit = dev.max_binding_bytes();
    let k = if lstm { 2 } else { 1 };
    let row = [t * g * h, k * (t + 1) * h, t * 4 * h].into_iter().max().unwrap_or(1).max(1) as u64 * 4;
    let per = (limit.saturating_sub(16) / row) as usize;
    (b as u64 * row > limit && per > 0 && per < b).then_some(per)
}

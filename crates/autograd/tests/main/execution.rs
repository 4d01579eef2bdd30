//! The execution model, measured through gpu-core's counters: a training step
//! is one submission and one readback, and memory stays flat over thousands
//! of steps.

use crate::common;
use common::rand;
use wgrad_autograd::{no_grad, Device, Tensor};
use wgrad_gpu_core::testing::fresh_gpu_or_skip;

/// A 3-layer MLP regression problem with plain SGD written with tensor ops.
struct Mlp {
    params: Vec<Tensor>,
    x: Tensor,
    y: Tensor,
}

impl Mlp {
    fn new(dev: &Device) -> Self {
        let sizes = [(8, 16), (16, 16), (16, 1)];
        let mut params = Vec::new();
        for (i, &(fan_in, fan_out)) in sizes.iter().enumerate() {
            let bound = 1.0 / (fan_in as f32).sqrt();
            params.push(rand(&[fan_in, fan_out], 10 + i as u64, -bound, bound, dev).requires_grad_());
            params.push(Tensor::zeros(&[fan_out], dev).requires_grad_());
        }
        let x = rand(&[32, 8], 1, -1.0, 1.0, dev);
        let y = x.sum(&[1], true).sin();
        Mlp { params, x, y }
    }

    /// Forward, MSE, backward, SGD update; returns the loss read back.
    fn step(&self, lr: f32) -> f32 {
        self.step_recorded(lr).item()
    }

    /// [`step`](Self::step) without reading anything back: the loss tensor.
    fn step_recorded(&self, lr: f32) -> Tensor {
        let p = &self.params;
        let h1 = (self.x.matmul(&p[0]) + &p[1]).relu();
        let h2 = (h1.matmul(&p[2]) + &p[3]).tanh();
        let out = h2.matmul(&p[4]) + &p[5];
        let loss = (&out - &self.y).square().mean_all();
        loss.backward();
        no_grad(|| {
            for w in p {
                let g = w.grad().expect("every parameter gets a gradient");
                w.assign(&(w - &(g * lr)));
                w.zero_grad();
            }
        });
        loss
    }
}

#[test]
fn a_training_step_is_one_submission_and_one_readback() {
    let Some(dev) = fresh_gpu_or_skip("a_training_step_is_one_submission_and_one_readback") else { return };
    let mlp = Mlp::new(&dev);
    mlp.step(0.1); // warm-up: uploads of x and the parameters go with the first submit
    let before = dev.stats();
    let loss = mlp.step(0.1);
    let d = dev.stats() - before;
    assert!(loss.is_finite());
    assert_eq!(d.submissions, 1, "forward + backward + update in one submission");
    assert_eq!(d.readbacks, 1, "only the loss is read back");
    assert!(d.dispatches > 20, "the step recorded its kernels ({} dispatches)", d.dispatches);
}

/// A loss and the weights copied to the host asynchronously while the next
/// step is recorded (and updates the weights in place) are the values after
/// the first step, bit for bit; the next step's loss awaited as a future is
/// its `item()`. On a GPU the copy is one readback, and recording the next
/// step submits nothing.
#[test]
fn values_read_asynchronously_are_those_of_when_they_were_asked_for() {
    let mut devices = vec![Device::cpu()];
    devices.extend(fresh_gpu_or_skip("values_read_asynchronously_are_those_of_when_they_were_asked_for"));
    for dev in devices {
        let (sync, overlapped) = (Mlp::new(&dev), Mlp::new(&dev));
        let want_loss = sync.step_recorded(0.1).to_vec();
        let want_w = sync.params[0].to_vec();
        let want_next = sync.step_recorded(0.1).item();

        let loss = overlapped.step_recorded(0.1).to_vec_async();
        let w = overlapped.params[0].to_vec_async();
        let before = dev.stats();
        let next = overlapped.step_recorded(0.1);
        assert_eq!((dev.stats() - before).submissions, 0, "recording the next step submits nothing");
        assert_eq!(loss.wait(), want_loss, "on {}", dev.name());
        assert_eq!(w.wait(), want_w, "in-place updates recorded later do not change the copy (on {})", dev.name());
        let pending = next.to_vec_async();
        let _ = pending.is_ready(); // never blocks
        let got = pollster::block_on(pending).unwrap();
        assert_eq!(got, [want_next], "on {}", dev.name());
    }
}

#[test]
fn training_reduces_the_loss_on_both_backends() {
    for dev in common::backends("training_reduces_the_loss_on_both_backends") {
        let mlp = Mlp::new(&dev);
        let first = mlp.step(0.1);
        let mut last = first;
        for _ in 0..60 {
            last = mlp.step(0.1);
        }
        assert!(last < 0.5 * first, "{}: loss {first} -> {last}", dev.name());
    }
}

#[test]
fn memory_stays_flat_over_two_thousand_steps() {
    let Some(dev) = fresh_gpu_or_skip("memory_stays_flat_over_two_thousand_steps") else { return };
    let mlp = Mlp::new(&dev);
    let mut at_100 = None;
    for step in 1..=2000 {
        mlp.step(0.05);
        if step == 100 {
            at_100 = Some(dev.stats());
        }
    }
    let (a, b) = (at_100.unwrap(), dev.stats());
    assert_eq!(b.bytes_live, a.bytes_live, "bytes_live after step 2000 equals step 100");
    assert_eq!(b.buffers_created, a.buffers_created, "no buffer allocated after warm-up");
    assert_eq!(b.submissions - a.submissions, 1900, "one submission per step");
}

#[test]
fn ops_record_without_submitting_until_data_is_read() {
    let Some(dev) = fresh_gpu_or_skip("ops_record_without_submitting_until_data_is_read") else { return };
    // Counts the launches as recorded one by one; with fusion on, the four
    // elementwise kernels of each iteration would be merged when settled
    // (gpu-core's tests/main/fusion.rs counts those).
    dev.set_fusion(false).unwrap();
    let x = Tensor::arange(0.0, 64.0, 1.0, &dev);
    let before = dev.stats();
    let mut y = x.clone();
    for _ in 0..100 {
        y = (&y * 0.5).exp().log() * 2.0;
    }
    let mid = dev.stats() - before;
    assert_eq!((mid.submissions, mid.readbacks), (0, 0));
    assert_eq!(mid.dispatches, 400, "four kernels per iteration");
    let v = y.to_vec();
    assert!((v[63] - 63.0).abs() < 1e-2, "{}", v[63]);
    let after = dev.stats() - before;
    assert_eq!((after.submissions, after.readbacks), (1, 1));
}

#[test]
fn a_loop_that_never_reads_flushes_itself() {
    let Some(dev) = fresh_gpu_or_skip("a_loop_that_never_reads_flushes_itself") else { return };
    let x = Tensor::zeros(&[16], &dev);
    let before = dev.stats();
    let mut y = x;
    for _ in 0..10_000 {
        y = &y + 1.0;
    }
    let d = dev.stats() - before;
    assert!(d.submissions >= 2, "the pending list is bounded ({} submissions)", d.submissions);
    assert_eq!(d.readbacks, 0);
    assert_eq!(y.to_vec()[0], 10_000.0);
}

#[test]
fn backward_frees_saved_activations() {
    let Some(dev) = fresh_gpu_or_skip("backward_frees_saved_activations") else { return };
    let w = rand(&[256, 256], 3, -0.1, 0.1, &dev).requires_grad_();
    let x = rand(&[64, 256], 4, -1.0, 1.0, &dev);
    let live_before = dev.stats().bytes_live;
    let mut h = x.clone();
    for _ in 0..8 {
        h = h.matmul(&w).tanh();
    }
    let loss = h.sum_all();
    let live_forward = dev.stats().bytes_live;
    loss.backward();
    drop(h);
    let live_after = dev.stats().bytes_live;
    // What remains: the loss and w's gradient (plus its pooled size class).
    assert!(live_forward > live_before + 8 * 64 * 256 * 4, "the forward saved its activations");
    assert!(
        live_after < live_before + 2 * 256 * 256 * 4,
        "activations released after backward: before {live_before}, forward {live_forward}, after {live_after}"
    );
}

#[test]
fn backward_skips_the_gradient_of_operands_that_need_none() {
    // On the CPU backend, where every kernel launch is counted as it runs.
    let dev = Device::cpu();
    let w = Tensor::randn(&[8, 4], 1, &dev).requires_grad_();
    let launches = |x: &Tensor| {
        let loss = x.matmul(&w).sum_all();
        let before = dev.stats();
        loss.backward();
        w.zero_grad();
        (dev.stats() - before).dispatches
    };
    let data = Tensor::randn(&[16, 8], 2, &dev);
    let param = data.detach().requires_grad_();
    let (for_data, for_param) = (launches(&data), launches(&param));
    assert!(
        for_data < for_param,
        "x @ w with constant x must not compute dx: {for_data} launches vs {for_param} when x needs it"
    );
    assert!(param.grad().is_some() && data.grad().is_none());
}

#[test]
fn a_means_gradient_is_scaled_before_it_is_broadcast() {
    // On a CPU device of its own, whose counters see every buffer: the
    // backward of mean_all scales the one-element gradient, then broadcasts
    // it, so the only full-size buffer it makes is the input's gradient
    // (scaling the broadcast made a second one: the broadcast copied out).
    let dev = Device::cpu();
    let x = Tensor::randn(&[64, 48], 3, &dev).requires_grad_();
    let loss = x.mean_all();
    let _ = loss.item();
    let full = 64 * 48 * 4;
    let before = dev.stats();
    loss.backward();
    let grad = x.grad().expect("x needs a gradient");
    let after = dev.stats();
    assert!(after.bytes_peak - before.bytes_peak < full + full / 2, "{} bytes", after.bytes_peak - before.bytes_peak);
    assert!(grad.to_vec().iter().all(|&v| v == 1.0 / (64.0 * 48.0)));
}

#[test]
fn a_linear_weights_gradient_is_computed_dense() {
    // On the CPU backend, where every kernel launch is counted as it runs:
    // `x @ Wᵀ`'s weight gradient comes out of its product dense, so
    // accumulating it into W.grad copies nothing (it was computed as
    // `xᵀg`, whose transpose the accumulation copied: one launch more).
    let dev = Device::cpu();
    let w = Tensor::randn(&[6, 8], 1, &dev).requires_grad_();
    let x = Tensor::randn(&[16, 8], 2, &dev);
    let launches = |y: Tensor| {
        let loss = y.sum_all();
        let before = dev.stats();
        loss.backward();
        w.zero_grad();
        (dev.stats() - before).dispatches
    };
    // The same product with Wᵀ made dense in the forward: its gradient
    // flows through the copy's backward (a view), not through a transpose.
    let through_transpose = launches(x.matmul(&w.t()));
    let through_copy = launches(x.matmul(&w.t().contiguous()));
    assert!(
        through_transpose < through_copy,
        "dW through Wᵀ: {through_transpose} launches, through a dense copy of Wᵀ: {through_copy}"
    );
    let loss = x.matmul(&w.t()).square().sum_all();
    loss.backward();
    let want = x.t().matmul(&(x.matmul(&w.t()) * 2.0)).t().to_vec();
    let got = w.grad().expect("W needs a gradient").to_vec();
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-4 * b.abs().max(1.0)), "{got:?} vs {want:?}");
}

// Own binary: it reads the whole process's resident memory, which tests running beside it would move.
//! Launching the same kernels again and again, each launch on other
//! buffers, holds no more of the process than the first launches did: the
//! driver builds nothing per launch. On a CPU adapter the driver's compiled
//! shaders are host memory that wgrad's counters do not see. Mesa 22's
//! lavapipe compiled a new variant of the LSTM's per-step product (the cell
//! in the product's store) at every launch and kept it, about 400 KB and
//! 5 ms each, because the kernel's batch-offset loop ran to a bound read
//! from the parameters, which that driver inlines into a fresh variant
//! whenever the bindings change (`shaders/matmul.wgsl`, `batch_offsets`).
//! This test failed on that kernel (222 MB over these launches).
#![cfg(target_os = "linux")]

use wgrad_gpu_core::ops::recurrent::{recurrent_backward, recurrent_forward, RecurrentKind};
use wgrad_gpu_core::testing::{self, fresh_gpu_or_skip};
use wgrad_gpu_core::{Buffer, Device, HostRng};

/// The process's resident memory in bytes.
fn resident_bytes() -> u64 {
    testing::resident_bytes().expect("/proc/self/statm's resident field")
}

/// One LSTM sequence forward and backward (T launches each way, on the
/// GPU each step's cell in its product's store), read back so that the
/// driver has run every launch.
fn lstm_round(dev: &Device, rng: &mut HostRng) -> f32 {
    let (t, b, h) = (32, 2, 8);
    let mut up = |n: usize| Buffer::from_f32(dev, &rng.vec(n, -0.5, 0.5)).unwrap();
    let (xw, w_hh, h0, c0, dy) = (up(t * b * 4 * h), up(4 * h * h), up(b * h), up(b * h), up(t * b * h));
    let saved = recurrent_forward(RecurrentKind::Lstm, &xw, &w_hh, None, &h0, Some(&c0), t, b, h, false).unwrap();
    let grads = recurrent_backward(&saved, &w_hh, &dy, None, None).unwrap();
    grads.dxw.to_f32().unwrap().iter().sum()
}

#[test]
fn repeated_launches_do_not_grow_the_process() {
    let Some(dev) = fresh_gpu_or_skip("repeated_launches_do_not_grow_the_process") else { return };
    let mut rng = HostRng::new(7);
    // Warm-up: pipelines compiled, the pool's buffers made.
    for _ in 0..3 {
        assert!(lstm_round(&dev, &mut rng).is_finite());
    }
    let before = resident_bytes();
    let rounds = 10;
    for _ in 0..rounds {
        assert!(lstm_round(&dev, &mut rng).is_finite());
    }
    let grown = resident_bytes().saturating_sub(before);
    // 640 launches: 16 MB is 25 KB a launch, well below a compiled variant
    // and well above the allocator's noise.
    assert!(
        grown < 16 << 20,
        "{rounds} LSTM rounds ({} launches) on {} grew the process by {:.1} MB",
        rounds * 64,
        dev.name(),
        grown as f64 / 1e6
    );
}

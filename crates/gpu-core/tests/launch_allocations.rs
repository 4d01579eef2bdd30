// Own binary: it replaces the global allocator to count this thread's heap allocations.
//! Recording a launch allocates nothing on the heap once the pipelines, bind
//! groups and pool are warm: the shapes and strides an op computes live
//! inline (`Dims`), its parameter block and constants too, and the batch
//! and the fuser reuse their vectors. What an op still allocates is its
//! result's handle (one per output buffer), and a product the fuser defers
//! its boxed store (`gpu/tails.rs`, one per product). A counter, so the same on every
//! host; a new `Vec` on the recording path fails it (each of those this
//! test's launches had made it fail, with 2-6 allocations per launch; the
//! batch-norm launches' lists of bindings and constants, 3 per launch).

use wgrad_gpu_core::ops::batch_norm::{batch_norm_stats, ChannelDims};
use wgrad_gpu_core::ops::binary::{binary, BinaryOp};
use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::ops::unary::{unary, UnaryOp};
use wgrad_gpu_core::ops::{fill::fill, matmul::matmul};
use wgrad_gpu_core::testing::{thread_allocations, CountingAllocator};
use wgrad_gpu_core::{Buffer, Device, Layout};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// One round of launches, a layer's worth: their results are kept (as a
/// forward pass keeps its activations) in `keep` until the step is over.
fn round(dev: &Device, (a, b, x): (&Buffer, &Buffer, &Buffer), keep: &mut Vec<Buffer>) {
    let (la, lb) = (Layout::contiguous(&[24, 40]), Layout::contiguous(&[40, 16]));
    let sum = binary(BinaryOp::Add, a, &la, x, &la).unwrap().0;
    let relu = unary(UnaryOp::Relu, &sum, 24 * 40).unwrap();
    let product = matmul(&relu, &la, b, &lb).unwrap().0;
    let filled = fill(dev, 384, 0.5).unwrap();
    // Batch-norm statistics: two launches (partial sums, then the final
    // ones), one result and one scratch buffer.
    let d = ChannelDims { outer: 24, channels: 8, inner: 5 };
    let stats = batch_norm_stats(&relu, d, 1e-5, None, Operands::F32).unwrap();
    keep.extend([sum, relu, product, filled, stats]);
}

/// A step of `rounds` rounds (6 launches and 6 buffers each), recorded and
/// then submitted: the heap allocations of the recording (the submit is
/// once per step, not per launch, and left out).
fn step(dev: &Device, rounds: usize, operands: (&Buffer, &Buffer, &Buffer)) -> u64 {
    let mut keep = Vec::with_capacity(5 * rounds);
    let n = thread_allocations(|| {
        for _ in 0..rounds {
            round(dev, operands, &mut keep);
        }
    });
    dev.flush().unwrap();
    drop(keep);
    dev.synchronize().unwrap();
    n
}

#[test]
fn a_warm_launch_allocates_only_its_result() {
    let Some(dev) = wgrad_gpu_core::testing::fresh_gpu_or_skip("launch allocations") else {
        return;
    };
    // As on a hardware GPU (operand textures make a bind group per launch).
    dev.set_texture_operands(false);
    let a = Buffer::from_f32(&dev, &vec![0.25; 24 * 40]).unwrap();
    let x = Buffer::from_f32(&dev, &vec![-0.5; 24 * 40]).unwrap();
    let b = Buffer::from_f32(&dev, &vec![1.0; 40 * 16]).unwrap();
    let operands = (&a, &b, &x);
    // Replay on, the default: with `WGRAD_REPLAY=0` the fuser plans every
    // run afresh and writes its kernel's source each time (about 15
    // allocations per launch here), a switch for debugging, not a hot path.
    dev.set_replay(true).unwrap();
    {
        // Warm-up: pipelines compiled, bind groups cached, the pool's order settled.
        for rounds in [20, 40, 20, 40] {
            step(&dev, rounds, operands);
        }
        // The launches a longer step adds cost their results' handles and
        // their products' stores; the vectors a batch fills (wgpu's pass,
        // the replay log, the pool's) grow by doubling, a few reallocations
        // per step whatever its length.
        let (short, long) = (step(&dev, 20, operands), step(&dev, 40, operands));
        let added = long.saturating_sub(short);
        assert!(
            added <= 120 + 20 + 8,
            "120 more warm launches (120 more buffers, 20 more products) made {added} more heap allocations \
             ({short} for 120 launches, {long} for 240)"
        );
    }
}

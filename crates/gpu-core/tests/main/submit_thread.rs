//! Batches finished and submitted on the device's submit thread
//! (`gpu/submitter.rs`): each batch keeps its own parameter blocks though
//! the next batch reuses their arena chunk, readbacks and `synchronize` see
//! every batch handed over before them, and the thread's time is counted;
//! the same on the calling thread (`Device::set_submit_thread(false)`).

use wgrad_gpu_core::ops::fill::fill;
use wgrad_gpu_core::testing::fresh_gpu_or_skip;
use wgrad_gpu_core::{Buffer, Device};

/// Batch k fills a buffer with k (one launch, flushed without waiting), so
/// batch k + 1 writes the same arena slot while batch k may still be on its
/// way to the queue; every buffer must hold its own batch's value.
fn batches_keep_their_parameters(dev: &Device, what: &str) {
    let filled: Vec<Buffer> = (0..40)
        .map(|k| {
            let b = fill(dev, 4099, k as f32).unwrap();
            dev.flush().unwrap();
            b
        })
        .collect();
    // Half read right away (each readback drains the thread), half after a
    // synchronize.
    for (k, b) in filled.iter().enumerate().step_by(2) {
        let v = b.to_f32().unwrap();
        assert!(v.iter().all(|&x| x == k as f32), "{what}: batch {k} holds {:?}", &v[..4]);
    }
    dev.synchronize().unwrap();
    for (k, b) in filled.iter().enumerate().skip(1).step_by(2) {
        let v = b.to_f32().unwrap();
        assert!(v.iter().all(|&x| x == k as f32), "{what}: batch {k} holds {:?}", &v[..4]);
    }
}

#[test]
fn batches_keep_their_parameters_on_the_thread_and_inline() {
    let Some(dev) = fresh_gpu_or_skip("batches_keep_their_parameters") else { return };
    if !wgrad_gpu_core::env::switch("WGRAD_SUBMIT_THREAD", true) {
        assert!(!dev.submit_thread());
        assert!(dev.set_submit_thread(true).is_err(), "no thread to turn on");
    } else {
        assert!(dev.submit_thread(), "the thread is on by default");
        let before = dev.stats();
        batches_keep_their_parameters(&dev, "submit thread");
        let done = dev.stats() - before;
        assert!(done.host_encode_ns > 0, "the thread's time is counted: {done:?}");
        dev.set_submit_thread(false).unwrap();
        assert!(!dev.submit_thread());
    }
    let before = dev.stats();
    batches_keep_their_parameters(&dev, "inline");
    let done = dev.stats() - before;
    assert_eq!(done.host_encode_ns, 0, "inline: no time on the thread");
    assert!(done.submissions >= 40);
}

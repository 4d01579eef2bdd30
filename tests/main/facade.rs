//! The facade and device selection as a user meets them.

use wgrad::prelude::*;

#[test]
fn cpu_device_runs_kernels_through_the_prelude() {
    let d = Device::from_spec(&DeviceSpec::Cpu).unwrap();
    assert!(!d.is_gpu());
    let x = Buffer::from_f32(&d, &[1.0, -2.0]).unwrap();
    let y = ops::unary::unary(ops::unary::UnaryOp::Abs, &x, 2).unwrap();
    assert_eq!(y.to_f32().unwrap(), vec![1.0, 2.0]);
}

#[test]
fn a_missing_named_adapter_is_an_error_not_a_fallback() {
    let err = Device::from_spec(&DeviceSpec::Named("no-such-adapter-xyz".into())).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no-such-adapter-xyz"), "{msg}");
}

#[test]
fn gpu_recording_submits_only_on_readback() {
    let Some(d) = wgrad::gpu_core::testing::fresh_gpu_or_skip("gpu_recording_submits_only_on_readback") else {
        return;
    };
    // Counts launches as recorded: the fuser would hold these back until the
    // readback (gpu-core's tests/main/fusion.rs counts fused launches).
    d.set_fusion(false).unwrap();
    let l = Layout::contiguous(&[64]);
    let before = d.stats();
    let mut x = ops::fill::fill(&d, 64, 1.0).unwrap();
    for _ in 0..10 {
        x = ops::binary::binary(ops::binary::BinaryOp::Add, &x, &l, &x, &l).unwrap().0;
    }
    let mid = d.stats() - before;
    assert_eq!((mid.submissions, mid.dispatches, mid.readbacks), (0, 11, 0), "ops only record");
    assert_eq!(x.to_f32().unwrap()[63], 1024.0);
    let after = d.stats() - before;
    assert_eq!((after.submissions, after.readbacks), (1, 1), "one submit + one readback");
}

#[test]
fn gpu_buffers_are_pooled_and_memory_stays_flat() {
    let Some(d) = wgrad::gpu_core::testing::fresh_gpu_or_skip("gpu_buffers_are_pooled_and_memory_stays_flat") else {
        return;
    };
    let l = Layout::contiguous(&[1000]);
    let step = |d: &Device| {
        let a = ops::fill::fill(d, 1000, 0.5).unwrap();
        let (b, _) = ops::binary::binary(ops::binary::BinaryOp::Mul, &a, &l, &a, &l).unwrap();
        b.to_f32().unwrap()[0]
    };
    for _ in 0..5 {
        step(&d);
    }
    let warm = d.stats();
    for _ in 0..50 {
        assert_eq!(step(&d), 0.25);
    }
    let end = d.stats();
    assert_eq!(end.buffers_created, warm.buffers_created, "no new buffers after warm-up");
    assert_eq!(end.bytes_live, warm.bytes_live, "live bytes flat");
}

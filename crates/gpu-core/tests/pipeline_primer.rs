// Own binary: it sets WGRAD_PRIME for the process while devices open (other tests' devices would read it).
//! Primed pipelines (`gpu/primer.rs`): on a CPU adapter every new pipeline
//! gets a dispatch of zero workgroups at once, so llvmpipe compiles it while
//! the host records on; the dispatch must change nothing and fail no
//! validation. One test in its own binary: it sets `WGRAD_PRIME` for the
//! process.

use wgrad_gpu_core::ops::{binary, matmul, norm, softmax};
use wgrad_gpu_core::testing::fresh_gpu_or_skip;
use wgrad_gpu_core::{Buffer, Device, Layout};

/// Kernels of every binding kind: a product read through textures (on CPU
/// adapters), a row kernel with three outputs, a row kernel and an
/// elementwise one reading buffers.
fn work(dev: &Device) -> Vec<u32> {
    let data = |n: usize| (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0).collect::<Vec<f32>>();
    let a = Buffer::from_f32(dev, &data(9 * 13)).unwrap();
    let b = Buffer::from_f32(dev, &data(13 * 11)).unwrap();
    let (ab, _) = matmul::matmul(&a, &Layout::contiguous(&[9, 13]), &b, &Layout::contiguous(&[13, 11])).unwrap();
    let (y, mean, rstd) = norm::normalize_rows(&ab, 9, 11, 1e-5).unwrap();
    let probs = softmax::softmax_rows(&y, 9, 11, true).unwrap();
    let l = Layout::contiguous(&[9, 11]);
    let (sum, _) = binary::binary(binary::BinaryOp::Add, &probs, &l, &ab, &l).unwrap();
    let mut words: Vec<u32> = Vec::new();
    for t in [&ab, &y, &mean, &rstd, &probs, &sum] {
        words.extend(t.to_f32().unwrap().iter().map(|v| v.to_bits()));
    }
    words
}

#[test]
fn new_pipelines_are_primed_on_cpu_adapters_and_change_nothing() {
    std::env::set_var("WGRAD_PRIME", "0");
    let Some(off) = fresh_gpu_or_skip("pipeline primer") else { return };
    let want = work(&off);
    assert!(off.pipelines_compiled() >= 2);
    assert_eq!(off.pipelines_primed(), 0, "WGRAD_PRIME=0 turns priming off");

    std::env::remove_var("WGRAD_PRIME");
    let on = fresh_gpu_or_skip("pipeline primer").unwrap();
    let got = work(&on);
    assert_eq!(got, want, "a primed pipeline computes the same bits");
    let cpu_adapter = on.info().device_type == "Cpu";
    let expected = if cpu_adapter { on.pipelines_compiled() } else { 0 };
    assert_eq!(on.pipelines_primed(), expected, "{}: every new pipeline primed on CPU adapters only", on.name());
    // A second run compiles nothing new, so primes nothing.
    assert_eq!(work(&on), want);
    assert_eq!(on.pipelines_primed(), expected);
}

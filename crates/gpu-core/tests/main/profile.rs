//! The step profiler: launch counts per family, allocated bytes, FLOPs,
//! timestamps, labels, the Chrome-trace JSON, and that profiling changes
//! neither results nor counters.

use wgrad_gpu_core::ops::binary::{binary, BinaryOp};
use wgrad_gpu_core::ops::matmul::matmul;
use wgrad_gpu_core::ops::unary::{unary, UnaryOp};
use wgrad_gpu_core::profile::{label_pending, scope, Profile};
use wgrad_gpu_core::testing::{fresh_gpu_or_skip, Rng};
use wgrad_gpu_core::{Buffer, Device, Layout};

const N: usize = 1000;
const M: usize = 7;
const K: usize = 33;
const P: usize = 5;

/// exp, add, matmul on `dev`; returns the three results.
fn work(dev: &Device, x: &[f32], a: &[f32], b: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let xb = Buffer::from_f32(dev, x).unwrap();
    let e = unary(UnaryOp::Exp, &xb, N).unwrap();
    label_pending(dev, "exp");
    let l = Layout::contiguous(&[N]);
    let (s, _) = binary(BinaryOp::Add, &e, &l, &xb, &l).unwrap();
    label_pending(dev, "add");
    let (ab, bb) = (Buffer::from_f32(dev, a).unwrap(), Buffer::from_f32(dev, b).unwrap());
    let (m, _) = {
        let _s = scope(|| "my matmul".to_string());
        matmul(&ab, &Layout::contiguous(&[M, K]), &bb, &Layout::contiguous(&[K, P])).unwrap()
    };
    (e.to_f32().unwrap(), s.to_f32().unwrap(), m.to_f32().unwrap())
}

fn inputs() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut r = Rng::new(5);
    (r.vec(N, -2.0, 2.0), r.vec(M * K, -1.0, 1.0), r.vec(K * P, -1.0, 1.0))
}

fn check_profile(p: &Profile, dev: &Device, family_prefix: [&str; 3]) {
    assert_eq!(p.launches.len(), 3, "{p}");
    for (l, prefix) in p.launches.iter().zip(family_prefix) {
        assert!(l.family.starts_with(prefix), "family {} should start with {prefix}", l.family);
    }
    let ops: Vec<&str> = p.launches.iter().map(|l| l.op.as_str()).collect();
    assert_eq!(ops, ["exp", "add", "my matmul"]);
    assert_eq!(p.launches[2].flops, 2 * (M * K * P) as u64);
    assert_eq!(p.launches[0].flops, 0);
    // Each launch allocated its output (pooled sizes round up by at most 12.5%)
    // plus, for the first and last, the uploads made before it.
    let out_bytes = (N * 4) as u64;
    let alloc = p.launches[1].bytes_allocated;
    assert!(alloc >= out_bytes && alloc <= out_bytes * 9 / 8 + 16, "add allocated {alloc} bytes");
    assert!(p.launches[2].bytes_allocated >= ((M * K + K * P + M * P) * 4) as u64);
    // The add reads two [N] operands and writes one.
    let moved = p.launches[1].bytes_moved;
    assert!(moved >= 3 * out_bytes && moved <= 3 * (out_bytes * 9 / 8 + 16), "add moved {moved} bytes");
    let by_family = p.by_family();
    assert_eq!(by_family.len(), 3);
    assert_eq!(p.total().launches, 3);
    assert_eq!(p.by_op().iter().map(|(_, t)| t.launches).sum::<usize>(), 3);
    // Timed on the CPU backend always, on a GPU iff it offers timestamps.
    let has_timer = !dev.is_gpu() || dev.info().features.iter().any(|f| f.contains("TIMESTAMP_QUERY"));
    assert_eq!(p.timed, has_timer, "{:?}", dev.info().features);
    if p.timed {
        assert!(p.launches.iter().all(|l| l.dur_us.unwrap() >= 0.0 && l.start_us.unwrap() >= 0.0));
        assert!(p.total().time_us > 0.0, "{p}");
    }
    let text = p.to_string();
    for word in ["kernel family", "op", "total", "my matmul"] {
        assert!(text.contains(word), "{word} missing from\n{text}");
    }
    let json: serde_json::Value = serde_json::from_str(&p.chrome_trace()).expect("the trace is JSON");
    let events = json["traceEvents"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2]["name"], "my matmul");
    assert_eq!(events[2]["args"]["flops"], 2 * (M * K * P) as u64);
    assert_eq!(events[0]["ph"], "X");
}

fn profile_on(dev: &Device, family_prefix: [&str; 3]) {
    let (x, a, b) = inputs();
    let before = dev.stats();
    let plain = work(dev, &x, &a, &b);
    let counted_off = dev.stats().dispatches - before.dispatches;
    let before = dev.stats();
    let (profiled, p) = dev.profile(|| work(dev, &x, &a, &b)).unwrap();
    assert_eq!(dev.stats().dispatches - before.dispatches, counted_off, "profiling changes the dispatch count");
    assert_eq!(plain, profiled, "profiling changes results");
    assert!(plain.0.iter().chain(&plain.1).chain(&plain.2).all(|v| v.is_finite()));
    check_profile(&p, dev, family_prefix);
    // After the profile ends nothing is recorded any more.
    let (_, p2) = dev.profile(|| ()).unwrap();
    assert!(p2.launches.is_empty());
}

#[test]
fn profiles_the_cpu_backend() {
    profile_on(&Device::cpu(), ["cpu:unary", "cpu:binary", "cpu:matmul"]);
}

#[test]
fn profiles_the_gpu() {
    let Some(dev) = fresh_gpu_or_skip("profiles_the_gpu") else { return };
    // One launch per op: the fuser would merge exp and add. Buffer inputs,
    // so the families are `unary`/`binary` on CPU adapters too (not `_tex`).
    dev.set_fusion(false).unwrap();
    dev.set_texture_operands(false);
    profile_on(&dev, ["unary:", "binary:", "matmul"]);
}

#[test]
fn a_fused_launch_is_profiled_once_under_the_names_of_its_chain() {
    let Some(dev) = fresh_gpu_or_skip("a_fused_launch_is_profiled_once_under_the_names_of_its_chain") else { return };
    dev.set_fusion(true).unwrap();
    let (x, a, b) = inputs();
    let before = dev.stats();
    let (_, p) = dev.profile(|| work(&dev, &x, &a, &b)).unwrap();
    assert_eq!(dev.stats().dispatches - before.dispatches, 2);
    assert_eq!(p.launches.len(), 2, "{p}");
    let fused = &p.launches[0];
    assert_eq!((fused.family.as_str(), fused.op.as_str()), ("fused:exp+add", "exp+add"), "{p}");
    // exp's output is stored (the user reads it) and add's written: both allocations are its.
    let out_bytes = (N * 4) as u64;
    assert!(fused.bytes_allocated >= 2 * out_bytes, "{p}");
    assert_eq!(p.launches[1].op, "my matmul");
}

#[test]
fn unlabelled_launches_keep_their_family_and_scopes_nest() {
    let dev = Device::cpu();
    let x = Buffer::from_f32(&dev, &[1.0, 2.0]).unwrap();
    let (_, p) = dev
        .profile(|| {
            let _outer = scope(|| "outer".to_string());
            unary(UnaryOp::Neg, &x, 2).unwrap();
            {
                let _inner = scope(|| "inner".to_string());
                unary(UnaryOp::Neg, &x, 2).unwrap();
                // A label does not override a scope.
                label_pending(&dev, "ignored");
            }
            drop(_outer);
            unary(UnaryOp::Neg, &x, 2).unwrap();
        })
        .unwrap();
    let ops: Vec<&str> = p.launches.iter().map(|l| l.op.as_str()).collect();
    assert_eq!(ops, ["outer", "inner", "cpu:unary"]);
}

/// `Stats` splits the host's time for a GPU into recording, submitting and
/// waiting, each charged once (their sum fits in the wall time); the CPU
/// backend, whose kernels run as they are called, records none.
#[test]
fn host_time_is_split_into_recording_submitting_and_waiting() {
    let (x, a, b) = inputs();
    let cpu = Device::cpu();
    let before = cpu.stats();
    work(&cpu, &x, &a, &b);
    let d = cpu.stats() - before;
    assert_eq!((d.host_record_ns, d.host_submit_ns, d.host_wait_ns), (0, 0, 0), "{d:?}");

    let Some(dev) = fresh_gpu_or_skip("host_time_is_split_into_recording_submitting_and_waiting") else { return };
    work(&dev, &x, &a, &b); // pipelines compiled
    let before = dev.stats();
    let t = std::time::Instant::now();
    work(&dev, &x, &a, &b);
    let wall = t.elapsed().as_nanos() as u64;
    let d = dev.stats() - before;
    assert!(d.host_record_ns > 0 && d.host_submit_ns > 0 && d.host_wait_ns > 0, "{d:?}");
    assert!(d.host_record_ns + d.host_submit_ns + d.host_wait_ns <= wall, "{d:?} within {wall} ns");
    // Three readbacks, each with a submit and a wait.
    assert!(d.readbacks == 3 && d.submissions >= 3, "{d:?}");
}

/// A step repeated on the same shapes binds the same pooled buffers to the
/// same kernels, so after the first runs it creates no bind group: each is
/// found in the cache, with the same results. Launches that read operand
/// textures (a CPU adapter's default) make theirs afresh, so those are off.
#[test]
fn a_repeated_step_reuses_its_bind_groups() {
    let Some(dev) = fresh_gpu_or_skip("a_repeated_step_reuses_its_bind_groups") else { return };
    dev.set_texture_operands(false);
    let (x, a, b) = inputs();
    let created = |dev: &Device| {
        let before = dev.stats();
        let out = work(dev, &x, &a, &b);
        (out, dev.stats() - before)
    };
    let (first, d1) = created(&dev);
    assert_eq!(d1.bind_groups_created, d1.dispatches, "a new device creates one per launch: {d1:?}");
    let _ = created(&dev);
    let (third, d3) = created(&dev);
    assert_eq!(first, third);
    assert!(d3.dispatches > 0 && d3.bind_groups_created == 0, "{d3:?}");
    // Emptying the pool forgets them (they kept its buffers alive).
    dev.empty_cache();
    let (fourth, d4) = created(&dev);
    assert_eq!(first, fourth);
    assert_eq!(d4.bind_groups_created, d4.dispatches, "{d4:?}");
}

/// A batch times at most so many launches and submits early when full; a
/// run the fuser encodes in one go (here 600 independent elementwise
/// launches, none merging: each result is kept) may pass that mark before
/// the batch can submit, and every launch is still timed.
#[test]
fn a_long_fused_run_is_timed_whole() {
    let Some(dev) = fresh_gpu_or_skip("a_long_fused_run_is_timed_whole") else { return };
    let x = Buffer::from_f32(&dev, &Rng::new(3).vec(64, -1.0, 1.0)).unwrap();
    let launches = 600;
    let (kept, p) = dev
        .profile(|| {
            let kept: Vec<Buffer> = (0..launches).map(|_| unary(UnaryOp::Exp, &x, 64).unwrap()).collect();
            dev.flush().unwrap();
            kept
        })
        .unwrap();
    assert_eq!(p.launches.len(), launches, "{p}");
    if p.timed {
        assert!(p.launches.iter().all(|l| l.dur_us.is_some()), "a launch went untimed");
    }
    let want = kept[0].to_f32().unwrap();
    assert!(kept.iter().all(|k| k.to_f32().unwrap() == want));
}

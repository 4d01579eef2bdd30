// Own binary: its counting global allocator measures the whole process's heap, which other tests' allocations would inflate.
//! The CPU backend's memory budget covers what the process really holds: a
//! fill and a reduction need nothing beside their buffers (a sum over a
//! whole tensor reads it in place), host copies that remain (f16 operands
//! widened to f32, readbacks) are checked and counted while they live, a
//! buffer is charged its pooled size class, and pooled free vectors give way
//! to a new allocation. Measured with a counting allocator, so a copy the
//! device's counters do not see still fails the test, on small tensors
//! under low budgets (never by exhausting the machine).

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use wgrad_gpu_core::ops::fill::fill;
use wgrad_gpu_core::ops::operands::Operands;
use wgrad_gpu_core::ops::reduce::{reduce, reduce_io, ReduceOp};
use wgrad_gpu_core::{Buffer, Device, Error, Layout};

/// The system allocator, counting the bytes held and their peak.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System`, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            PEAK.fetch_max(HELD.fetch_add(layout.size(), Relaxed) + layout.size(), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            PEAK.fetch_max(HELD.fetch_add(layout.size(), Relaxed) + layout.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        System.dealloc(ptr, layout);
        HELD.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            HELD.fetch_sub(layout.size(), Relaxed);
            PEAK.fetch_max(HELD.fetch_add(new_size, Relaxed) + new_size, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One measurement at a time: the counters are process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

/// Heap bytes `f` adds at its peak, above what was held when it started
/// (allocations of the test harness's other threads are small).
fn heap_peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = HELD.load(Relaxed);
    PEAK.store(start, Relaxed);
    let r = f();
    (r, PEAK.load(Relaxed).saturating_sub(start))
}

const MIB: usize = 1 << 20;
/// Heap besides the tensor that an op may use: its tiny output, layouts,
/// rayon's bookkeeping; far below any tensor here.
const SLACK: usize = 64 << 10;

/// A 4 MiB f32 tensor (a size class of its own: charged exactly).
const N: usize = MIB;
const SHAPE: [usize; 2] = [1024, 1024];

fn cpu_devices() -> [Device; 2] {
    [Device::cpu(), Device::cpu_reference()]
}

fn sum(x: &Buffer, shape: &[usize], axes: &[usize]) -> Vec<f32> {
    reduce(ReduceOp::Sum, x, &Layout::contiguous(shape), axes, false).unwrap().0.to_f32().unwrap()
}

#[test]
fn a_fill_and_a_sum_over_the_whole_tensor_hold_only_the_tensor() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for dev in cpu_devices() {
        // Under 2x the tensor: a second copy of it would not fit.
        let budget = (N * 4 + N * 2) as u64;
        dev.set_memory_budget(Some(budget));
        dev.reset_peak();
        let (total, heap) = heap_peak(|| {
            let x = fill(&dev, N, 1.0).unwrap();
            sum(&x, &SHAPE, &[])
        });
        assert_eq!(total, [N as f32], "{}", dev.name());
        assert!(heap <= N * 4 + SLACK, "{}: zeros+sum held {heap} heap bytes for a {}-byte tensor", dev.name(), N * 4);
        let stats = dev.stats();
        assert!(stats.bytes_peak <= (N * 4 + 512) as u64, "{}: bytes_peak {}", dev.name(), stats.bytes_peak);
        assert_eq!(stats.transient_peak, 4, "{}: only the one-value readback", dev.name());
        assert_eq!(stats.bytes_live, 0, "{}", dev.name());
        assert_eq!(stats.transient_bytes, 0, "{}", dev.name());
    }
}

#[test]
fn sums_over_some_axes_read_in_place_too() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for dev in cpu_devices() {
        // Room for the input, a column sum's 2 MiB result and its readback.
        dev.set_memory_budget(Some((N * 4 + N * 4 + MIB) as u64));
        let x = fill(&dev, N, 0.5).unwrap();
        // Few long rows (a copy of a row each per thread, before), a
        // column sum (running sums of a whole row, before), and a strided
        // block: each output is its block's sum all the same.
        for (shape, axes, each) in [
            (&[4, N / 4][..], &[1][..], N as f32 / 8.0),
            (&[2, N / 2][..], &[0][..], 1.0),
            (&[64, 128, 128][..], &[0, 2][..], 64.0 * 64.0),
        ] {
            let (got, heap) = heap_peak(|| sum(&x, shape, axes));
            assert!(got.iter().all(|&v| v == each), "{}: {shape:?} over {axes:?}", dev.name());
            let out_bytes = got.len() * 4;
            assert!(
                heap <= 3 * out_bytes + SLACK,
                "{}: {shape:?} over {axes:?} took {heap} heap bytes for {out_bytes} bytes of output",
                dev.name()
            );
        }
    }
}

#[test]
fn an_allocation_past_the_budget_is_out_of_memory_before_anything_is_allocated() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for dev in cpu_devices() {
        dev.set_memory_budget(Some(3 * MIB as u64));
        let (r, heap) = heap_peak(|| fill(&dev, N, 0.0));
        let err = r.expect_err("4 MiB past a 3 MiB budget");
        assert!(heap < SLACK, "{}: {heap} bytes allocated before the refusal", dev.name());
        match &err {
            Error::OutOfMemory { requested, .. } => assert_eq!(*requested, (N * 4) as u64, "{err}"),
            other => panic!("{}: expected out of memory, got {other}", dev.name()),
        }
        let msg = err.to_string();
        assert!(msg.contains("4194304 bytes requested") && msg.contains("memory budget is 3145728 bytes"), "{msg}");
        assert!(msg.contains("WGRAD_MEMORY_BUDGET") && msg.contains("Device::set_memory_budget"), "{msg}");
        assert_eq!(dev.stats().bytes_live, 0);
    }
}

#[test]
fn a_widened_f16_operand_is_checked_and_counted() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for dev in cpu_devices() {
        // N halves: a 2 MiB buffer; the reduction widens it to 4 MiB of f32.
        let halves = vec![half::f16::from_f32(0.25); N];
        let x = Buffer::from_f16(&dev, &halves).unwrap();
        drop(halves);
        let held = dev.stats().bytes_live;
        assert_eq!(held, (N * 2) as u64);
        let layout = Layout::contiguous(&SHAPE);
        let sum16 = || reduce_io(ReduceOp::Sum, &x, Operands::F16, &layout, &[], false);

        // The buffer fits, its widened copy does not: refused, nothing held.
        dev.set_memory_budget(Some(held + 3 * MIB as u64));
        let (r, heap) = heap_peak(sum16);
        let err = r.expect_err("the widened copy is past the budget");
        assert!(matches!(err, Error::OutOfMemory { requested, .. } if requested == (N * 4) as u64), "{err}");
        assert!(heap < SLACK, "{}: {heap} bytes allocated before the refusal", dev.name());
        assert_eq!((dev.stats().bytes_live, dev.stats().transient_bytes), (held, 0), "{}", dev.name());

        // With room for it: counted while it lives, released after.
        dev.set_memory_budget(Some(held + 5 * MIB as u64));
        dev.reset_peak();
        let (total, heap) = heap_peak(|| sum16().unwrap().0.to_f32().unwrap());
        assert_eq!(total, [N as f32 / 4.0], "{}", dev.name());
        let stats = dev.stats();
        assert_eq!(stats.transient_peak, (N * 4) as u64, "{}", dev.name());
        assert!(stats.bytes_peak >= held + (N * 4) as u64, "{}: the copy is live bytes while held", dev.name());
        assert!(heap <= N * 4 + SLACK, "{}: {heap} heap bytes", dev.name());
        assert_eq!((stats.bytes_live, stats.transient_bytes), (held, 0), "{}", dev.name());
    }
}

#[test]
fn a_readback_is_one_copy_and_must_fit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    let x = fill(&dev, N, 2.0).unwrap();
    dev.set_memory_budget(Some((N * 4 + MIB) as u64));
    let err = x.to_f32().expect_err("a 4 MiB copy beside a 4 MiB buffer, 5 MiB budget");
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err}");
    dev.set_memory_budget(Some((N * 8) as u64));
    dev.reset_peak();
    let (v, heap) = heap_peak(|| x.to_f32().unwrap());
    assert!(v.len() == N && v.iter().all(|&v| v == 2.0));
    assert!(heap <= N * 4 + SLACK, "{heap} heap bytes for a {}-byte readback", N * 4);
    assert_eq!(dev.stats().transient_peak, (N * 4) as u64);
}

#[test]
fn buffers_are_charged_their_size_class_and_pooled_vectors_give_way() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Device::cpu();
    // 4 MiB + 4 bytes takes the next class (4.5 MiB, a sixteenth of 8 MiB
    // more): that is what the pool allocates and what is held.
    let odd = Buffer::alloc(&dev, (N * 4 + 4) as u64).unwrap();
    let class = dev.stats().bytes_live;
    assert_eq!(class, (N * 4 + N / 2) as u64);
    drop(odd);
    assert_eq!(dev.stats().bytes_live, 0);
    // The budget counts the class: 4 MiB + 4 bytes fit 4.1 MiB, the class does not.
    dev.set_memory_budget(Some((N * 4 + N / 10) as u64));
    assert!(
        matches!(Buffer::alloc(&dev, (N * 4 + 4) as u64), Err(Error::OutOfMemory { requested, .. }) if requested == class)
    );

    // A freed 4.5 MiB vector stays pooled (resident); a 3 MiB buffer of
    // another class under a 5 MiB budget frees it first instead of holding both.
    dev.set_memory_budget(None);
    drop(Buffer::alloc(&dev, (N * 4 + 4) as u64).unwrap());
    dev.set_memory_budget(Some(5 * MIB as u64));
    let before = HELD.load(Relaxed);
    let b = Buffer::alloc(&dev, 3 * MIB as u64).unwrap();
    let after = HELD.load(Relaxed);
    assert!(after < before, "the pooled 4.5 MiB were freed for the 3 MiB buffer ({before} -> {after} heap bytes)");
    assert_eq!(dev.empty_cache(), 0, "nothing left pooled");
    // A vector of the same class is reused, not freed.
    drop(b);
    let b = Buffer::alloc(&dev, 3 * MIB as u64).unwrap();
    assert_eq!(dev.stats().buffers_created, 2, "the 4.5 MiB vector, then the 3 MiB one, reused");
    drop(b);
}

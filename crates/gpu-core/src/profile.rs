//! A step profiler: what each kernel family and each op of a region of code
//! launched, allocated, moved and computed, and how long the device took.
//!
//! ```no_run
//! # use wgrad_gpu_core::Device;
//! # let device = Device::shared();
//! # let step = || ();
//! let (_, report) = device.profile(|| step()).unwrap();
//! println!("{report}"); // a table per kernel family and per op
//! report.write_chrome_trace("step-profile.json").unwrap(); // open in Perfetto
//! ```
//!
//! **What is measured.** Every kernel launch recorded while the profile runs
//! becomes a [`Launch`]: its kernel family (`shader:entry` on a GPU, the op
//! file on the CPU backend), the op that launched it, the bytes of the
//! buffers it binds (an upper estimate of what it reads and writes: pooled
//! buffers are rounded up by at most 12.5%), the bytes newly allocated for
//! it, and the FLOPs that ops which know them declare (matmul, convolution,
//! attention). GPU time comes from timestamp queries written around each
//! kernel when the adapter offers `TIMESTAMP_QUERY` (each launch is its own
//! compute pass, so no in-pass timestamps are needed); on the CPU backend the
//! host clock times each kernel. Without either, times are absent, not zero.
//! A timed launch runs alone (the driver writes a timestamp once the work
//! before it is done), so the times add up to the step run launch after
//! launch, which can exceed an unprofiled step's device time
//! (docs/performance.md, "Profiling a step").
//!
//! **Op names** come from two places: a [`scope`] that callers open around
//! work (autograd names each backward rule `"<op> backward"`, optimizers
//! name their step), and [`label_pending`], which autograd calls when an op
//! returns its result: launches recorded since the previous label on this
//! thread that have no scope get the op's name. Launches nobody named keep
//! their family as name.
//!
//! **Cost when off:** one relaxed atomic load per launch and allocation.
//! While a profile runs, each submission waits for the device (to read the
//! timestamps), so profile a representative step, not a whole run.

pub use crate::profiler::{annotate_flops, scope, Launch, Profile, Scope, Totals};
use crate::Device;

/// Whether a profile is running on `device` (inside [`Device::profile`](Device::profile)).
pub fn is_active(device: &Device) -> bool {
    device.inner.profiler.is_active()
}

/// Names the launches recorded on `device` since the previous label that no
/// scope named: autograd calls it with the op's name when an op returns.
pub fn label_pending(device: &Device, op: &str) {
    let p = &device.inner.profiler;
    if p.is_active() {
        p.label(op);
    }
}

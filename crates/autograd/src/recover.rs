//! Recovering from device errors. Tensor ops are infallible calls (like
//! PyTorch's, which raise): a device error inside one (out of memory, a
//! limit, a bad index reported at a readback) panics with a message that
//! names the op. [`try_run`] turns those panics back into the typed
//! [`Error`], so a program can catch out-of-memory and retry with a smaller
//! batch, as `except torch.cuda.OutOfMemoryError` does.
//!
//! Every buffer the failed block allocated is released as the panic unwinds,
//! and the device keeps working: the next block runs as on a fresh start.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::{Error, Result};

thread_local! {
    /// The error of the op panicking on this thread, for `try_run`.
    static RAISED: RefCell<Option<Error>> = const { RefCell::new(None) };
    /// Whether a `try_run` on this thread is catching (its panics are not printed).
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Panics with `op: error`, leaving the typed error for [`try_run`].
#[track_caller]
pub(crate) fn raise(op: &str, e: Error) -> ! {
    raise_as(e.in_op(op), e)
}

/// Panics with the error's own message (it names its op), leaving the typed
/// error for [`try_run`]: the panicking form of a `try_` op.
#[track_caller]
pub(crate) fn fail(e: Error) -> ! {
    raise_as(e.to_string(), e)
}

#[track_caller]
fn raise_as(msg: String, e: Error) -> ! {
    RAISED.with(|r| *r.borrow_mut() = Some(e));
    panic!("{msg}")
}

/// Runs `f` and returns its result, or the [`Error`] of the first op that
/// failed inside it (out of memory, a device limit, an index out of range
/// reported at a readback, an invalid argument). Panics that are not wgrad
/// errors (a failed assertion in user code) continue as panics.
///
/// ```
/// use wgrad_autograd::{try_run, Device, Error, Tensor};
/// let dev = Device::cpu();
/// dev.set_memory_budget(Some(1 << 20)); // 1 MiB
/// let r = try_run(|| Tensor::zeros(&[1024, 1024], &dev).sum_all().item());
/// assert!(matches!(r, Err(Error::OutOfMemory { .. })));
/// // Smaller work goes on on the same device.
/// assert_eq!(try_run(|| Tensor::ones(&[16, 16], &dev).sum_all().item()).unwrap(), 256.0);
/// ```
pub fn try_run<R>(f: impl FnOnce() -> R) -> Result<R> {
    quiet_hook();
    RAISED.with(|r| r.borrow_mut().take());
    let outer = CATCHING.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(outer));
    match result {
        Ok(r) => Ok(r),
        Err(payload) => match RAISED.with(|r| r.borrow_mut().take()) {
            Some(e) => Err(e),
            None => resume_unwind(payload),
        },
    }
}

/// Whether the panic now unwinding on this thread is a wgrad error that an
/// enclosing [`try_run`] turns into an `Err`: a panic hook that ends the
/// program on a crash (a data-parallel rank aborting its job) lets these
/// through.
pub fn caught_by_try_run() -> bool {
    CATCHING.with(|c| c.get()) && RAISED.with(|r| r.borrow().is_some())
}

/// Installs (once) a panic hook that stays silent for wgrad errors caught by
/// `try_run` and defers to the previous hook otherwise.
fn quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let caught = caught_by_try_run();
            if !caught {
                previous(info);
            }
        }));
    });
}

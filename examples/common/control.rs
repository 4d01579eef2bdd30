//! Stopping a run well: Ctrl-C ends it at the end of the current step (the
//! caller then writes a resumable checkpoint) and a second Ctrl-C ends it at
//! once; out-of-memory inside a step ends it with the flag to lower instead
//! of a panic. Included with `#[path]` so each example takes only what it uses.

use std::sync::atomic::{AtomicBool, Ordering};

use wgrad::nn::train::FitError;
use wgrad::Error;

static STOP: AtomicBool = AtomicBool::new(false);

/// The first Ctrl-C asks the training loop to stop; the second exits now.
pub struct Stop;

impl Stop {
    /// Installs the SIGINT handler (Unix; elsewhere Ctrl-C keeps its default,
    /// immediate exit).
    pub fn install() -> Stop {
        #[cfg(unix)]
        // SAFETY: the handler only touches an atomic and calls the
        // async-signal-safe `write` and `_exit`.
        unsafe {
            libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        }
        Stop
    }

    /// Whether Ctrl-C was pressed: check at the end of each step.
    #[allow(dead_code)] // each example includes this file and uses a part of it
    pub fn requested(&self) -> bool {
        STOP.load(Ordering::SeqCst)
    }

    /// The flag Ctrl-C sets, for `Trainer::stop_flag`.
    #[allow(dead_code)]
    pub fn flag(&self) -> &'static AtomicBool {
        &STOP
    }
}

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe; 130 is the shell's code for SIGINT.
        unsafe { libc::_exit(130) }
    }
    let msg = b"\nCtrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)\n";
    // SAFETY: `write` is async-signal-safe and `msg` outlives the call.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// The line to print after saving on Ctrl-C.
pub fn resume_hint(what: &str) -> String {
    format!("stopped by Ctrl-C after {what}; checkpoint saved. Continue with the same command plus --resume")
}

/// Runs `f` (a training or evaluation step), turning a device error inside
/// it into an error instead of a panic. Out of memory (or a buffer past a
/// device limit) names the flags that set the memory use, `(flag, value)`,
/// so the message says what to lower.
#[allow(dead_code)]
pub fn guard<R>(what: &str, flags: &[(&str, usize)], f: impl FnOnce() -> R) -> anyhow::Result<R> {
    wgrad::try_run(f).map_err(|e| match e {
        e if is_oom(&e) => out_of_memory(what, &e, flags),
        e => anyhow::Error::new(e).context(what.to_string()),
    })
}

/// A `Trainer::fit` error; out of memory names the flags as [`guard`] does.
#[allow(dead_code)]
pub fn fit_error(e: FitError, flags: &[(&str, usize)]) -> anyhow::Error {
    match e {
        FitError::Device { context, source } if is_oom(&source) => out_of_memory(&context, &source, flags),
        e => anyhow::Error::new(e),
    }
}

fn is_oom(e: &Error) -> bool {
    matches!(e, Error::OutOfMemory { .. } | Error::LimitExceeded { .. })
}

fn out_of_memory(what: &str, e: &Error, flags: &[(&str, usize)]) -> anyhow::Error {
    let lower: Vec<String> = flags.iter().map(|(flag, v)| format!("{flag} (now {v})")).collect();
    anyhow::anyhow!("{what} ran out of device memory: {e}\nlower {} and run again", lower.join(" or "))
}

//! Stopping a run well: Ctrl-C ends it at the end of the current step (the
//! caller then writes a resumable checkpoint) and a second Ctrl-C ends it at
//! once; out-of-memory inside a step ends it with the flag to lower instead
//! of a panic. Included with `#[path]` so each example takes only what it uses.

use std::sync::atomic::{AtomicBool, Ordering};

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
    pub fn requested(&self) -> bool {
        STOP.load(Ordering::SeqCst)
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
pub fn guard<R>(what: &str, flags: &[(&str, usize)], f: impl FnOnce() -> R) -> anyhow::Result<R> {
    wgrad::try_run(f).map_err(|e| match e {
        Error::OutOfMemory { .. } | Error::LimitExceeded { .. } => {
            let lower: Vec<String> = flags.iter().map(|(flag, v)| format!("{flag} (now {v})")).collect();
            anyhow::anyhow!("{what} ran out of device memory: {e}\nlower {} and run again", lower.join(" or "))
        }
        e => anyhow::Error::new(e).context(what.to_string()),
    })
}

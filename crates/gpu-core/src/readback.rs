//! [`Readback`]: a copy of device data on its way to the host. Asking for
//! it submits the recorded work and starts the copy; the host goes on
//! (recording the next step, say) and takes the bytes when they are there,
//! so host and device work at once instead of taking turns. On the CPU
//! backend the bytes are copied at once and the readback is ready.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::gpu::readback::PendingRead;
use crate::{Device, Result};

/// Device bytes being copied to the host (see [`Buffer::read_async`](crate::Buffer::read_async)).
///
/// Take them with [`wait`](Self::wait) (blocks until they are there),
/// check with [`is_ready`](Self::is_ready) (never blocks), or `.await`
/// them: as a future it is woken when the copy lands (on native adapters a
/// helper thread waits on the device for it).
#[must_use = "a readback does nothing until its bytes are taken"]
pub struct Readback {
    state: State,
}

enum State {
    /// The CPU backend's copy, or an error found when it was asked for.
    Ready(Option<Result<Vec<u8>>>),
    /// A GPU copy in flight (`None` once taken).
    Gpu { device: Device, pending: Option<PendingRead>, waiter: bool },
}

impl Readback {
    pub(crate) fn ready(bytes: Result<Vec<u8>>) -> Readback {
        Readback { state: State::Ready(Some(bytes)) }
    }

    pub(crate) fn gpu(device: Device, pending: PendingRead) -> Readback {
        Readback { state: State::Gpu { device, pending: Some(pending), waiter: false } }
    }

    /// Whether the bytes are on the host (or the copy failed): [`wait`](Self::wait)
    /// then returns at once. Lets the device run completed callbacks; never blocks.
    pub fn is_ready(&self) -> bool {
        match &self.state {
            State::Ready(_) => true,
            State::Gpu { device, pending: Some(p), .. } => {
                device.gpu_ctx().expect("gpu readback").poll_read(p).unwrap_or(true)
            }
            State::Gpu { pending: None, .. } => true,
        }
    }

    /// The bytes, once the copy has landed (blocks until then).
    pub fn wait(mut self) -> Result<Vec<u8>> {
        match &mut self.state {
            State::Ready(r) => r.take().expect("a readback is taken once"),
            State::Gpu { device, pending, .. } => {
                let ctx = device.gpu_ctx().expect("gpu readback");
                let p = pending.take().expect("a readback is taken once");
                ctx.wait_read(&p)?;
                ctx.finish_read(p)
            }
        }
    }
}

impl Future for Readback {
    type Output = Result<Vec<u8>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(r) => Poll::Ready(r.take().expect("a readback future is polled after it finished")),
            State::Gpu { device, pending, waiter } => {
                let ctx = device.gpu_ctx().expect("gpu readback");
                let p = pending.as_ref().expect("a readback future is polled after it finished");
                // The waker first, so a callback that fires from here on wakes this task.
                p.state.lock().unwrap().waker = Some(cx.waker().clone());
                match ctx.poll_read(p) {
                    Ok(true) => Poll::Ready(ctx.finish_read(pending.take().expect("pending"))),
                    Ok(false) => {
                        // Native wgpu runs map callbacks only inside a poll of
                        // the device: one thread waits there once, and the
                        // callback it runs wakes this task.
                        // In the browser the page's event loop runs them
                        // once this task yields: nothing to wait in.
                        if !*waiter && !cfg!(target_arch = "wasm32") {
                            *waiter = true;
                            let (wgpu_device, submitter) = (ctx.device.clone(), ctx.submitter.clone());
                            let waiter = std::thread::spawn(move || {
                                // The map starts when the batch is submitted.
                                submitter.drain();
                                let _ = wgpu_device.poll(wgpu::PollType::wait_indefinitely());
                            });
                            let mut waiters = ctx.waiters.lock().unwrap();
                            waiters.retain(|w| !w.is_finished());
                            waiters.push(waiter);
                        }
                        Poll::Pending
                    }
                    Err(e) => {
                        pending.take();
                        Poll::Ready(Err(e))
                    }
                }
            }
        }
    }
}

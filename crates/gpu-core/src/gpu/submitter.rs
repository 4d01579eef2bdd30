//! Submits batches on a thread of its own, so the caller records the next
//! launches while wgpu finishes the last batch's command buffer.
//!
//! Finishing a command buffer is where wgpu validates and encodes the
//! batch's compute pass (usage tracking and barriers per dispatch): about
//! 40% of the host's time for an eager ResNet-20 step (`cargo bench --bench
//! host_step`). That work does not need the caller: a batch, once
//! submitted, is only read by the device. So the caller hands the finished
//! recording (the encoder and the parameter chunks' bytes) to this thread
//! and goes on; the thread writes the chunks and submits, in the order the
//! batches were handed over, and the queue keeps that order. A hand-over
//! waits while [`IN_FLIGHT`] batches are queued for the thread, so the
//! caller runs at most that far ahead of it.
//!
//! Whatever observes the queue's progress first waits until every batch
//! handed over is submitted ([`Submitter::drain`]): a readback before it
//! waits for its map (the map itself is started by this thread, right after
//! the submit that fills the staging buffer, so a late read of a loss does
//! not hold the caller), `Device::synchronize` before it polls, timing
//! queries before they are read. Nothing else has to: parameter chunks are
//! written through the queue by this thread only, so a chunk reused by the
//! next batch is written after the batch that used it is submitted, as when
//! the caller submitted inline. An error wgpu reports while submitting is
//! kept, as any asynchronous wgpu error, and returned by the next call that
//! checks (`GpuContext::take_error`).
//!
//! `WGRAD_SUBMIT_THREAD=0` (no thread is started) or
//! `Device::set_submit_thread(false)` submits on the caller's thread instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::stats::{HostPhase, Stats};

/// Batches handed over but not yet taken by the thread before a hand-over
/// waits: the caller records faster than wgpu finishes a batch, and a loop
/// that never reads back would otherwise pile up command buffers.
const IN_FLIGHT: usize = 2;

/// What runs once a batch is submitted (a readback's `map_async`, which
/// wgpu must see after the submit that fills the staging buffer), given
/// the submission's index (none when the batch had nothing to submit).
pub(crate) type AfterSubmit = Box<dyn FnOnce(Option<&wgpu::SubmissionIndex>) + Send>;

/// One command buffer of a batch, finished here: an encoder the caller
/// recorded, or a step graph's replay encoded now.
pub(crate) type Finish = Box<dyn FnOnce(&wgpu::Device) -> wgpu::CommandBuffer + Send>;

/// One batch to submit: the parameter chunks' bytes, written first, then
/// the command buffers, in order, then what waits for the submit.
pub(crate) struct Job {
    pub writes: Vec<(wgpu::Buffer, Vec<u8>)>,
    pub parts: Vec<Finish>,
    pub then: Vec<AfterSubmit>,
}

/// Batches handed over and submitted so far.
#[derive(Default)]
struct Progress {
    sent: u64,
    done: u64,
}

/// The submit thread, or none (`WGRAD_SUBMIT_THREAD=0`: inline). Clones
/// share the thread (a readback's waiting thread drains it before it polls).
#[derive(Clone)]
pub(crate) struct Submitter {
    thread: Option<Arc<Worker>>,
}

struct Worker {
    /// False after `Device::set_submit_thread(false)`: batches are
    /// submitted inline (after those handed over before).
    on: AtomicBool,
    tx: Mutex<Option<mpsc::SyncSender<Job>>>,
    progress: Arc<(Mutex<Progress>, Condvar)>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

/// Writes `job`'s chunks and submits its commands on `queue`.
fn run(device: &wgpu::Device, queue: &wgpu::Queue, job: Job) {
    for (buffer, bytes) in &job.writes {
        queue.write_buffer(buffer, 0, bytes);
    }
    let buffers: Vec<wgpu::CommandBuffer> = job.parts.into_iter().map(|finish| finish(device)).collect();
    let index = queue.submit(buffers);
    for f in job.then {
        f(Some(&index));
    }
}

impl Submitter {
    /// A submitter for `queue`; a thread of its own unless `WGRAD_SUBMIT_THREAD=0`.
    pub fn from_env(device: &wgpu::Device, queue: &wgpu::Queue, stats: &Arc<Stats>) -> Submitter {
        // The browser has one thread: batches are submitted inline there.
        let on = !cfg!(target_arch = "wasm32") && crate::env::switch("WGRAD_SUBMIT_THREAD", true);
        if !on {
            return Submitter { thread: None };
        }
        let (tx, rx) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let progress = Arc::new((Mutex::new(Progress::default()), Condvar::new()));
        let (device, queue, stats, shared) = (device.clone(), queue.clone(), stats.clone(), progress.clone());
        let handle = std::thread::Builder::new()
            .name("wgrad-submit".into())
            .spawn(move || {
                for job in rx {
                    {
                        let _host = super::host_clock::enter(&stats, HostPhase::Encode);
                        run(&device, &queue, job);
                    }
                    let (lock, done) = &*shared;
                    lock.lock().unwrap().done += 1;
                    done.notify_all();
                }
            })
            .expect("wgrad: could not start the submit thread");
        let worker =
            Worker { on: AtomicBool::new(true), tx: Mutex::new(Some(tx)), progress, handle: Mutex::new(Some(handle)) };
        Submitter { thread: Some(Arc::new(worker)) }
    }

    /// Submits `job` after every batch handed over before it: on the submit
    /// thread, or here.
    pub fn submit(&self, device: &wgpu::Device, queue: &wgpu::Queue, job: Job) {
        let Some(w) = &self.thread else { return run(device, queue, job) };
        let tx = w.tx.lock().unwrap();
        let Some(tx) = tx.as_ref().filter(|_| w.on.load(Ordering::Relaxed)) else {
            drop(tx);
            self.drain();
            return run(device, queue, job);
        };
        w.progress.0.lock().unwrap().sent += 1;
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            // The thread is gone (it panicked): submit here, and count it done.
            run(device, queue, job);
            w.progress.0.lock().unwrap().done += 1;
        }
    }

    /// Whether batches go to the thread (false with `WGRAD_SUBMIT_THREAD=0`
    /// or after `set_threaded(false)`).
    pub fn is_threaded(&self) -> bool {
        self.thread.as_ref().is_some_and(|w| w.on.load(Ordering::Relaxed))
    }

    /// Turns the thread on or off for the batches submitted from now on
    /// (an error when it is wanted but was not started).
    pub fn set_threaded(&self, on: bool) -> crate::Result<()> {
        match &self.thread {
            Some(w) => w.on.store(on, Ordering::Relaxed),
            None if on => {
                return Err(crate::Error::invalid(
                    "set_submit_thread",
                    "the submit thread was not started (WGRAD_SUBMIT_THREAD=0 when the device opened)",
                ))
            }
            None => {}
        }
        Ok(())
    }

    /// Waits until every batch handed over so far is submitted.
    pub fn drain(&self) {
        let Some(w) = &self.thread else { return };
        let (lock, done) = &*w.progress;
        let mut p = lock.lock().unwrap();
        let target = p.sent;
        while p.done < target {
            let alive = w.handle.lock().unwrap().as_ref().is_some_and(|h| !h.is_finished());
            assert!(alive, "wgrad: the submit thread stopped with batches not submitted");
            p = done.wait_timeout(p, std::time::Duration::from_millis(100)).unwrap().0;
        }
    }

    /// Submits what is left and stops the thread (the device is closing).
    pub fn stop(&self) {
        let Some(w) = &self.thread else { return };
        w.tx.lock().unwrap().take();
        if let Some(h) = w.handle.lock().unwrap().take() {
            let _ = h.join();
        }
    }
}

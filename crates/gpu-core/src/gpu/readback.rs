//! Copies from the GPU to the host, in three steps so that the wait can be
//! deferred: `begin_read` records the copy into a mappable staging buffer,
//! submits and asks wgpu to map it; the mapping completes while the device
//! works on (the host may record the next step meanwhile); `finish_read`
//! takes the bytes. `read` is the three at once.

use std::sync::{Arc, Mutex};
use std::task::Waker;

use super::context::GpuContext;
use super::host_clock;
use crate::stats::HostPhase;
use crate::{Error, Result};

/// The mapping's outcome, filled in by wgpu's callback, and the task to wake then.
#[derive(Default)]
pub(crate) struct MapState {
    pub result: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    pub waker: Option<Waker>,
    /// The submission that fills the staging buffer, once submitted: a
    /// wait polls until it completes, not until everything submitted since
    /// (a verdict read a step late must not wait for the step after it).
    pub submission: Option<wgpu::SubmissionIndex>,
}

/// A readback submitted and being mapped.
pub(crate) struct PendingRead {
    staging: wgpu::Buffer,
    /// Bytes asked for, and the copy's size (rounded up to 4).
    bytes: u64,
    size: u64,
    /// Whether the index-error record follows the data (see `index_check.rs`).
    check: bool,
    pub state: Arc<Mutex<MapState>>,
}

impl PendingRead {
    /// Whether the mapping has completed (successfully or not).
    pub fn is_mapped(&self) -> bool {
        self.state.lock().unwrap().result.is_some()
    }
}

impl GpuContext {
    /// Records a copy of `bytes` bytes of `src` into a staging buffer,
    /// submits everything recorded so far and starts mapping it.
    pub fn begin_read(&self, src: &wgpu::Buffer, bytes: u64) -> Result<PendingRead> {
        let size = bytes.next_multiple_of(4).max(4);
        let _host = host_clock::enter(&self.stats, HostPhase::Record);
        // The index-error record rides along when a validating kernel ran
        // since the last readback: 16 more bytes, no submission of its own.
        let check = self.index_checks_pending.swap(false, std::sync::atomic::Ordering::Relaxed);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad readback"),
            size: size + if check { 16 } else { 0 },
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let state = Arc::new(Mutex::new(MapState::default()));
        {
            let mut batch = self.batch.lock().unwrap();
            self.settle(&mut batch)?;
            if let Some(t) = &mut batch.tape {
                t.refuse("it reads data back (`item`, `to_vec`)");
            }
            let encoder = batch.encoder(&self.device);
            if bytes > 0 {
                encoder.copy_buffer_to_buffer(src, 0, &staging, 0, size);
            }
            if check {
                encoder.copy_buffer_to_buffer(&self.index_errors, 0, &staging, size, 16);
                encoder.clear_buffer(&self.index_errors, 0, None);
            }
            // The map starts once the copy is submitted (on the submit
            // thread, see `submitter.rs`).
            let (mapped, filled) = (staging.clone(), state.clone());
            batch.after_submit.push(Box::new(move |index| {
                filled.lock().unwrap().submission = index.cloned();
                mapped.map_async(wgpu::MapMode::Read, .., move |r| {
                    let waker = {
                        let mut s = filled.lock().unwrap();
                        s.result = Some(r);
                        s.waker.take()
                    };
                    if let Some(w) = waker {
                        w.wake();
                    }
                });
            }));
            self.submit(&mut batch)?;
        }
        Ok(PendingRead { staging, bytes, size, check, state })
    }

    /// Lets wgpu run completed callbacks without blocking; true when `p` is mapped.
    pub fn poll_read(&self, p: &PendingRead) -> Result<bool> {
        if !p.is_mapped() {
            self.device.poll(wgpu::PollType::Poll).map_err(|e| Error::Readback(e.to_string()))?;
        }
        Ok(p.is_mapped())
    }

    /// Blocks until `p` is mapped.
    pub fn wait_read(&self, p: &PendingRead) -> Result<()> {
        let _host = host_clock::enter(&self.stats, HostPhase::Wait);
        // Its map starts when its batch is submitted: a poll before that
        // would have nothing to wait for. Once submitted, the batches
        // handed over after it need not be.
        let mut submission = p.state.lock().unwrap().submission.clone();
        if submission.is_none() {
            self.submitter.drain();
            submission = p.state.lock().unwrap().submission.clone();
        }
        if !p.is_mapped() {
            crate::web::refuse_blocking("a blocking readback (to_vec, item)", "to_vec_async().await")?;
        }
        while !p.is_mapped() {
            let until = wgpu::PollType::Wait { submission_index: submission.clone(), timeout: None };
            self.device.poll(until).map_err(|e| Error::Readback(e.to_string()))?;
        }
        Ok(())
    }

    /// The bytes of a mapped readback (and the index error it carried, if any).
    pub fn finish_read(&self, p: PendingRead) -> Result<Vec<u8>> {
        let _host = host_clock::enter(&self.stats, HostPhase::Wait);
        let result = p.state.lock().unwrap().result.take().expect("wgrad internal: finish_read before the mapping");
        result.map_err(|e| Error::Readback(e.to_string()))?;
        self.take_error()?;
        let (out, record) = {
            let view = p.staging.get_mapped_range(..).map_err(|e| Error::Readback(format!("{e:?}")))?;
            let tail = &view[p.size as usize..];
            let record: Option<[u32; 4]> = p.check.then(|| bytemuck::pod_read_unaligned(&tail[..16]));
            (view[..p.bytes as usize].to_vec(), record)
        };
        p.staging.unmap();
        self.stats().read_back();
        if let Some(e) = record.and_then(crate::index_check::decode) {
            return Err(e);
        }
        Ok(out)
    }

    /// Copies `bytes` bytes of `src` to the host, submitting pending work first.
    pub fn read(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let p = self.begin_read(src, bytes)?;
        self.wait_read(&p)?;
        self.finish_read(p)
    }
}

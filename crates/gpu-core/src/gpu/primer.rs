//! Driver compilation started as soon as a program asks for a pipeline, on
//! CPU adapters.
//!
//! llvmpipe (Mesa 22.3) turns a pipeline into machine code at its first
//! dispatch, on lavapipe's queue thread, not at `create_compute_pipeline`:
//! a step records every kernel, submits once, and only then does the queue
//! thread compile them, one after the other, while the host waits (a cold
//! Transformer step: 3.6 s creating pipelines on the host, then 10 s of LLVM
//! on the queue thread; docs/history/performance-issue-11.md, "Cold first steps"). So each
//! pipeline is *primed* when the program first asks for it (not when the
//! manifest's warm-up creates it: a kernel this run never dispatches should
//! cost no compilation): one dispatch of zero workgroups, on dummy
//! bindings of the right kinds, in a submission of its own. It runs
//! nothing, but the queue thread compiles the kernel then, while the host
//! goes on creating the next pipelines and recording the step. A zero-sized
//! dispatch writes nothing, and it is ordered before the pending batch's
//! submit only by the queue, which the batch does not depend on.
//!
//! The submissions go through a thread of their own: lavapipe's
//! `vkQueueSubmit` blocks while its queue thread is busy (here: compiling
//! the previous primed kernel), and the host thread must not wait there.
//!
//! llvmpipe builds a kernel's machine code for the kind of textures bound
//! at the dispatch, so the dummy texture is made by the same function as
//! the operand textures (`texture_operands::operand_texture`). A first
//! version bound a 1 x 1 texture without `COPY_DST`: every texture-reading
//! kernel was then compiled twice, and lavapipe's timestamps put its later
//! run time on its neighbours (a profiled LSTM step showed the matmul at
//! 15-37 ms instead of about 240 ms).
//!
//! Only CPU adapters prime (`GpuContext::open`): GPU drivers compile at
//! pipeline creation, where the dummy submission would be pure overhead.
//! `WGRAD_PRIME=0` turns it off (for measuring it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use super::pipelines::{Kernel, PARAMS_BYTES};

/// Bytes of each dummy storage buffer: every storage binding of our kernels
/// is a runtime-sized array of elements of at most 16 bytes.
const DUMMY_BYTES: u64 = 256;

/// The queue and the dummy resources primed dispatches bind.
pub(crate) struct Primer {
    /// To the thread that submits the primed dispatches (it ends when this
    /// sender is dropped, in `drop`).
    submit: Mutex<Option<mpsc::Sender<wgpu::CommandBuffer>>>,
    /// That thread, joined on drop: it holds a clone of the queue, and if it
    /// dropped the last one while the main thread was already in `exit`,
    /// the Vulkan loader would unload the driver under the exit handlers
    /// (a SIGSEGV at exit on lavapipe, about 1 run in 50 under load).
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set by that thread once it has dropped its queue (what the tests check).
    released: Arc<AtomicBool>,
    params: wgpu::Buffer,
    /// Bound for every read-only buffer input (read-only bindings may alias).
    input: wgpu::Buffer,
    /// One per read-write binding (a buffer written through two bindings of
    /// one dispatch would be a usage conflict), grown on demand.
    outputs: Mutex<Vec<wgpu::Buffer>>,
    texture: wgpu::TextureView,
}

/// Whether a device on an adapter of `kind` primes its new pipelines.
pub(crate) fn wanted(kind: wgpu::DeviceType) -> bool {
    kind == wgpu::DeviceType::Cpu && std::env::var("WGRAD_PRIME").map_or(true, |v| v.trim() != "0")
}

fn dummy_buffer(device: &wgpu::Device, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgrad primer"),
        size,
        usage,
        mapped_at_creation: false,
    })
}

impl Primer {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Primer {
        // One row, made like every operand texture (`operand_texture`).
        let (_texture, texture) = super::texture_operands::operand_texture(device, 1);
        let (submit, primed) = mpsc::channel::<wgpu::CommandBuffer>();
        let queue = queue.clone();
        let released = Arc::new(AtomicBool::new(false));
        let done = released.clone();
        let thread = std::thread::Builder::new()
            .name("wgrad primer".into())
            .spawn(move || {
                for commands in primed {
                    queue.submit([commands]);
                }
                drop(queue);
                done.store(true, Ordering::Release);
            })
            .expect("wgrad: cannot start the pipeline primer thread");
        Primer {
            submit: Mutex::new(Some(submit)),
            thread: Some(thread),
            released,
            params: dummy_buffer(device, PARAMS_BYTES, wgpu::BufferUsages::UNIFORM),
            input: dummy_buffer(device, DUMMY_BYTES, wgpu::BufferUsages::STORAGE),
            outputs: Mutex::new(Vec::new()),
            texture,
        }
    }

    /// Submits one zero-workgroup dispatch of `kernel` (on its read-only
    /// bindings, those in its texture mask textures, then its read-write ones).
    pub(crate) fn prime(&self, device: &wgpu::Device, kernel: &Kernel) {
        let (inputs, outputs) = (kernel.inputs, kernel.outputs);
        let mut written = self.outputs.lock().unwrap();
        while written.len() < outputs {
            written.push(dummy_buffer(device, DUMMY_BYTES, wgpu::BufferUsages::STORAGE));
        }
        let reads = (0..inputs).map(|i| match kernel.textures >> i & 1 {
            1 => wgpu::BindingResource::TextureView(&self.texture),
            _ => self.input.as_entire_binding(),
        });
        let writes = written[..outputs].iter().map(|b| b.as_entire_binding());
        let bind_group = kernel.bind_group(device, "wgrad primer", &self.params, reads.chain(writes));
        let mut encoder =
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgrad primer") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[0]);
            pass.dispatch_workgroups(0, 1, 1);
        }
        // The thread lives as long as the sender; a send cannot fail before.
        if let Some(submit) = self.submit.lock().unwrap().as_ref() {
            let _ = submit.send(encoder.finish());
        }
    }
}

impl Drop for Primer {
    fn drop(&mut self) {
        self.submit.lock().unwrap().take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            debug_assert!(self.released.load(Ordering::Acquire), "the primer thread ended holding the queue");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropping the primer waits for its thread to let go of the queue (a
    /// thread still holding it at process exit crashed lavapipe runs).
    #[test]
    fn drop_joins_the_submitting_thread() {
        let Some(dev) = crate::testing::fresh_gpu_or_skip("drop_joins_the_submitting_thread") else { return };
        let ctx = dev.gpu_ctx().unwrap();
        for _ in 0..20 {
            let primer = Primer::new(&ctx.device, &ctx.queue);
            let released = primer.released.clone();
            assert!(!released.load(Ordering::Acquire), "the thread let go of the queue before the primer was dropped");
            drop(primer);
            assert!(released.load(Ordering::Acquire), "the primer was dropped while its thread still held the queue");
        }
    }
}

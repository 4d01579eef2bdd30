//! [`Buffer`]: a block of device memory (pooled wgpu buffer or host vector)
//! that returns to its pool when the last handle drops.

use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::device::{Backend, Device};
use crate::gpu::handle::{Backing, BufferHandle};
use crate::gpu::pool::USAGE;
use crate::{Error, Result};

/// Untyped device memory. Cloning shares the same memory.
#[derive(Clone)]
pub struct Buffer {
    inner: Arc<BufferInner>,
}

// Asserted rather than derived in every downstream crate: see `Device` in device.rs.
const _: () = {
    fn send_sync<T: Send + Sync>() {}
    let _ = send_sync::<BufferInner>;
};
// SAFETY: `BufferInner` is Send + Sync (asserted above); `Buffer` only wraps it in an `Arc`.
unsafe impl Send for Buffer {}
// SAFETY: as above.
unsafe impl Sync for Buffer {}

struct BufferInner {
    device: Device,
    /// Bytes the user asked for (the allocation may be larger).
    bytes: u64,
    /// Bytes accounted in `bytes_live`.
    charged: u64,
    storage: Storage,
}

enum Storage {
    /// A pooled wgpu buffer of the size class, taken on first use (see
    /// [`Buffer::wgpu`]): an intermediate the fuser keeps in registers is
    /// never bound, so it never takes one.
    Gpu(OnceLock<wgpu::Buffer>),
    /// Host words: u32-aligned so f32/u32/packed-f16 views are free.
    Cpu(RwLock<Vec<u32>>),
}

impl Drop for BufferInner {
    fn drop(&mut self) {
        self.device.inner.stats.buffer_released(self.charged);
        if let Storage::Cpu(v) = &mut self.storage {
            let words = std::mem::take(v.get_mut().unwrap_or_else(|e| e.into_inner()));
            self.device.inner.host_pool.put(words);
        }
        if let (Storage::Gpu(b), Some(g)) = (&mut self.storage, self.device.gpu_ctx()) {
            if let Some(b) = b.take() {
                g.pool.put(b);
            }
        }
    }
}

impl Backing for BufferInner {
    fn len_bytes(&self) -> u64 {
        self.bytes
    }

    fn wgpu(&self) -> &wgpu::Buffer {
        let (Storage::Gpu(cell), Some(g)) = (&self.storage, self.device.gpu_ctx()) else {
            panic!("wgrad internal: GPU kernel given a CPU buffer")
        };
        cell.get_or_init(|| {
            g.pool.acquire(self.charged, || {
                self.device.inner.stats.buffer_created();
                g.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgrad"),
                    size: self.charged,
                    usage: USAGE,
                    mapped_at_creation: false,
                })
            })
        })
    }

    fn is_backed(&self) -> bool {
        matches!(&self.storage, Storage::Gpu(c) if c.get().is_some())
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} bytes on {})", self.inner.bytes, self.inner.device.name())
    }
}

impl Buffer {
    /// Allocates `bytes` bytes with unspecified contents (zeros on the CPU backend).
    ///
    /// What is charged to `bytes_live` and checked against the memory
    /// budget is the allocation's size class, what the pool really holds.
    pub fn alloc(device: &Device, bytes: u64) -> Result<Buffer> {
        Self::alloc_with(device, bytes, true)
    }

    /// [`Buffer::alloc`] for an op's output that the op writes whole before
    /// anything reads it (elementwise maps, batch norm's passes): on the
    /// CPU backend a pooled vector is not cleared first.
    pub(crate) fn alloc_overwritten(device: &Device, bytes: u64) -> Result<Buffer> {
        Self::alloc_with(device, bytes, false)
    }

    fn alloc_with(device: &Device, bytes: u64, zeroed: bool) -> Result<Buffer> {
        let live = device.inner.stats.bytes_live();
        let budget = &device.inner.budget;
        let (storage, charged) = match &device.inner.backend {
            Backend::Gpu(g) => {
                let class = g.backing_size(bytes);
                budget.check(|| device.name(), class, live)?;
                g.check_size("buffer", bytes)?;
                // Charged now (the handle's logical size), backed on first use.
                (Storage::Gpu(OnceLock::new()), class)
            }
            Backend::Cpu => {
                if bytes > isize::MAX as u64 {
                    let (what, limit, allowed) = ("buffer".into(), "max_buffer_size", isize::MAX as u64);
                    return Err(Error::LimitExceeded { what, needed: bytes, limit, allowed });
                }
                let words = bytes.div_ceil(4) as usize;
                let class = crate::cpu::pool::class_words(words) as u64 * 4;
                budget.check(|| device.name(), class, live)?;
                // Pooled vectors are resident too: room is made for this one.
                let (v, created) = device.inner.host_pool.take(words, budget.room(live), zeroed);
                if created {
                    device.inner.stats.buffer_created();
                }
                (Storage::Cpu(RwLock::new(v)), class)
            }
        };
        device.inner.stats.buffer_acquired(charged);
        crate::profiler::note_alloc(charged);
        Ok(Buffer { inner: Arc::new(BufferInner { device: device.clone(), bytes, charged, storage }) })
    }

    /// Copies host bytes into a new buffer (recorded in order with pending kernels).
    pub fn from_bytes(device: &Device, data: &[u8]) -> Result<Buffer> {
        let b = Buffer::alloc(device, data.len() as u64)?;
        b.write_bytes(data)?;
        Ok(b)
    }

    /// Overwrites the first `data.len()` bytes in place (recorded in order
    /// with pending kernels: those recorded before read the old contents).
    ///
    /// # Errors
    /// When `data` is longer than the buffer.
    pub fn write_bytes(&self, data: &[u8]) -> Result<()> {
        self.write_at(0, data, true)
    }

    /// [`write_bytes`](Self::write_bytes) at byte `offset` (a multiple of 4),
    /// left out of a step recording ([`Device::record`]): a replay of the
    /// step does not repeat it, so whoever replays writes what the replay
    /// needs beforehand. A compiled step's table of random-draw counters is
    /// written this way (new counters every step, the same launches).
    ///
    /// # Errors
    /// When `offset` is unaligned or the bytes do not fit.
    pub fn write_unrecorded(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.write_at(offset, data, false)
    }

    fn write_at(&self, offset: u64, data: &[u8], recorded: bool) -> Result<()> {
        if !offset.is_multiple_of(4) || offset + data.len() as u64 > self.len_bytes() {
            return Err(crate::Error::invalid(
                "write_bytes",
                format!("{} bytes at byte {offset} into a buffer of {}", data.len(), self.len_bytes()),
            ));
        }
        match &self.inner.storage {
            Storage::Gpu(_) => {
                self.device().gpu_ctx().expect("gpu storage").upload(self.wgpu(), offset, data, recorded)
            }
            Storage::Cpu(v) => {
                let at = offset as usize;
                bytemuck::cast_slice_mut::<u32, u8>(&mut v.write().unwrap())[at..at + data.len()].copy_from_slice(data);
                Ok(())
            }
        }
    }

    /// A buffer holding `data` as f32.
    pub fn from_f32(device: &Device, data: &[f32]) -> Result<Buffer> {
        Self::from_bytes(device, bytemuck::cast_slice(data))
    }

    /// A buffer holding `data` as u32 (indices, masks of argmax, labels).
    pub fn from_u32(device: &Device, data: &[u32]) -> Result<Buffer> {
        Self::from_bytes(device, bytemuck::cast_slice(data))
    }

    /// A buffer holding `data` as packed f16 storage.
    pub fn from_f16(device: &Device, data: &[half::f16]) -> Result<Buffer> {
        Self::from_bytes(device, bytemuck::cast_slice(data))
    }

    /// Size in bytes as requested.
    pub fn len_bytes(&self) -> u64 {
        self.inner.bytes
    }

    /// The device holding this buffer.
    pub fn device(&self) -> &Device {
        &self.inner.device
    }

    /// True when both handles share one allocation.
    pub fn same_as(&self, other: &Buffer) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// How many handles share this allocation (clones of this `Buffer`,
    /// held by tensors that view it). Optimizers write a parameter in place
    /// only when no other handle could observe the write.
    ///
    /// Elementwise launches the fuser has not encoded yet hold handles of the
    /// buffers they read; they are encoded first, so they do not count.
    pub fn handle_count(&self) -> usize {
        if let Some(g) = self.inner.device.gpu_ctx() {
            // An error here is wgpu's and resurfaces at the next submit.
            let _ = g.settle_now();
        }
        self.handles()
    }

    /// The raw handle count, pending launches included (the fuser's check,
    /// made while it holds the batch).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// Copies the contents to the host (submits pending work on a GPU).
    ///
    /// On the CPU backend the copy is host memory beside the buffer: it is
    /// checked against the memory budget (and counted in `bytes_live`)
    /// while it is made, so a copy that does not fit is
    /// [`Error::OutOfMemory`] rather than a kill by the operating system.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.read(|bytes| bytes)
    }

    /// Starts copying the contents to the host and returns at once: on a
    /// GPU, the recorded work is submitted with the copy, and the bytes are
    /// taken from the [`Readback`](crate::Readback) when they have landed,
    /// while the host records more work meanwhile. What is read is the
    /// contents after the work recorded before this call; work recorded
    /// later does not change it. On the CPU backend the copy is made now.
    pub fn read_async(&self) -> crate::Readback {
        match &self.inner.storage {
            Storage::Gpu(_) => {
                let ctx = self.inner.device.gpu_ctx().expect("gpu storage");
                match ctx.begin_read(self.wgpu(), self.inner.bytes) {
                    Ok(pending) => crate::Readback::gpu(self.inner.device.clone(), pending),
                    Err(e) => crate::Readback::ready(Err(e)),
                }
            }
            Storage::Cpu(_) => crate::Readback::ready(self.to_bytes()),
        }
    }

    /// Copies the contents to the host as f32.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        self.read(|bytes| bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Copies the contents to the host as u32.
    pub fn to_u32(&self) -> Result<Vec<u32>> {
        self.read(|bytes| bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Copies the contents to the host as f16.
    pub fn to_f16(&self) -> Result<Vec<half::f16>> {
        self.read(|bytes| bytemuck::pod_collect_to_vec(&bytes))
    }

    /// The contents as `T`s: on a GPU the bytes read back, converted by
    /// `from_gpu`; on the CPU backend one copy, straight from the host
    /// words, under a [`Reservation`](crate::reservation::Reservation).
    fn read<T: bytemuck::Pod>(&self, from_gpu: impl FnOnce(Vec<u8>) -> Vec<T>) -> Result<Vec<T>> {
        let bytes = self.inner.bytes as usize;
        match &self.inner.storage {
            Storage::Gpu(_) => {
                let ctx = self.inner.device.gpu_ctx().expect("gpu storage");
                Ok(from_gpu(ctx.read(self.wgpu(), self.inner.bytes)?))
            }
            Storage::Cpu(v) => {
                let _held = crate::reservation::Reservation::new(&self.inner.device, self.inner.bytes)?;
                self.inner.device.inner.stats.read_back();
                Ok(bytemuck::pod_collect_to_vec(&bytemuck::cast_slice::<u32, u8>(&v.read().unwrap())[..bytes]))
            }
        }
    }

    /// The wgpu buffer, taken from the pool (or created) on first use. Lazy
    /// so that an intermediate the fuser computes in registers never holds
    /// device memory; `buffers_created` counts real wgpu allocations, while
    /// `bytes_live` is charged at [`Buffer::alloc`] for every live handle.
    pub(crate) fn wgpu(&self) -> &wgpu::Buffer {
        self.inner.wgpu()
    }

    /// Whether device memory backs this buffer yet (see [`Buffer::wgpu`]).
    pub(crate) fn is_backed(&self) -> bool {
        self.inner.is_backed()
    }

    /// This buffer as the GPU recorder holds it: the same allocation and count.
    pub(crate) fn handle(&self) -> BufferHandle {
        BufferHandle::new(self.inner.clone())
    }

    /// Host words of a CPU-backend buffer.
    pub(crate) fn host(&self) -> RwLockReadGuard<'_, Vec<u32>> {
        match &self.inner.storage {
            Storage::Cpu(v) => {
                let g = v.read().unwrap();
                crate::profiler::note_host_bytes(g.len() as u64 * 4);
                g
            }
            _ => panic!("wgrad internal: CPU kernel given a GPU buffer"),
        }
    }

    /// Mutable host words of a CPU-backend buffer.
    pub(crate) fn host_mut(&self) -> RwLockWriteGuard<'_, Vec<u32>> {
        match &self.inner.storage {
            Storage::Cpu(v) => {
                let g = v.write().unwrap();
                crate::profiler::note_host_bytes(g.len() as u64 * 4);
                g
            }
            _ => panic!("wgrad internal: CPU kernel given a GPU buffer"),
        }
    }

    /// Errors unless all buffers live on `device`.
    pub(crate) fn check_same_device(op: &'static str, device: &Device, bufs: &[&Buffer]) -> Result<()> {
        for b in bufs {
            if b.device() != device {
                return Err(Error::DeviceMismatch { op, a: device.name(), b: b.device().name() });
            }
        }
        Ok(())
    }

    /// Errors unless the buffer holds at least `elems` elements of `elem_bytes` bytes.
    /// `what` names the operand in the error; it is formatted only then
    /// (the checks run on every launch, so pass `format_args!`, not a `String`).
    pub(crate) fn check_len(
        &self,
        op: &'static str,
        what: impl std::fmt::Display,
        elems: usize,
        elem_bytes: u64,
    ) -> Result<()> {
        let need = elems as u64 * elem_bytes;
        if self.len_bytes() < need {
            return Err(Error::invalid(op, format!("{what} buffer has {} bytes, needs {need}", self.len_bytes())));
        }
        Ok(())
    }
}

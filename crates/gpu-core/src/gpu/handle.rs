//! [`BufferHandle`]: a buffer as the recorder keeps it (a deferred launch
//! holds its inputs and output until they are encoded), without naming
//! [`Buffer`](crate::Buffer): `buffer.rs` sits above this layer and hands
//! its allocation in through the [`Backing`] trait.

use std::sync::Arc;

/// What the recorder needs of a buffer's allocation.
pub(crate) trait Backing: Send + Sync {
    /// Bytes the user asked for.
    fn len_bytes(&self) -> u64;
    /// The pooled wgpu buffer, taken from the pool on first use.
    fn wgpu(&self) -> &wgpu::Buffer;
    /// Whether a wgpu buffer backs it already.
    fn is_backed(&self) -> bool;
}

/// A counted handle on a buffer's allocation: the same count as the
/// buffer's own handles, so [`handles`](Self::handles) sees every
/// [`Buffer`](crate::Buffer) and every deferred launch that holds it.
#[derive(Clone)]
pub(crate) struct BufferHandle(Arc<dyn Backing>);

impl BufferHandle {
    /// Wraps a buffer's shared allocation (no copy, no new count).
    pub fn new(backing: Arc<dyn Backing>) -> BufferHandle {
        BufferHandle(backing)
    }

    /// See [`Backing::len_bytes`].
    pub fn len_bytes(&self) -> u64 {
        self.0.len_bytes()
    }

    /// See [`Backing::wgpu`].
    pub fn wgpu(&self) -> &wgpu::Buffer {
        self.0.wgpu()
    }

    /// See [`Backing::is_backed`].
    pub fn is_backed(&self) -> bool {
        self.0.is_backed()
    }

    /// An identity for the allocation (equal for every handle on it).
    pub fn id(&self) -> usize {
        Arc::as_ptr(&self.0) as *const () as usize
    }

    /// Live handles on the allocation: buffers and recorder handles together.
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

//! The CPU backend's buffer pool: freed host vectors kept by capacity and
//! handed out again, as the GPU pool does with wgpu buffers. A ResNet-20
//! step allocates some 160 MB in a few hundred buffers; fresh large vectors
//! come from `mmap` and are zeroed page by page on first touch, which costs
//! more than clearing a reused one.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::gpu::pool::size_class;

/// Free host vectors by capacity in words.
#[derive(Default)]
pub(crate) struct HostPool {
    free: Mutex<HashMap<usize, Vec<Vec<u32>>>>,
}

impl HostPool {
    /// `words` zeroed words (the CPU backend's `alloc` promises zeros), from
    /// the pool when a vector of the size class is free; the flag says
    /// whether a new allocation was made.
    pub(crate) fn take(&self, words: usize) -> (Vec<u32>, bool) {
        let class = (size_class(words as u64 * 4) / 4) as usize;
        let reused = self.free.lock().unwrap().get_mut(&class).and_then(Vec::pop);
        let created = reused.is_none();
        let mut v = reused.unwrap_or_else(|| Vec::with_capacity(class));
        v.clear();
        v.resize(words, 0);
        (v, created)
    }

    /// Returns a vector to the pool.
    pub(crate) fn put(&self, v: Vec<u32>) {
        if v.capacity() > 0 {
            self.free.lock().unwrap().entry(v.capacity()).or_default().push(v);
        }
    }

    /// Frees every pooled vector; returns the bytes freed.
    pub(crate) fn clear(&self) -> u64 {
        let mut free = self.free.lock().unwrap();
        let bytes = free.values().flatten().map(|v| v.capacity() as u64 * 4).sum();
        free.clear();
        bytes
    }
}

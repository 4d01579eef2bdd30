//! The CPU backend's buffer pool: freed host vectors kept by capacity and
//! handed out again, as the GPU pool does with wgpu buffers. A ResNet-20
//! step allocates some 160 MB in a few hundred buffers; fresh large vectors
//! come from `mmap` and are zeroed page by page on first touch, which costs
//! more than clearing a reused one.
//!
//! Pooled vectors stay resident, so they are freed (largest first) whenever
//! an allocation needs their room under the memory budget (`memory.rs`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::size_class::size_class;

/// Free host vectors by capacity in words, and their bytes in all.
#[derive(Default)]
pub(crate) struct HostPool {
    free: Mutex<Free>,
}

#[derive(Default)]
struct Free {
    by_class: HashMap<usize, Vec<Vec<u32>>>,
    bytes: u64,
}

impl Free {
    /// Removes vectors, largest first, until at most `keep` bytes remain;
    /// returns them (to be dropped outside the lock).
    fn evict(&mut self, keep: u64) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        if self.bytes <= keep {
            return out;
        }
        let mut classes: Vec<usize> = self.by_class.keys().copied().collect();
        classes.sort_unstable_by(|a, b| b.cmp(a));
        for class in classes {
            let list = self.by_class.get_mut(&class).expect("listed class");
            while self.bytes > keep {
                let Some(v) = list.pop() else { break };
                self.bytes -= v.capacity() as u64 * 4;
                out.push(v);
            }
            if list.is_empty() {
                self.by_class.remove(&class);
            }
            if self.bytes <= keep {
                break;
            }
        }
        out
    }
}

/// The words a buffer of `words` words takes: its size class, which is what
/// the pool allocates and what `bytes_live` and the budget count.
pub(crate) fn class_words(words: usize) -> usize {
    (size_class(words as u64 * 4) / 4) as usize
}

impl HostPool {
    /// `words` words in a vector of the size class: a pooled one when one
    /// is free, else a new one, after freeing pooled vectors until at most
    /// `room` bytes of them remain besides it. The flag says whether a new
    /// allocation was made. With `zeroed` every word is 0 (the CPU
    /// backend's `alloc` promises zeros); without, a pooled vector keeps
    /// what it held (for an op that writes every word: clearing 100 MB a
    /// step cost 4-6% of a step).
    pub(crate) fn take(&self, words: usize, room: u64, zeroed: bool) -> (Vec<u32>, bool) {
        let class = class_words(words);
        let mut free = self.free.lock().unwrap();
        let reused = free.by_class.get_mut(&class).and_then(Vec::pop);
        if let Some(mut v) = reused {
            free.bytes -= v.capacity() as u64 * 4;
            drop(free);
            if zeroed {
                v.clear();
            }
            v.resize(words, 0);
            return (v, false);
        }
        let evicted = free.evict(room.saturating_sub(class as u64 * 4));
        drop(free);
        drop(evicted);
        // Zeroed by the allocator (fresh pages read as zero until written),
        // so nothing is touched here that the kernel will not write.
        let mut v = vec![0u32; class];
        v.truncate(words);
        (v, true)
    }

    /// Returns a vector to the pool.
    pub(crate) fn put(&self, v: Vec<u32>) {
        if v.capacity() > 0 {
            let mut free = self.free.lock().unwrap();
            free.bytes += v.capacity() as u64 * 4;
            free.by_class.entry(v.capacity()).or_default().push(v);
        }
    }

    /// Frees pooled vectors, largest first, until at most `keep` bytes of
    /// them remain.
    pub(crate) fn trim(&self, keep: u64) {
        let evicted = self.free.lock().unwrap().evict(keep);
        drop(evicted);
    }

    /// Frees every pooled vector; returns the bytes freed.
    pub(crate) fn clear(&self) -> u64 {
        let mut free = self.free.lock().unwrap();
        let bytes = free.bytes;
        *free = Free::default();
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_reused_by_class_and_evicted_for_room() {
        let pool = HostPool::default();
        let (a, created) = pool.take(1000, u64::MAX, true);
        assert!(created && a.len() == 1000 && a.capacity() == class_words(1000));
        assert!(a.iter().all(|&w| w == 0));
        let (mut b, _) = pool.take(100_000, u64::MAX, true);
        b[7] = 9;
        pool.put(a);
        pool.put(b);
        // Same class: reused, zeroed again, nothing evicted.
        let (mut b, created) = pool.take(100_000, 0, true);
        assert!(!created && b.iter().all(|&w| w == 0));
        // Not zeroed: the old words stay, the length is the new one.
        b[7] = 9;
        pool.put(b);
        let (b, created) = pool.take(99_000, 0, false);
        assert!(!created && b.len() == 99_000 && b[7] == 9);
        assert_eq!(pool.free.lock().unwrap().bytes, class_words(1000) as u64 * 4);
        // Another class with no room beside it: the pool is emptied first.
        let (c, created) = pool.take(50, class_words(50) as u64 * 4, true);
        assert!(created && c.len() == 50);
        assert_eq!(pool.free.lock().unwrap().bytes, 0);
        pool.put(b);
        pool.put(c);
        pool.trim(class_words(50) as u64 * 4);
        assert_eq!(pool.free.lock().unwrap().bytes, class_words(50) as u64 * 4, "the largest go first");
        assert_eq!(pool.clear(), class_words(50) as u64 * 4);
    }
}

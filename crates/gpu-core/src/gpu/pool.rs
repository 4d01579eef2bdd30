//! A size-bucketed pool of device buffers: freed buffers are kept and handed
//! out again, so a training loop stops allocating after its first steps.

use std::collections::HashMap;
use std::sync::Mutex;

/// Every pooled buffer can be bound as storage and copied in and out.
pub(crate) const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// Rounds a request up to its bucket: powers of two up to 64 KiB, then sixteenths
/// of a power of two, so large tensors waste at most 12.5%.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    let p = b.next_power_of_two();
    if p <= 1 << 16 {
        return p;
    }
    let step = p / 16;
    b.div_ceil(step) * step
}

/// Free buffers by size class.
#[derive(Default)]
pub(crate) struct Pool {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
}

impl Pool {
    /// A free buffer of exactly `class` bytes, if one is pooled.
    pub fn take(&self, class: u64) -> Option<wgpu::Buffer> {
        self.free.lock().unwrap().get_mut(&class).and_then(|v| v.pop())
    }

    /// Returns a buffer for reuse.
    pub fn put(&self, buf: wgpu::Buffer) {
        self.free.lock().unwrap().entry(buf.size()).or_default().push(buf);
    }

    /// Drops every pooled buffer (memory goes back to the driver).
    pub fn clear(&self) -> u64 {
        let mut free = self.free.lock().unwrap();
        let bytes = free.values().flatten().map(|b| b.size()).sum();
        free.clear();
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_bound_waste() {
        assert_eq!(size_class(0), 256);
        assert_eq!(size_class(257), 512);
        assert_eq!(size_class(65536), 65536);
        assert_eq!(size_class(65537), 131072 / 16 * 9);
        for b in [70_000u64, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = size_class(b);
            assert!(c >= b && (c - b) as f64 <= 0.125 * b as f64, "{b} -> {c}");
            assert_eq!(size_class(c), c, "classes are fixed points");
        }
    }
}

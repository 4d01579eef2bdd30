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

/// Free buffers by size class, handed out in a repeatable order.
///
/// A training step asks for the same sizes in the same order every time,
/// but frees them in an order that varies (the graph is torn down as its
/// last handles drop). Handing out the most recently freed buffer would
/// then give a step's k-th buffer of a size another identity each step,
/// and each launch would bind other buffers than last time: no bind group
/// or replay plan (`replay.rs`) would match. So the pool remembers, per
/// size class, which buffer each request of the last batch got (the k-th
/// request of a class since the batch began), and gives the k-th request
/// of this batch that buffer again whenever it is free; when it is not (a
/// state updated into a fresh buffer each step, batch norm's running
/// statistics, alternates between two), the one an earlier batch's k-th
/// request got, [`HISTORY`] batches back at most.
#[derive(Default)]
pub(crate) struct Pool {
    state: Mutex<State>,
}

/// Earlier batches whose requests the pool tries to repeat.
const HISTORY: usize = 4;

#[derive(Default)]
struct State {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Per size class, the buffers handed out in each of the last batches
    /// that asked for that class, in order, the most recent batch first.
    past: HashMap<u64, std::collections::VecDeque<Vec<wgpu::Buffer>>>,
    /// The same for the batch being recorded.
    now: HashMap<u64, Vec<wgpu::Buffer>>,
}

impl Pool {
    /// A buffer of exactly `class` bytes: the one the same request of the
    /// last batch got if it is free, else a free one, else `create()`'s.
    pub fn acquire(&self, class: u64, create: impl FnOnce() -> wgpu::Buffer) -> wgpu::Buffer {
        let mut s = self.state.lock().unwrap();
        let State { free, past, now } = &mut *s;
        let k = now.get(&class).map_or(0, Vec::len);
        let free = free.entry(class).or_default();
        let wanted = past.get(&class).and_then(|batches| {
            batches.iter().filter_map(|b| b.get(k)).find_map(|w| free.iter().rposition(|b| b == w))
        });
        let buffer = match wanted {
            Some(i) => free.swap_remove(i),
            None => {
                // Not a buffer another request (of this batch or the next)
                // wants: taking it would make that request miss too, and the
                // misses would cascade through the steps differently every time.
                let past = past.get(&class);
                let reserved = |b: &wgpu::Buffer| past.is_some_and(|p| p.iter().flatten().any(|w| w == b));
                match free.iter().rposition(|b| !reserved(b)) {
                    Some(i) => free.swap_remove(i),
                    None => create(),
                }
            }
        };
        now.entry(class).or_default().push(buffer.clone());
        buffer
    }

    /// Returns a buffer for reuse.
    pub fn put(&self, buf: wgpu::Buffer) {
        self.state.lock().unwrap().free.entry(buf.size()).or_default().push(buf);
    }

    /// Starts a new batch's order of requests.
    pub fn next_batch(&self) {
        let mut s = self.state.lock().unwrap();
        for (class, order) in std::mem::take(&mut s.now) {
            let batches = s.past.entry(class).or_default();
            batches.truncate(HISTORY - 1);
            batches.push_front(order);
        }
    }

    /// Drops every pooled buffer (memory goes back to the driver).
    pub fn clear(&self) -> u64 {
        let mut s = self.state.lock().unwrap();
        let bytes = s.free.values().flatten().map(|b| b.size()).sum();
        *s = State::default();
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

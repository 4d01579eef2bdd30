//! A size-bucketed pool of device buffers: freed buffers are kept and handed
//! out again, so a training loop stops allocating after its first steps.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Mutex;

pub(crate) use crate::size_class::size_class;

/// Every pooled buffer can be bound as storage and copied in and out.
pub(crate) const USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

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
/// request got, [`HISTORY`] batches back at most. A request that finds none
/// of those free takes a free buffer no recent batch used, else a new one
/// (a few per size class: the price of a repeatable order), else the free
/// buffer wanted last.
#[derive(Default)]
pub(crate) struct Pool {
    state: Mutex<State>,
}

/// Buffers a step graph (`tape.rs`) binds: while one is pinned it is never
/// handed out again; freed, it is *parked* until its graphs are dropped.
/// And, while a step is being recorded, the buffers it was handed (which
/// are the graph's own; the others it touches it found made before).
#[derive(Default)]
struct Pins {
    count: HashMap<wgpu::Buffer, usize>,
    parked: HashSet<wgpu::Buffer>,
    /// Per size class, the buffers handed to the step being recorded, in order.
    recording: Option<HashMap<u64, Vec<wgpu::Buffer>>>,
    /// The same for the last step recorded, and all of them.
    last: HashMap<u64, Vec<wgpu::Buffer>>,
    last_set: HashSet<wgpu::Buffer>,
}

/// Earlier batches whose requests the pool tries to repeat.
const HISTORY: usize = 4;

#[derive(Default)]
struct State {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Per size class, the buffers handed out in each of the last batches
    /// that asked for that class, in order, the most recent batch first.
    past: HashMap<u64, VecDeque<Vec<wgpu::Buffer>>>,
    /// The same for the batch being recorded.
    now: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Per size class, the buffers created while others were free (see `acquire`).
    extra: HashMap<u64, usize>,
    /// Per size class, every buffer in `past` (what a request may want back).
    reserved: HashMap<u64, HashSet<wgpu::Buffer>>,
    /// Step graphs' buffers and the recorded step's order.
    pins: Pins,
}

impl Pool {
    /// A buffer of exactly `class` bytes: the one the same request of the
    /// last batch got if it is free, else a free one, else `create()`'s.
    pub fn acquire(&self, class: u64, create: impl FnOnce() -> wgpu::Buffer) -> wgpu::Buffer {
        let mut s = self.state.lock().unwrap();
        let State { free, past, now, extra, reserved, pins } = &mut *s;
        let k = now.get(&class).map_or(0, Vec::len);
        let free = free.entry(class).or_default();
        // A step being recorded gets what its last recording got, and other
        // work keeps off those buffers, so that a step recorded twice binds
        // the same buffers (`tape.rs`).
        let step = &*pins;
        let for_step = step.recording.as_ref().map(|r| r.get(&class).map_or(0, Vec::len));
        let stepped = |b: &wgpu::Buffer| !step.last_set.is_empty() && step.last_set.contains(b);
        let wanted = match for_step {
            Some(j) => step.last.get(&class).and_then(|l| l.get(j)).and_then(|w| free.iter().rposition(|b| b == w)),
            None => past.get(&class).and_then(|batches| {
                let mut wants = batches.iter().filter_map(|b| b.get(k)).filter(|w| !stepped(w));
                wants.find_map(|w| free.iter().rposition(|b| b == w))
            }),
        };
        let buffer = match wanted {
            Some(i) => free.swap_remove(i),
            None => {
                // Not a buffer another request (of this batch or the next)
                // wants: taking it would make that request miss too, and the
                // misses would cascade through the steps differently every
                // time. A new buffer instead, up to half a batch's requests of
                // the class over the pool's life; past that, the free buffer
                // the last batch wanted latest.
                let history = past.get(&class);
                let reserved = |b: &wgpu::Buffer| stepped(b) || reserved.get(&class).is_some_and(|r| r.contains(b));
                let cap = history.and_then(|p| p.front()).map_or(0, |l| l.len() / 2 + 1);
                let extra = extra.entry(class).or_default();
                if let Some(i) = free.iter().rposition(|b| !reserved(b)) {
                    free.swap_remove(i)
                } else if free.is_empty() || *extra < cap {
                    *extra += usize::from(!free.is_empty());
                    create()
                } else {
                    let last = history.and_then(|p| p.front());
                    let wanted_at = |b: &wgpu::Buffer| last.and_then(|l| l.iter().position(|w| w == b));
                    let latest = (0..free.len()).max_by_key(|&i| (wanted_at(&free[i]), i)).expect("a free buffer");
                    free.swap_remove(latest)
                }
            }
        };
        now.entry(class).or_default().push(buffer.clone());
        if let Some(r) = &mut pins.recording {
            r.entry(class).or_default().push(buffer.clone());
        }
        buffer
    }

    /// Returns a buffer for reuse (or parks it, when a step graph binds it).
    pub fn put(&self, buf: wgpu::Buffer) {
        let mut s = self.state.lock().unwrap();
        if !s.pins.count.is_empty() && s.pins.count.contains_key(&buf) {
            s.pins.parked.insert(buf);
            return;
        }
        s.free.entry(buf.size()).or_default().push(buf);
    }

    /// Starts logging the buffers handed out (a step being recorded).
    pub fn start_logging(&self) {
        self.state.lock().unwrap().pins.recording = Some(HashMap::default());
    }

    /// Stops logging; returns the buffers handed out since [`start_logging`](Self::start_logging).
    #[allow(clippy::mutable_key_type)] // see `next_batch`
    pub fn stop_logging(&self) -> HashSet<wgpu::Buffer> {
        let pins = &mut self.state.lock().unwrap().pins;
        let handed = pins.recording.take().unwrap_or_default();
        pins.last_set = handed.values().flatten().cloned().collect();
        pins.last = handed;
        pins.last_set.clone()
    }

    /// Pins `buffers` (a step graph's): those free now are parked, the
    /// others will be when freed.
    pub fn pin(&self, buffers: &[wgpu::Buffer]) {
        let mut s = self.state.lock().unwrap();
        let State { free, pins, .. } = &mut *s;
        for b in buffers {
            *pins.count.entry(b.clone()).or_default() += 1;
            if let Some(free) = free.get_mut(&b.size()) {
                if let Some(i) = free.iter().position(|f| f == b) {
                    free.swap_remove(i);
                    pins.parked.insert(b.clone());
                }
            }
        }
    }

    /// Undoes one [`pin`](Self::pin) of `buffers`: a parked buffer no graph pins any more is free again.
    pub fn unpin(&self, buffers: &[wgpu::Buffer]) {
        let mut s = self.state.lock().unwrap();
        let State { free, pins, .. } = &mut *s;
        for b in buffers {
            let Some(n) = pins.count.get_mut(b) else { continue };
            *n -= 1;
            if *n == 0 {
                pins.count.remove(b);
                if pins.parked.remove(b) {
                    free.entry(b.size()).or_default().push(b.clone());
                }
            }
        }
    }

    /// The first of `buffers` that was freed while pinned (no tensor holds it any more).
    pub fn first_parked<'a>(&self, buffers: &'a [wgpu::Buffer]) -> Option<&'a wgpu::Buffer> {
        let s = self.state.lock().unwrap();
        buffers.iter().find(|b| s.pins.parked.contains(*b))
    }

    /// Starts a new batch's order of requests.
    // A `wgpu::Buffer` hashes and compares by identity, which its interior
    // mutability does not touch.
    #[allow(clippy::mutable_key_type)]
    pub fn next_batch(&self) {
        let mut s = self.state.lock().unwrap();
        let State { now, past, reserved, .. } = &mut *s;
        // The lists are recycled (an order that leaves the history becomes
        // the class's next `now`, emptied): a warm step allocates none.
        for (&class, order) in now.iter_mut() {
            if order.is_empty() {
                continue;
            }
            let batches = past.entry(class).or_default();
            let mut spare = if batches.len() >= HISTORY { batches.pop_back().unwrap_or_default() } else { Vec::new() };
            batches.truncate(HISTORY - 1);
            spare.clear();
            batches.push_front(std::mem::replace(order, spare));
            let all = reserved.entry(class).or_default();
            all.clear();
            all.extend(batches.iter().flatten().cloned());
        }
    }

    /// Drops every pooled buffer (memory goes back to the driver), and the
    /// last recorded step's order (a hint only; pinned and parked buffers
    /// stay with their graphs).
    pub fn clear(&self) -> u64 {
        let mut s = self.state.lock().unwrap();
        let bytes = s.free.values().flatten().map(|b| b.size()).sum();
        let Pins { count, parked, recording, .. } = std::mem::take(&mut s.pins);
        *s = State { pins: Pins { count, parked, recording, ..Pins::default() }, ..State::default() };
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::{size_class, Pool, USAGE};

    fn buffer(dev: &crate::Device) -> wgpu::Buffer {
        let desc = wgpu::BufferDescriptor { label: None, size: 256, usage: USAGE, mapped_at_creation: false };
        dev.gpu_ctx().unwrap().device.create_buffer(&desc)
    }

    /// A batch's k-th request gets the buffer the k-th request of the last
    /// batch got, whatever order the buffers were freed in (handing out the
    /// most recently freed one would reverse them here).
    #[test]
    fn the_kth_request_gets_the_same_buffer_whatever_the_free_order() {
        let Some(dev) = crate::testing::fresh_gpu_or_skip("the_kth_request_gets_the_same_buffer") else { return };
        let pool = Pool::default();
        let first: Vec<wgpu::Buffer> = (0..4).map(|_| pool.acquire(256, || buffer(&dev))).collect();
        for order in [[2, 0, 3, 1], [0, 1, 2, 3], [3, 2, 1, 0]] {
            for i in order {
                pool.put(first[i].clone());
            }
            pool.next_batch();
            let again: Vec<wgpu::Buffer> = (0..4).map(|_| pool.acquire(256, || panic!("no new buffer"))).collect();
            assert!(again == first, "freed in order {order:?}");
        }
    }

    /// A state updated into a fresh buffer every batch (the old one freed
    /// after the new one is taken) alternates between two buffers.
    #[test]
    fn a_state_replaced_every_batch_alternates_between_two_buffers() {
        let Some(dev) = crate::testing::fresh_gpu_or_skip("a_state_replaced_every_batch") else { return };
        let pool = Pool::default();
        let mut state = pool.acquire(256, || buffer(&dev));
        let mut seen = Vec::new();
        for _ in 0..6 {
            pool.next_batch();
            let new = pool.acquire(256, || buffer(&dev));
            pool.put(std::mem::replace(&mut state, new.clone()));
            seen.push(new);
        }
        for (i, b) in seen.iter().enumerate().skip(2) {
            assert!(*b == seen[i - 2] && *b != seen[i - 1], "batch {i}");
        }
    }

    /// A buffer a step graph pins is parked when freed (never handed out
    /// again, and reported as freed) until the graph unpins it.
    #[test]
    fn a_pinned_buffer_is_parked_until_unpinned() {
        let Some(dev) = crate::testing::fresh_gpu_or_skip("a_pinned_buffer_is_parked") else { return };
        let pool = Pool::default();
        let a = pool.acquire(256, || buffer(&dev));
        pool.pin(std::slice::from_ref(&a));
        assert!(pool.first_parked(std::slice::from_ref(&a)).is_none(), "held by its tensor: not parked");
        pool.put(a.clone());
        assert!(pool.first_parked(std::slice::from_ref(&a)) == Some(&a), "freed while pinned: parked");
        let b = pool.acquire(256, || buffer(&dev));
        assert!(b != a, "a parked buffer is not handed out");
        pool.unpin(std::slice::from_ref(&a));
        assert!(pool.first_parked(std::slice::from_ref(&a)).is_none());
        let c = pool.acquire(256, || panic!("the unpinned buffer is free again"));
        assert!(c == a);
    }

    /// A step recorded again is handed the buffers its last recording got,
    /// and other work in between keeps off them.
    #[test]
    fn a_recorded_step_gets_its_last_recordings_buffers() {
        let Some(dev) = crate::testing::fresh_gpu_or_skip("a_recorded_step_gets_its_buffers") else { return };
        let pool = Pool::default();
        pool.start_logging();
        let first: Vec<wgpu::Buffer> = (0..3).map(|_| pool.acquire(256, || buffer(&dev))).collect();
        for b in first.iter().rev() {
            pool.put(b.clone());
        }
        assert_eq!(pool.stop_logging().len(), 3);
        pool.next_batch();
        let other = pool.acquire(256, || buffer(&dev));
        assert!(!first.contains(&other), "other work keeps off the recorded step's buffers");
        pool.put(other);
        pool.next_batch();
        pool.start_logging();
        let again: Vec<wgpu::Buffer> = (0..3).map(|_| pool.acquire(256, || panic!("no new buffer"))).collect();
        pool.stop_logging();
        assert!(again == first, "the same buffers in the same order");
    }

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

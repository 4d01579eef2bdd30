//! [`Batches`]: one epoch of a [`DataLoader`](crate::DataLoader). Workers
//! claim batches in epoch order from a shared counter, at most `depth`
//! ahead of the caller, and leave each result in its slot; the caller takes
//! the slots in order, so the batch sequence cannot depend on which worker
//! finishes first.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crate::{Collate, DataError, Dataset};

/// What every worker of an epoch shares: the dataset, the collate step and
/// the epoch's order.
pub(crate) struct Job<D, C> {
    pub dataset: Arc<D>,
    pub collate: Arc<C>,
    pub order: Vec<usize>,
    pub batch_size: usize,
    /// Batches in the epoch (fewer than `order` fills when the last partial
    /// one is dropped).
    pub count: usize,
}

impl<D: Dataset, C: Collate<D::Item>> Job<D, C> {
    /// Reads and collates batch `k`. A panic is caught here so that it
    /// becomes this batch's error instead of a worker that silently stops.
    fn host(&self, k: usize) -> Result<C::Host, DataError> {
        let start = k * self.batch_size;
        let indices = &self.order[start..(start + self.batch_size).min(self.order.len())];
        // Unwind safety: after a panic the dataset is used again by the next
        // batches; a dataset whose state a panic can break should not panic.
        catch_unwind(AssertUnwindSafe(|| self.collate.collate(self.dataset.get_batch(indices)?)))
            .unwrap_or_else(|payload| Err(DataError::Panic { message: panic_message(payload) }))
            .map_err(|e| e.at_batch(k))
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&str>() {
            Ok(s) => s.to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    }
}

/// The batches of one epoch (see [`DataLoader::epoch`](crate::DataLoader::epoch)).
pub struct Batches<D: Dataset, C: Collate<D::Item>> {
    job: Arc<Job<D, C>>,
    /// None with 0 workers: batches are read in `next`.
    pool: Option<Pool<C::Host>>,
    next: usize,
}

struct Pool<H> {
    shared: Arc<Shared<H>>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared<H> {
    state: Mutex<State<H>>,
    /// Signalled when a slot is filled.
    filled: Condvar,
    /// Signalled when the caller takes a batch (room to claim one more) or
    /// stops the epoch.
    room: Condvar,
}

struct State<H> {
    /// Batches claimed by workers so far; the next claim is batch `claimed`.
    claimed: usize,
    /// Batches the caller has taken.
    taken: usize,
    /// Batches `taken..claimed`: None while a worker is still on it.
    slots: VecDeque<Option<Result<H, DataError>>>,
    stop: bool,
}

impl<H> Shared<H> {
    // A poisoned lock only means a thread panicked while holding it; no code
    // that can panic runs under it, so the state is still consistent.
    fn lock(&self) -> MutexGuard<'_, State<H>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait<'a>(&self, cv: &Condvar, guard: MutexGuard<'a, State<H>>) -> MutexGuard<'a, State<H>> {
        cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// Batches until the epoch is claimed or stopped, at most `depth` ahead.
    fn work<D: Dataset, C: Collate<D::Item, Host = H>>(&self, job: &Job<D, C>, depth: usize) {
        loop {
            let k = {
                let mut s = self.lock();
                while !s.stop && s.claimed < job.count && s.claimed >= s.taken + depth {
                    s = self.wait(&self.room, s);
                }
                if s.stop || s.claimed == job.count {
                    return;
                }
                s.slots.push_back(None);
                s.claimed += 1;
                s.claimed - 1
            };
            let result = job.host(k);
            let mut s = self.lock();
            // Slot k cannot have been taken: the caller waits for it.
            let at = k - s.taken;
            s.slots[at] = Some(result);
            drop(s);
            self.filled.notify_all();
        }
    }

    /// Waits for the oldest claimed batch and takes it.
    fn take(&self) -> Result<H, DataError> {
        let mut s = self.lock();
        loop {
            if let Some(result) = s.slots.front_mut().and_then(Option::take) {
                s.slots.pop_front();
                s.taken += 1;
                drop(s);
                self.room.notify_all();
                return result;
            }
            s = self.wait(&self.filled, s);
        }
    }
}

impl<D, C> Batches<D, C>
where
    D: Dataset + 'static,
    C: Collate<D::Item> + 'static,
    C::Host: 'static,
{
    /// Starts `workers` threads reading batches `first..` at most `depth`
    /// batches ahead (or none with 0 workers).
    pub(crate) fn start(job: Job<D, C>, first: usize, workers: usize, depth: usize) -> Self {
        let job = Arc::new(job);
        let first = first.min(job.count);
        let shared = Arc::new(Shared {
            state: Mutex::new(State { claimed: first, taken: first, slots: VecDeque::new(), stop: false }),
            filled: Condvar::new(),
            room: Condvar::new(),
        });
        // Where the OS refuses threads, fewer workers (or, with none, the
        // caller's thread) read the same batches.
        let threads: Vec<JoinHandle<()>> = (0..workers.min(job.count - first))
            .map_while(|i| {
                let (job, shared) = (job.clone(), shared.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("wgrad-data-worker-{i}"))
                    .spawn(move || shared.work(&job, depth));
                spawned.ok()
            })
            .collect();
        let pool = (!threads.is_empty()).then_some(Pool { shared, threads });
        Batches { job, pool, next: first }
    }
}

impl<D: Dataset, C: Collate<D::Item>> Iterator for Batches<D, C> {
    type Item = Result<C::Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.job.count {
            return None;
        }
        let k = self.next;
        self.next += 1;
        let host = match &self.pool {
            Some(pool) => pool.shared.take(),
            None => self.job.host(k),
        };
        Some(host.and_then(|h| self.job.collate.upload(h).map_err(|e| e.at_batch(k))))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.job.count - self.next;
        (left, Some(left))
    }
}

impl<D: Dataset, C: Collate<D::Item>> ExactSizeIterator for Batches<D, C> {}

impl<D: Dataset, C: Collate<D::Item>> Drop for Batches<D, C> {
    /// Stops the workers and joins them, so that no thread outlives the
    /// epoch; this waits for the batches they are in the middle of.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.shared.lock().stop = true;
            pool.shared.room.notify_all();
            for t in pool.threads {
                // A worker cannot panic (batches' panics are caught), so
                // there is nothing to report here.
                let _ = t.join();
            }
        }
    }
}

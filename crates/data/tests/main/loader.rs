//! The DataLoader over any Dataset: batches independent of the number of
//! workers, errors and panics as the error of their batch, prefetch bounds,
//! and workers stopped when an epoch is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use wgrad_autograd::Device;
use wgrad_data::{epoch_order, DataError, DataLoader, Dataset, ImageItem, ImageSource};

#[derive(Clone, Copy, PartialEq)]
enum Fail {
    Err,
    Panic,
}

/// Items `0..len` as themselves. Counts reads and the threads that made them;
/// item `fail.0` fails as `fail.1` says; reads take `delay` times 0 to 2 by
/// index, so that workers finish out of order.
#[derive(Default)]
struct Numbers {
    len: usize,
    fail: Option<(usize, Fail)>,
    delay: Duration,
    reads: AtomicUsize,
    threads: Mutex<Vec<ThreadId>>,
}

impl Numbers {
    fn new(len: usize) -> Self {
        Numbers { len, ..Default::default() }
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
}

impl Dataset for Numbers {
    type Item = usize;

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> Result<usize, DataError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.threads.lock().unwrap().push(std::thread::current().id());
        std::thread::sleep(self.delay * (i % 3) as u32);
        match self.fail {
            Some((bad, Fail::Err)) if bad == i => Err(DataError::other(format!("item {i} is bad"))),
            Some((bad, Fail::Panic)) if bad == i => panic!("item {i} is broken"),
            _ => Ok(i),
        }
    }
}

type Items = fn(Vec<usize>) -> Result<Vec<usize>, DataError>;

/// A loader handing each batch's indices over as they are.
fn loader(ds: &Arc<Numbers>, batch_size: usize) -> DataLoader<Numbers, Items> {
    DataLoader::with_collate(ds.clone(), batch_size, Ok as Items)
}

/// Waits up to 10 s for `cond`.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn batches_do_not_depend_on_the_number_of_workers() {
    let ds = Arc::new(Numbers { len: 103, delay: Duration::from_micros(300), ..Default::default() });
    for epoch in [0, 1] {
        let order = epoch_order(103, 9, epoch);
        let want: Vec<Vec<usize>> = order.chunks(10).map(|c| c.to_vec()).collect();
        for (workers, prefetch) in [(0, 1), (1, 1), (1, 2), (2, 4), (4, 1), (4, 8), (16, 32)] {
            let l = loader(&ds, 10).seed(9).workers(workers).prefetch(prefetch);
            let epoch = l.epoch(epoch);
            assert_eq!(epoch.len(), 11);
            let got: Vec<Vec<usize>> = epoch.map(Result::unwrap).collect();
            assert_eq!(got, want, "{workers} workers, prefetch {prefetch}");
        }
    }
    // Unshuffled, last partial batch dropped.
    let got: Vec<Vec<usize>> =
        loader(&ds, 25).shuffle(false).drop_last(true).workers(3).epoch(0).map(Result::unwrap).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>().chunks(25).map(|c| c.to_vec()).collect::<Vec<_>>());
    assert_eq!(loader(&Arc::new(Numbers::new(0)), 4).workers(2).epoch(0).count(), 0);
}

/// `epoch_from(e, k)` is the tail of `epoch(e)` from batch k, for every
/// worker count, without reading the skipped batches; errors keep their
/// batch numbers.
#[test]
fn epoch_from_resumes_an_epoch_without_reading_the_skipped_batches() {
    for workers in [0, 1, 3] {
        let ds = Arc::new(Numbers { len: 103, fail: Some((37, Fail::Err)), ..Default::default() });
        let l = loader(&ds, 10).seed(4).workers(workers);
        let full: Vec<Result<Vec<usize>, String>> = l.epoch(2).map(|r| r.map_err(|e| e.to_string())).collect();
        let clean = Arc::new(Numbers::new(103));
        for first in [0, 1, 6, 10, 11, 50] {
            let tail = l.epoch_from(2, first);
            assert_eq!(tail.len(), 11usize.saturating_sub(first), "{workers} workers, from {first}");
            let got: Vec<Result<Vec<usize>, String>> = tail.map(|r| r.map_err(|e| e.to_string())).collect();
            assert_eq!(got, full[first.min(11)..], "{workers} workers, from {first}");
            let reads = clean.reads();
            assert_eq!(loader(&clean, 10).workers(workers).epoch_from(0, first).count(), 11usize.saturating_sub(first));
            let tail_items = 103usize.saturating_sub(10 * first);
            assert_eq!(clean.reads() - reads, tail_items, "{workers} workers: only the tail is read");
        }
    }
}

/// The batch that holds item 37 in epoch 0 of seed 5, batches of 8.
fn batch_of_37() -> usize {
    epoch_order(100, 5, 0).iter().position(|&i| i == 37).unwrap() / 8
}

#[test]
fn an_item_error_is_the_error_of_its_batch_and_the_epoch_goes_on() {
    let want = batch_of_37();
    assert!(want > 0, "the test needs Ok batches before the failing one");
    for workers in [0, 1, 3] {
        let ds = Arc::new(Numbers { len: 100, fail: Some((37, Fail::Err)), ..Default::default() });
        let results: Vec<_> = loader(&ds, 8).seed(5).workers(workers).epoch(0).collect();
        assert_eq!(results.len(), 13, "{workers} workers: every batch has a result");
        assert_eq!(results.iter().take_while(|r| r.is_ok()).count(), want, "{workers} workers");
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        let e = results[want].as_ref().unwrap_err();
        let DataError::Batch { batch, source } = e else { panic!("not a batch error: {e}") };
        assert_eq!(*batch, want);
        assert!(matches!(**source, DataError::Item { index: 37, .. }), "{e}");
        assert_eq!(e.to_string(), format!("batch {want}: item 37: item 37 is bad"));
    }
}

#[test]
fn a_panicking_item_is_the_error_of_its_batch_and_the_epoch_goes_on() {
    let want = batch_of_37();
    for workers in [0, 1, 3] {
        let ds = Arc::new(Numbers { len: 100, fail: Some((37, Fail::Panic)), ..Default::default() });
        let results: Vec<_> = loader(&ds, 8).seed(5).workers(workers).epoch(0).collect();
        assert_eq!(results.len(), 13, "{workers} workers: every batch has a result");
        assert_eq!(results.iter().take_while(|r| r.is_ok()).count(), want, "{workers} workers");
        assert!(results[want + 1..].iter().all(Result::is_ok), "{workers} workers: later batches are read");
        let e = results[want].as_ref().unwrap_err();
        let DataError::Batch { batch, source } = e else { panic!("not a batch error: {e}") };
        assert_eq!(*batch, want);
        assert!(matches!(&**source, DataError::Panic { message } if message == "item 37 is broken"), "{e}");
    }
}

#[test]
fn a_collate_error_is_the_error_of_its_batch() {
    let ds = Arc::new(Numbers::new(20));
    let odd_sums_fail = |items: Vec<usize>| {
        let sum: usize = items.iter().sum();
        if sum % 2 == 1 {
            Err(DataError::other(format!("odd sum {sum}")))
        } else {
            Ok(sum)
        }
    };
    // Batches of 5 unshuffled: sums 10, 35, 60, 85.
    let got: Vec<_> = DataLoader::with_collate(ds, 5, odd_sums_fail)
        .shuffle(false)
        .workers(2)
        .epoch(0)
        .map(|r| r.map_err(|e| e.to_string()))
        .collect();
    assert_eq!(got, vec![Ok(10), Err("batch 1: odd sum 35".into()), Ok(60), Err("batch 3: odd sum 85".into())]);
}

#[test]
fn zero_workers_read_on_the_callers_thread_and_others_do_not() {
    let ds = Arc::new(Numbers::new(30));
    let mut epoch = loader(&ds, 10).workers(0).epoch(0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(ds.reads(), 0, "nothing is read before it is asked for");
    epoch.next().unwrap().unwrap();
    assert_eq!(ds.reads(), 10);
    assert_eq!(epoch.count(), 2);
    let me = std::thread::current().id();
    assert!(ds.threads.lock().unwrap().iter().all(|&t| t == me));

    let ds = Arc::new(Numbers::new(30));
    assert_eq!(loader(&ds, 10).workers(2).epoch(0).count(), 3);
    assert!(ds.threads.lock().unwrap().iter().all(|&t| t != me));
}

#[test]
fn prefetch_bounds_the_batches_read_ahead() {
    let ds = Arc::new(Numbers::new(1000));
    let settled = |n: usize| {
        eventually(&format!("{n} reads"), || ds.reads() >= n);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ds.reads(), n, "reads beyond the prefetch depth");
    };
    let mut epoch = loader(&ds, 10).workers(4).prefetch(3).epoch(0);
    settled(30);
    epoch.next().unwrap().unwrap();
    settled(40);
    drop(epoch);

    // The default is two batches per worker.
    let ds = Arc::new(Numbers::new(1000));
    let _epoch = loader(&ds, 10).workers(2).epoch(0);
    eventually("40 reads", || ds.reads() >= 40);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ds.reads(), 40);
}

#[test]
fn dropping_an_epoch_early_stops_and_joins_the_workers() {
    // 10 ms per batch; 1,000 batches would take 10 s on one thread.
    let ds = Arc::new(Numbers { len: 10_000, delay: Duration::from_micros(1000), ..Default::default() });
    let l = loader(&ds, 10).workers(4).prefetch(4);
    let mut epoch = l.epoch(0);
    epoch.next().unwrap().unwrap();
    epoch.next().unwrap().unwrap();
    let t = Instant::now();
    drop(epoch);
    assert!(t.elapsed() < Duration::from_secs(2), "drop took {:?}", t.elapsed());
    // The workers are gone: their handles on the dataset are released...
    assert_eq!(Arc::strong_count(&ds), 2, "the test's and the loader's handles only");
    // ...and nothing reads any more, beyond the batches claimed when it stopped.
    let reads = ds.reads();
    assert!((20..=60).contains(&reads), "{reads} reads: at most 2 taken + 4 prefetched batches");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(ds.reads(), reads);
}

/// A dataset that reads every batch at once.
struct Ranges {
    gets: AtomicUsize,
    batch_gets: AtomicUsize,
}

impl Dataset for Ranges {
    type Item = usize;

    fn len(&self) -> usize {
        40
    }

    fn get(&self, i: usize) -> Result<usize, DataError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        Ok(i)
    }

    fn get_batch(&self, indices: &[usize]) -> Result<Vec<usize>, DataError> {
        self.batch_gets.fetch_add(1, Ordering::SeqCst);
        Ok(indices.to_vec())
    }
}

#[test]
fn the_loader_reads_whole_batches_when_a_dataset_can() {
    let ds = Arc::new(Ranges { gets: AtomicUsize::new(0), batch_gets: AtomicUsize::new(0) });
    let sums: Vec<usize> = DataLoader::with_collate(ds.clone(), 10, |items: Vec<usize>| Ok(items.iter().sum()))
        .shuffle(false)
        .workers(2)
        .epoch(0)
        .map(Result::unwrap)
        .collect();
    assert_eq!(sums, vec![45, 145, 245, 345]);
    assert_eq!((ds.gets.load(Ordering::SeqCst), ds.batch_gets.load(Ordering::SeqCst)), (0, 4));
}

/// Declares `[1, 2, 2]` images but decodes item 3 to five bytes.
struct Ragged;

impl Dataset for Ragged {
    type Item = ImageItem;

    fn len(&self) -> usize {
        8
    }

    fn get(&self, i: usize) -> Result<ImageItem, DataError> {
        Ok(ImageItem { pixels: vec![i as u8; if i == 3 { 5 } else { 4 }], label: 0 })
    }
}

impl ImageSource for Ragged {
    fn item_shape(&self) -> [usize; 3] {
        [1, 2, 2]
    }
}

#[test]
fn an_image_of_the_wrong_size_is_the_error_of_its_batch() {
    let results: Vec<_> = DataLoader::new(Arc::new(Ragged), 2, &Device::cpu()).shuffle(false).epoch(0).collect();
    assert_eq!(results.iter().map(Result::is_ok).collect::<Vec<_>>(), vec![true, false, true, true]);
    let e = results[1].as_ref().unwrap_err().to_string();
    assert_eq!(e, "batch 1: image 1 of the batch has 5 bytes, but shape [1, 2, 2] needs 4");
    assert_eq!(
        results[2].as_ref().unwrap().images.to_vec(),
        vec![4.0 / 255.0; 4].into_iter().chain(vec![5.0 / 255.0; 4]).collect::<Vec<_>>()
    );
}

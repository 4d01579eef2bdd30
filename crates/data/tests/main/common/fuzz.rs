//! Shared by the fuzz tests of every reader of outside data (this crate's
//! `fuzz_readers` and wgrad-nn's `fuzz_checkpoint`, which includes this file
//! by path): random damage to a valid file, a fixed-seed proptest
//! configuration, and a guard that fails a case which hangs or makes one
//! allocation out of proportion to the bytes it was given.
//!
//! A test binary that includes this module gets its counting global
//! allocator; only threads inside [`guarded`] are measured or capped.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed};

/// Cases per property unless `PROPTEST_CASES` says otherwise (a longer local
/// run: `PROPTEST_CASES=100000 cargo test -p wgrad-data --test main fuzz_readers`).
pub const CASES: u32 = 256;

/// The seed CI uses, so a failure reproduces; `PROPTEST_RNG_SEED` overrides it.
pub const SEED: u64 = 0x5eed_f022;

/// The proptest configuration of every fuzz property: [`CASES`] cases, a
/// fixed seed, and no failure files written into the source tree (a failure
/// prints the minimal input; the regression tests keep the ones found).
pub fn config() -> Config {
    // Default reads PROPTEST_CASES and PROPTEST_RNG_SEED from the environment.
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = CASES;
    }
    if matches!(c.rng_seed, RngSeed::Random) {
        c.rng_seed = RngSeed::Fixed(SEED);
    }
    c.failure_persistence = None;
    c
}

/// Where headers live: most integer mutations land in the first bytes, since
/// that is where sizes, counts and lengths are read from.
const HEAD: usize = 64;

/// Integers a corrupt or malicious header is likely to hold: zero, one, sign
/// and width boundaries, all bits set.
const EDGES: [u64; 12] =
    [0, 1, 2, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 32, i64::MAX as u64, u64::MAX];

/// One change to a file's bytes; positions are fractions of the current length.
#[derive(Clone, Debug)]
pub enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip {
        /// Which byte.
        at: Index,
        /// The bits flipped.
        mask: u8,
    },
    /// Overwrite `width` bytes with an integer, little- or big-endian.
    Int {
        /// Where, within the first [`HEAD`] bytes when `head`.
        at: Index,
        /// Aim at the header.
        head: bool,
        /// The value (truncated to `width`).
        value: u64,
        /// 1, 2, 4 or 8 bytes.
        width: usize,
        /// Byte order.
        big_endian: bool,
    },
    /// Cut the file short.
    Truncate {
        /// The new length.
        at: Index,
    },
    /// Insert bytes, shifting everything after them.
    Insert {
        /// Where.
        at: Index,
        /// What.
        bytes: Vec<u8>,
    },
    /// Remove up to `len` bytes.
    Delete {
        /// From where.
        at: Index,
        /// How many.
        len: usize,
    },
    /// Append bytes at the end.
    Append(Vec<u8>),
}

/// What a fuzz case does to a valid file.
#[derive(Clone, Debug)]
pub enum Damage {
    /// A few mutations in a row.
    Mutate(Vec<Mutation>),
    /// Replace the whole file with random bytes.
    Replace(Vec<u8>),
}

fn int_value() -> impl Strategy<Value = u64> {
    prop_oneof![3 => prop::sample::select(EDGES.to_vec()), 1 => any::<u64>(), 1 => 0u64..4096]
}

/// One random [`Mutation`].
pub fn mutation() -> impl Strategy<Value = Mutation> {
    let bytes = || prop::collection::vec(any::<u8>(), 1..64);
    prop_oneof![
        3 => (any::<Index>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        4 => (any::<Index>(), any::<bool>(), int_value(), prop::sample::select(vec![1usize, 2, 4, 8]), any::<bool>())
            .prop_map(|(at, head, value, width, big_endian)| Mutation::Int { at, head, value, width, big_endian }),
        2 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<Index>(), bytes()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<Index>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => bytes().prop_map(Mutation::Append),
    ]
}

/// Random [`Damage`]: mostly 1 to 4 mutations of the valid file, sometimes
/// a file of random bytes.
pub fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        9 => prop::collection::vec(mutation(), 1..=4).prop_map(Damage::Mutate),
        1 => prop::collection::vec(any::<u8>(), 0..512).prop_map(Damage::Replace),
    ]
}

/// `at` as a position in `0..=len` (the end is a valid insertion point).
fn pos(at: &Index, len: usize) -> usize {
    at.index(len + 1)
}

/// `valid` with `damage` applied.
pub fn apply(valid: &[u8], damage: &Damage) -> Vec<u8> {
    let muts = match damage {
        Damage::Replace(bytes) => return bytes.clone(),
        Damage::Mutate(m) => m,
    };
    let mut b = valid.to_vec();
    for m in muts {
        match m {
            Mutation::Flip { at, mask } if !b.is_empty() => {
                let i = at.index(b.len());
                b[i] ^= mask;
            }
            Mutation::Int { at, head, value, width, big_endian } if b.len() >= *width => {
                let room = b.len() - width;
                let i = if *head { pos(at, room.min(HEAD)) } else { pos(at, room) };
                let bytes = if *big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
                let v = if *big_endian { &bytes[8 - width..] } else { &bytes[..*width] };
                b[i..i + width].copy_from_slice(v);
            }
            Mutation::Truncate { at } => b.truncate(at.index(b.len().max(1))),
            Mutation::Insert { at, bytes } => {
                let i = pos(at, b.len());
                b.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete { at, len } if !b.is_empty() => {
                let i = at.index(b.len());
                b.drain(i..(i + len).min(b.len()));
            }
            Mutation::Append(bytes) => b.extend_from_slice(bytes),
            // Flip, Int and Delete need bytes to work on.
            _ => {}
        }
    }
    b
}

/// Above this a measured thread's allocation fails outright (the process
/// aborts naming the size) instead of taking the machine's memory: no reader
/// of a test file of a few KB has a reason to ask for it.
const HARD_CAP: usize = 1 << 30;

thread_local! {
    /// Largest single allocation of this thread since `guarded` started it;
    /// `None` on threads that are not measured.
    static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The system allocator, measuring the threads `guarded` runs readers on.
struct Counting;

impl Counting {
    /// Records a request; false when it is over [`HARD_CAP`] on a measured thread.
    fn note(size: usize) -> bool {
        // try_with: allocations during thread teardown find no thread-local.
        LARGEST
            .try_with(|l| match l.get() {
                Some(m) => {
                    l.set(Some(m.max(size)));
                    size <= HARD_CAP
                }
                None => true,
            })
            .unwrap_or(true)
    }
}

// SAFETY: every call is forwarded unchanged to `System`, or answered with a
// null pointer, which the GlobalAlloc contract allows for any request.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::note(layout.size()) {
            System.alloc(layout)
        } else {
            std::ptr::null_mut()
        }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::note(layout.size()) {
            System.alloc_zeroed(layout)
        } else {
            std::ptr::null_mut()
        }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::note(new_size) {
            System.realloc(ptr, layout, new_size)
        } else {
            std::ptr::null_mut()
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How long one reader call may take on a file of a few KB before the case
/// counts as a hang (generous: debug builds on a loaded 2-core CI machine).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Runs `f` on a measured thread; returns its result and the largest single
/// allocation it made. Fails the case when `f` takes longer than
/// [`DEADLINE`]; a panic in `f` is re-raised here, so proptest reports it
/// (with the input) as a failure.
pub fn guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, usize) {
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        LARGEST.with(|l| l.set(Some(0)));
        let out = f();
        let largest = LARGEST.with(|l| l.replace(None)).unwrap_or(0);
        // The receiver is gone only after a timeout, which already failed.
        let _ = tx.send(());
        (out, largest)
    });
    match rx.recv_timeout(DEADLINE) {
        // Ok: finished; Disconnected: panicked (join below re-raises it).
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the reader did not return within {DEADLINE:?} (a hang)"),
    }
    worker.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Fails (with `what` and the sizes) when `largest` exceeds `factor` times
/// `input_bytes` plus 1 MiB of fixed buffers: an allocation sized from a
/// header rather than from the data present.
pub fn assert_proportionate(what: &str, largest: usize, input_bytes: usize, factor: usize) {
    let limit = input_bytes.saturating_mul(factor).saturating_add(1 << 20);
    assert!(
        largest <= limit,
        "{what}: one allocation of {largest} bytes for {input_bytes} bytes of input (limit {limit}): sized from a header?"
    );
}

/// Fails unless `message` names `file` (its full path as displayed).
pub fn assert_names(message: &str, file: &std::path::Path) {
    let shown = file.display().to_string();
    assert!(message.contains(&shown), "the error does not name {shown}: {message}");
}

//! Character-level text corpora for language models: a vocabulary of the
//! characters seen, the train/validation split, and batches of
//! (input, next-character target) windows.
//!
//! The repository bundles Shakespeare's tragedies (`datasets/shakespeare`,
//! public domain, see its README) as the default corpus of the `char_lstm`
//! and `tiny_gpt` examples.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use wgrad_autograd::{Device, Tensor};

use crate::DataError;

/// Path of the bundled corpus, relative to the repository root.
pub const BUNDLED_CORPUS: &str = "datasets/shakespeare/tragedies.txt";

/// The bundled corpus's absolute path (found from this crate's location, so
/// examples and tests work from any working directory).
pub fn bundled_corpus() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root).join(BUNDLED_CORPUS)
}

/// Reads a UTF-8 text file; errors name the file.
pub fn read_text(path: impl AsRef<Path>) -> Result<String, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes).map_err(|e| DataError::format(path, format!("not UTF-8 text ({e})")))
}

/// The characters of a corpus, sorted, each mapped to its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
}

impl CharVocab {
    /// Every distinct character of `text`, in code-point order.
    pub fn from_text(text: &str) -> Self {
        CharVocab { chars: text.chars().collect::<BTreeSet<_>>().into_iter().collect() }
    }

    /// The vocabulary with these characters in this order (e.g. as saved by [`as_string`](Self::as_string)).
    ///
    /// # Errors
    /// When a character repeats.
    pub fn from_chars(chars: &str) -> Result<Self, String> {
        let v: Vec<char> = chars.chars().collect();
        let set: BTreeSet<char> = v.iter().copied().collect();
        if set.len() != v.len() {
            return Err("a vocabulary lists a character twice".into());
        }
        Ok(CharVocab { chars: v })
    }

    /// Number of characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// True for an empty vocabulary.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters in id order, as one string (to save next to a checkpoint).
    pub fn as_string(&self) -> String {
        self.chars.iter().collect()
    }

    /// The id of `c`, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<u32> {
        self.chars.binary_search(&c).ok().map(|i| i as u32).or_else(|| {
            // A vocabulary from `from_chars` may not be sorted.
            self.chars.iter().position(|&x| x == c).map(|i| i as u32)
        })
    }

    /// Ids of every character of `text`.
    ///
    /// # Errors
    /// Names the first character that is not in the vocabulary and its position.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        text.chars()
            .enumerate()
            .map(|(i, c)| self.id(c).ok_or_else(|| format!("character {c:?} at position {i} is not in the vocabulary")))
            .collect()
    }

    /// Ids of `text`, skipping characters outside the vocabulary (for
    /// evaluating on other texts); returns the ids and how many were skipped.
    pub fn encode_lossy(&self, text: &str) -> (Vec<u32>, usize) {
        let mut skipped = 0;
        let ids = text
            .chars()
            .filter_map(|c| {
                let id = self.id(c);
                skipped += usize::from(id.is_none());
                id
            })
            .collect();
        (ids, skipped)
    }

    /// The text of `ids` (ids outside the vocabulary become U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().map(|&i| self.chars.get(i as usize).copied().unwrap_or('\u{FFFD}')).collect()
    }
}

/// A token stream split into training and validation parts.
pub struct TextSplit {
    /// The first part.
    pub train: Vec<u32>,
    /// The held-out tail.
    pub val: Vec<u32>,
}

/// Splits `ids` keeping the last `val_fraction` for validation.
///
/// # Panics
/// When `val_fraction` is not in [0, 1).
pub fn split_tail(ids: &[u32], val_fraction: f64) -> TextSplit {
    assert!((0.0..1.0).contains(&val_fraction), "split_tail: val_fraction must be in [0, 1), got {val_fraction}");
    let cut = ids.len() - (ids.len() as f64 * val_fraction).round() as usize;
    TextSplit { train: ids[..cut].to_vec(), val: ids[cut..].to_vec() }
}

/// Inputs `[B, L]` and targets `[B, L]` (U32): row b is `ids[s_b..s_b+L]`
/// and its successor shifted by one, for the given window starts.
///
/// # Panics
/// When a window runs past the end of `ids`.
pub fn windows(ids: &[u32], starts: &[usize], len: usize, device: &Device) -> (Tensor, Tensor) {
    let mut x = Vec::with_capacity(starts.len() * len);
    let mut y = Vec::with_capacity(starts.len() * len);
    for &s in starts {
        assert!(s + len < ids.len(), "windows: window {s}..{} runs past the {} tokens", s + len + 1, ids.len());
        x.extend_from_slice(&ids[s..s + len]);
        y.extend_from_slice(&ids[s + 1..s + len + 1]);
    }
    let shape = [starts.len(), len];
    (Tensor::from_u32(&x, &shape, device), Tensor::from_u32(&y, &shape, device))
}

/// `B` parallel, contiguous streams over `ids` for stateful training
/// (truncated BPTT): stream b reads `ids[b·n .. (b+1)·n]`, so chunk k of
/// every stream continues chunk k − 1 of the same stream, and a recurrent
/// state carried across chunks stays meaningful.
pub struct Streams {
    ids: Vec<u32>,
    batch: usize,
    per_stream: usize,
}

impl Streams {
    /// Splits `ids` into `batch` streams (the remainder is dropped).
    ///
    /// # Panics
    /// When there are fewer than 2 tokens per stream.
    pub fn new(ids: &[u32], batch: usize) -> Self {
        let per_stream = ids.len() / batch.max(1);
        assert!(batch > 0 && per_stream >= 2, "Streams: {} tokens are too few for {batch} streams", ids.len());
        Streams { ids: ids[..per_stream * batch].to_vec(), batch, per_stream }
    }

    /// Number of chunks of length `len` per pass (the last target needs one extra token).
    pub fn chunks(&self, len: usize) -> usize {
        (self.per_stream - 1).div_ceil(len)
    }

    /// Chunk `k` of length ≤ `len` of every stream: inputs and targets `[B, l]`.
    pub fn chunk(&self, k: usize, len: usize, device: &Device) -> (Tensor, Tensor) {
        let start = k * len;
        let l = len.min(self.per_stream - 1 - start);
        let starts: Vec<usize> = (0..self.batch).map(|b| b * self.per_stream + start).collect();
        windows(&self.ids, &starts, l, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocab_round_trips_and_names_unknown_characters() {
        let v = CharVocab::from_text("hello world");
        assert_eq!(v.as_string(), " dehlorw");
        let ids = v.encode("world hello").unwrap();
        assert_eq!(v.decode(&ids), "world hello");
        let e = v.encode("help").unwrap_err();
        assert!(e.contains("'p'") && e.contains("position 3"), "{e}");
        assert_eq!(v.encode_lossy("help!"), (v.encode("hel").unwrap(), 2));
        assert_eq!(CharVocab::from_chars(&v.as_string()).unwrap(), v);
        assert!(CharVocab::from_chars("aba").is_err());
    }

    #[test]
    fn split_keeps_the_tail_and_windows_shift_by_one() {
        let ids: Vec<u32> = (0..100).collect();
        let s = split_tail(&ids, 0.1);
        assert_eq!((s.train.len(), s.val[0]), (90, 90));
        let dev = Device::cpu();
        let (x, y) = windows(&ids, &[0, 10], 3, &dev);
        assert_eq!(x.to_vec_u32(), vec![0, 1, 2, 10, 11, 12]);
        assert_eq!(y.to_vec_u32(), vec![1, 2, 3, 11, 12, 13]);
    }

    #[test]
    fn streams_continue_across_chunks() {
        let ids: Vec<u32> = (0..23).collect();
        let s = Streams::new(&ids, 2); // streams 0..11 and 11..22
        assert_eq!(s.chunks(4), 3);
        let dev = Device::cpu();
        let (x0, _) = s.chunk(0, 4, &dev);
        let (x1, y1) = s.chunk(1, 4, &dev);
        let (x2, y2) = s.chunk(2, 4, &dev);
        assert_eq!(x0.to_vec_u32(), vec![0, 1, 2, 3, 11, 12, 13, 14]);
        assert_eq!(x1.to_vec_u32(), vec![4, 5, 6, 7, 15, 16, 17, 18]);
        assert_eq!(y1.to_vec_u32(), vec![5, 6, 7, 8, 16, 17, 18, 19]);
        assert_eq!((x2.shape().to_vec(), y2.to_vec_u32()), (vec![2, 2], vec![9, 10, 20, 21]));
    }

    #[test]
    fn bundled_corpus_is_there() {
        let text = read_text(bundled_corpus()).unwrap();
        assert!(text.len() > 800_000 && text.starts_with("HAMLET"));
        let e = read_text("/no/such/file.txt").unwrap_err().to_string();
        assert!(e.contains("/no/such/file.txt"), "{e}");
    }
}

//! Truncated back-propagation through time: a long sequence is trained in
//! consecutive chunks; the recurrent state flows from one chunk to the next,
//! but the graph (and so the gradient) is cut at each boundary, bounding the
//! memory and time of one backward pass by the chunk length.

use std::ops::Range;

use crate::layers::recurrent::RecurrentState;
use crate::state::StateDict;

/// Carries a recurrent state across chunks, detached.
///
/// ```text
/// let mut tbptt = TruncatedBptt::new();
/// for range in TruncatedBptt::chunks(stream_len - 1, 64) {
///     let (out, state) = lstm.forward_with_state(&x(range), tbptt.state());
///     tbptt.carry(&state);         // next chunk starts here, without a graph back into this one
///     loss(out).backward(); opt.step(); opt.zero_grad();
/// }
/// ```
#[derive(Default)]
pub struct TruncatedBptt {
    state: Option<RecurrentState>,
}

impl TruncatedBptt {
    /// Starts from the zero state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state the next chunk starts from (`None`: zeros).
    pub fn state(&self) -> Option<&RecurrentState> {
        self.state.as_ref()
    }

    /// Keeps `state`, detached from the graph, for the next chunk.
    pub fn carry(&mut self, state: &RecurrentState) {
        self.state = Some(state.detach());
    }

    /// Forgets the state (a new, unrelated sequence follows).
    pub fn reset(&mut self) {
        self.state = None;
    }

    /// The carried state as tensors `h` and (LSTM) `c`, empty for the zero
    /// state: a run resumed mid-sequence must start its next chunk from the
    /// same state, so it belongs in the checkpoint (`TrainingCheckpoint::extra`).
    pub fn state_dict(&self) -> StateDict {
        let mut s = StateDict::new();
        if let Some(st) = &self.state {
            s.tensors.insert("h".into(), st.h.clone());
            if let Some(c) = &st.c {
                s.tensors.insert("c".into(), c.clone());
            }
        }
        s
    }

    /// Restores [`state_dict`](Self::state_dict)'s state (the zero state
    /// when it holds no `h`).
    pub fn load_state_dict(&mut self, state: &StateDict) {
        self.state =
            state.tensors.get("h").map(|h| RecurrentState { h: h.clone(), c: state.tensors.get("c").cloned() });
    }

    /// Consecutive ranges of at most `chunk` covering `0..len` (the last one
    /// may be shorter).
    ///
    /// # Panics
    /// When `chunk` is 0.
    pub fn chunks(len: usize, chunk: usize) -> impl Iterator<Item = Range<usize>> {
        assert!(chunk > 0, "TruncatedBptt::chunks: chunk length must be positive");
        (0..len).step_by(chunk).map(move |s| s..(s + chunk).min(len))
    }
}

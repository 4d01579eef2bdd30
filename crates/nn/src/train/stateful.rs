//! [`Stateful`]: what a training loop keeps between steps besides the
//! model, optimizer and schedule — a recurrent state carried across
//! batches, a host stream that draws the batches — saved and restored by
//! name so that a resumed run continues exactly
//! ([`Trainer::state`](super::Trainer::state)).

use wgrad_autograd::HostRng;

use super::trainer::BoxError;
use super::TruncatedBptt;
use crate::state::StateDict;

/// State a run carries from step to step that a checkpoint must hold.
pub trait Stateful {
    /// The state now, as tensors and metadata.
    fn state_dict(&self) -> StateDict;

    /// Puts back a state [`state_dict`](Self::state_dict) returned.
    fn load_state_dict(&mut self, state: &StateDict) -> Result<(), BoxError>;
}

/// The carried recurrent state (`h`, and `c` for an LSTM), plus the
/// metadata `carried` (`yes`/`no`: the zero state, as at the start of a
/// pass), so that a checkpoint without the entry (written before the
/// state was saved this way) is an error rather than a silent zero state.
impl Stateful for TruncatedBptt {
    fn state_dict(&self) -> StateDict {
        let mut s = TruncatedBptt::state_dict(self);
        let carried = if s.tensors.contains_key("h") { "yes" } else { "no" };
        s.meta.insert("carried".into(), carried.into());
        s
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<(), BoxError> {
        match state.meta.get("carried").map(String::as_str) {
            Some("yes") if !state.tensors.contains_key("h") => Err("the carried state has no `h` tensor".into()),
            Some("yes" | "no") => {
                TruncatedBptt::load_state_dict(self, state);
                Ok(())
            }
            Some(other) => Err(format!("`carried` is {other:?}, not yes or no").into()),
            None => Err("no `carried` entry for the recurrent state (a checkpoint from before the \
                         Trainer saved it; resuming it would restart from a zero state)"
                .into()),
        }
    }
}

/// A host stream's whole state, its one `u64`, as the metadata `state`
/// (decimal, so the file stays readable and exact).
impl Stateful for HostRng {
    fn state_dict(&self) -> StateDict {
        let mut s = StateDict::new();
        s.meta.insert("state".into(), self.0.to_string());
        s
    }

    fn load_state_dict(&mut self, state: &StateDict) -> Result<(), BoxError> {
        let v = state.meta.get("state").ok_or("no `state` entry for a host stream")?;
        self.0 = v.parse().map_err(|_| format!("a host stream's state is not a u64: {v:?}"))?;
        Ok(())
    }
}

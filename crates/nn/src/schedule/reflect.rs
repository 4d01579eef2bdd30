//! Schedulers' state dicts derived from a field list, as the optimizers'
//! options are (`optim::fused::Field`): each scheduler names its fields once
//! ([`Reflect::fields`]) and says what a loaded value may not be
//! ([`Reflect::check`]); [`save`] and [`load`] do the rest, so no scheduler
//! writes its own save/load code and a new field cannot be forgotten in one
//! of the two.
//!
//! Format (unchanged from the hand-written state dicts, so older checkpoints
//! load): metadata only, `kind` = the scheduler's name, then one entry per
//! field under its name. Floats are written in their shortest round-trip
//! form (`Debug`; `inf` included), so a load restores them bit for bit;
//! lists are comma-separated; choices are lower-case words.

use std::fmt::Debug;
use std::str::FromStr;

use wgrad_autograd::{Error, Result};

use super::Lrs;
use crate::state::StateDict;

/// A scheduler's field, for saving and loading it.
pub(crate) enum Field<'a> {
    /// A step count or step-valued option, at most [`MAX_COUNT`].
    Count(&'a mut usize),
    /// Step counts (milestones), each at most [`MAX_COUNT`].
    Counts(&'a mut Vec<usize>),
    /// A float hyper-parameter or tracked value.
    F64(&'a mut f64),
    /// A switch.
    Bool(&'a mut bool),
    /// One float per parameter group: the saved list must hold as many
    /// values as the scheduler (freshly built on the optimizer) has now.
    PerGroup(&'a mut Vec<f64>),
    /// One of a few named values.
    Choice(&'a mut dyn Choice),
    /// The exact lrs last written (one per group), saved as a list.
    Lrs(&'a mut Lrs),
}

/// An enum saved by name.
pub(crate) trait Choice {
    /// The current value's name.
    fn name(&self) -> &'static str;
    /// Sets the value named `name`; false when no value has that name.
    fn set(&mut self, name: &str) -> bool;
}

/// Implements [`Choice`] for a field-less enum from `Variant => "name"` pairs.
macro_rules! choice {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $crate::schedule::reflect::Choice for $t {
            fn name(&self) -> &'static str {
                match self { $(<$t>::$v => $s),+ }
            }
            fn set(&mut self, name: &str) -> bool {
                match name {
                    $($s => { *self = <$t>::$v; true })+
                    _ => false,
                }
            }
        }
    };
}
pub(crate) use choice;

/// What a scheduler tells [`save`] and [`load`].
pub(crate) trait Reflect: Clone {
    /// The `kind` tag, checked on load.
    const KIND: &'static str;
    /// The name errors of `load_state_dict` carry.
    const WHO: &'static str;
    /// Every field that the state must hold to resume exactly, by its key.
    fn fields(&mut self) -> Vec<(&'static str, Field<'_>)>;
    /// What is out of range among loaded values, if anything; may also put
    /// them in canonical form (sorted milestones).
    fn check(&mut self) -> std::result::Result<(), String>;
}

/// The largest step count or step-valued option a saved schedule may hold:
/// f64 counts exactly up to it, and the schedules' integer arithmetic
/// (`last_epoch + 1`, `2 * t_max`) cannot overflow below it. A damaged
/// checkpoint's larger value is an error on load instead of a panic on a
/// later step. (On 32-bit targets, wasm32: a quarter of `usize::MAX`.)
pub(crate) const MAX_COUNT: usize = {
    let exact_f64 = 1u64 << 53;
    let quarter = usize::MAX as u64 / 4;
    (if exact_f64 < quarter { exact_f64 } else { quarter }) as usize
};

/// [`MAX_COUNT`] as the messages write it.
fn max_count_text() -> String {
    if MAX_COUNT as u64 == 1u64 << 53 {
        "2^53".into()
    } else {
        MAX_COUNT.to_string()
    }
}

fn list<T: Debug>(values: &[T]) -> String {
    values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(",")
}

/// The state dict of `r`.
pub(crate) fn save<R: Reflect>(r: &R) -> StateDict {
    let mut sd = StateDict::new();
    sd.meta.insert("kind".into(), R::KIND.into());
    let mut r = r.clone();
    for (key, field) in r.fields() {
        let value = match field {
            Field::Count(v) => format!("{v:?}"),
            Field::Counts(v) => list(v),
            Field::F64(v) => format!("{v:?}"),
            Field::Bool(v) => format!("{v:?}"),
            Field::PerGroup(v) => list(v),
            Field::Choice(v) => v.name().to_string(),
            Field::Lrs(v) => list(&v.exact),
        };
        sd.meta.insert(key.into(), value);
    }
    sd
}

/// Restores `r` from a state [`save`] wrote; on any error `r` is unchanged.
pub(crate) fn load<R: Reflect>(r: &mut R, sd: &StateDict) -> Result<()> {
    let who = R::WHO;
    let kind: String = get(sd, who, "kind")?;
    if kind != R::KIND {
        return Err(Error::invalid(who, format!("state was saved by a {kind}, not a {}", R::KIND)));
    }
    let mut new = r.clone();
    for (key, field) in new.fields() {
        match field {
            Field::Count(v) => *v = count(who, key, get(sd, who, key)?)?,
            Field::Counts(v) => {
                *v = get_list(sd, who, key)?.into_iter().map(|n| count(who, key, n)).collect::<Result<_>>()?
            }
            Field::F64(v) => *v = get(sd, who, key)?,
            Field::Bool(v) => *v = get(sd, who, key)?,
            Field::PerGroup(v) => *v = per_group(sd, who, key, v.len())?,
            Field::Choice(v) => {
                let name: String = get(sd, who, key)?;
                if !v.set(&name) {
                    return Err(Error::invalid(who, format!("entry {key:?} = {name:?} is not a known value")));
                }
            }
            Field::Lrs(v) => {
                let exact = per_group(sd, who, key, v.len())?;
                *v = Lrs { written: exact.iter().map(|&l| l as f32).collect(), exact };
            }
        }
    }
    new.check().map_err(|m| Error::invalid(who, m))?;
    *r = new;
    Ok(())
}

/// Reads one metadata value.
fn get<T: FromStr>(sd: &StateDict, who: &'static str, key: &str) -> Result<T> {
    let s = sd.meta.get(key).ok_or_else(|| Error::invalid(who, format!("state lacks the entry {key:?}")))?;
    s.parse().map_err(|_| Error::invalid(who, format!("entry {key:?} = {s:?} is malformed")))
}

fn count(who: &'static str, key: &str, n: usize) -> Result<usize> {
    if n > MAX_COUNT {
        return Err(Error::invalid(
            who,
            format!("entry {key:?} = {n} is larger than any run's step count ({})", max_count_text()),
        ));
    }
    Ok(n)
}

/// Reads a comma-separated list.
fn get_list<T: FromStr>(sd: &StateDict, who: &'static str, key: &str) -> Result<Vec<T>> {
    let s = sd.meta.get(key).ok_or_else(|| Error::invalid(who, format!("state lacks the entry {key:?}")))?;
    if s.is_empty() {
        return Ok(vec![]);
    }
    s.split(',')
        .map(|v| v.parse().map_err(|_| Error::invalid(who, format!("entry {key:?} = {s:?} is malformed"))))
        .collect()
}

/// Reads a list of floats that must hold one value per group.
fn per_group(sd: &StateDict, who: &'static str, key: &str, groups: usize) -> Result<Vec<f64>> {
    let v: Vec<f64> = get_list(sd, who, key)?;
    if v.len() != groups {
        return Err(Error::invalid(
            who,
            format!("entry {key:?} holds {} values but the scheduler drives {groups} parameter groups", v.len()),
        ));
    }
    Ok(v)
}

//! Mixed-precision loss scaling on the device (`shaders/amp.wgsl`): the
//! device half of `wgrad-nn`'s `GradScaler`.
//!
//! A scaled loss produces gradients `scale` times too large; before the
//! optimizer sees them they are multiplied by `1/scale`, and a step whose
//! gradients overflowed (any inf or NaN) must be skipped. The scaler's whole
//! state is one small device buffer ([`state_words`]): the scale, its
//! inverse, the overflow flag, the growth count and the last verdict. The
//! three kernels read and write it there, so a training step needs nothing
//! back from the device: [`unscale_and_check`] per gradient, [`gate`] to
//! let an optimizer's update kernels skip the step on the device, and
//! [`update_scale`] to back off or grow the scale for the next step.

use super::{dispatch, groups, run, Kind, Params, ParamsDecl};
use crate::kernels::amp as twin;
pub use crate::kernels::amp::{FOUND_INF, INV_SCALE, SCALE, STATE_WORDS, TRACKER, VERDICT};
use crate::{Buffer, Error, Result};

/// `amp.wgsl`'s `Params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "amp",
    fields: &[
        ("n", Kind::U32),
        ("interval", Kind::U32),
        ("row_words", Kind::U32),
        ("skip_word", Kind::U32),
        ("growth", Kind::F32),
        ("backoff", Kind::F32),
        ("inv_growth", Kind::F32),
        ("inv_backoff", Kind::F32),
    ],
};

/// `amp_unscale.wgsl`'s `Params`.
pub(crate) const UNSCALE_PARAMS: ParamsDecl = ParamsDecl {
    shader: "amp_unscale",
    fields: &[
        ("n", Kind::U32),
        ("end0", Kind::U32),
        ("end1", Kind::U32),
        ("end2", Kind::U32),
        ("end3", Kind::U32),
        ("end4", Kind::U32),
        ("end5", Kind::U32),
        ("end6", Kind::U32),
    ],
};

/// Gradients one launch of `amp_unscale.wgsl` unscales.
const SEVEN: usize = 7;

/// The words of a state buffer for `scale` and `tracker`, no overflow
/// found: the inverse scale computed as PyTorch does
/// (`scale.double().reciprocal().float()`).
pub fn state_words(scale: f32, tracker: u32) -> [u32; STATE_WORDS] {
    let mut w = [0u32; STATE_WORDS];
    w[SCALE] = scale.to_bits();
    w[INV_SCALE] = ((1.0 / scale as f64) as f32).to_bits();
    w[TRACKER] = tracker;
    w
}

/// A scale factor the device applies exactly as PyTorch does in double
/// precision: a power of two whose reciprocal is an f32 too.
pub fn is_exact_factor(f: f64) -> bool {
    f > 0.0
        && f.is_finite()
        && f.log2().fract() == 0.0
        && (f as f32) as f64 == f
        && ((1.0 / f) as f32) as f64 == 1.0 / f
}

/// `amp.wgsl`'s `Params`, every member in order (the kernels ignore the
/// ones they do not use).
fn params(n: usize, interval: u32, (row_words, skip_word): (usize, usize), (growth, backoff): (f64, f64)) -> Params {
    let f = |v: f64| v as f32;
    Params::of(&PARAMS)
        .set_u32("n", n)
        .set_u32("interval", interval as usize)
        .set_u32("row_words", row_words)
        .set_u32("skip_word", skip_word)
        .set_f32("growth", f(growth))
        .set_f32("backoff", f(backoff))
        .set_f32("inv_growth", f(1.0 / growth))
        .set_f32("inv_backoff", f(1.0 / backoff))
}

fn check_state(op: &'static str, state: &Buffer, other: &Buffer, what: &str) -> Result<()> {
    state.check_len(op, "state", STATE_WORDS, 4)?;
    if state.same_as(other) {
        return Err(Error::invalid(op, format!("the {what} and the state must be two different buffers")));
    }
    Buffer::check_same_device(op, state.device(), &[state, other])
}

/// Multiplies the first `n` f32 of `grad` in place by the state's inverse
/// scale and sets its overflow flag when any of them (before scaling) is
/// NaN or ±inf: `torch._amp_foreach_non_finite_check_and_unscale_` for one
/// tensor. The flag is only ever set here, so it collects a whole step's
/// verdict; [`update_scale`] clears it. As in PyTorch, an inverse scale of
/// exactly 1 leaves the values untouched and non-finite values are scaled
/// like any other.
///
/// Errors: buffers shorter than stated, on different devices, or one
/// buffer passed as both.
pub fn unscale_and_check(grad: &Buffer, n: usize, state: &Buffer) -> Result<()> {
    check_gradient(grad, n, state)?;
    unscale_checked(grad, n, state)
}

/// The op name the unscaling errors carry.
const UNSCALE: &str = "unscale_and_check";

/// The argument checks of [`unscale_and_check`].
fn check_gradient(grad: &Buffer, n: usize, state: &Buffer) -> Result<()> {
    super::check_u32(UNSCALE, n)?;
    grad.check_len(UNSCALE, "gradient", n, 4)?;
    check_state(UNSCALE, state, grad, "gradient")
}

/// [`unscale_and_check`] on checked arguments.
fn unscale_checked(grad: &Buffer, n: usize, state: &Buffer) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    run(
        grad.device(),
        |g| {
            let params = params(n, 0, (0, 0), (1.0, 1.0));
            dispatch(g, "amp", "unscale_and_check", &[], &params, &[], &[state, grad], groups(n, 256))
        },
        || {
            twin::unscale_and_check(&mut state.host_mut(), &mut grad.host_mut()[..n]);
        },
    )
}

/// [`unscale_and_check`] for every `(gradient, n)` of `grads`, with the
/// same values and verdict, in a seventh of the launches: each full group
/// of seven gradients in one launch (`amp_unscale.wgsl`), the rest one
/// launch each.
///
/// Errors: as [`unscale_and_check`] for any gradient (nothing is launched
/// then), or one gradient buffer listed twice.
pub fn unscale_and_check_all(grads: &[(&Buffer, usize)], state: &Buffer) -> Result<()> {
    for (i, &(grad, n)) in grads.iter().enumerate() {
        check_gradient(grad, n, state)?;
        if grads[..i].iter().any(|(other, _)| other.same_as(grad)) {
            return Err(Error::invalid(UNSCALE, "a gradient buffer is listed twice"));
        }
    }
    let live: smallvec::SmallVec<[(&Buffer, usize); 64]> = grads.iter().copied().filter(|&(_, n)| n > 0).collect();
    let mut groups_of = live.chunks_exact(SEVEN);
    for group in &mut groups_of {
        let mut end = 0;
        let ends: smallvec::SmallVec<[usize; SEVEN]> = group
            .iter()
            .map(|&(_, n)| {
                end += n;
                end
            })
            .collect();
        let total = ends[SEVEN - 1];
        super::check_u32(UNSCALE, total)?;
        run(
            state.device(),
            |g| {
                let mut params = Params::of(&UNSCALE_PARAMS).set_u32("n", total);
                for (k, &end) in ends.iter().enumerate() {
                    params = params.set_u32(["end0", "end1", "end2", "end3", "end4", "end5", "end6"][k], end);
                }
                let mut outputs: smallvec::SmallVec<[&Buffer; 8]> = smallvec::smallvec![state];
                outputs.extend(group.iter().map(|&(b, _)| b));
                dispatch(g, "amp_unscale", "unscale_seven", &[], &params, &[], &outputs, groups(total, 256))
            },
            || {
                for &(grad, n) in group {
                    twin::unscale_and_check(&mut state.host_mut(), &mut grad.host_mut()[..n]);
                }
            },
        )?;
    }
    for &(grad, n) in groups_of.remainder() {
        unscale_checked(grad, n, state)?;
    }
    Ok(())
}

/// Fills each of the first `rows` rows (`row_words` words each) of `table`,
/// an optimizer's scalar table, from `choices` and marks it: the row comes
/// from the first `rows` rows of `choices` (the scalars for "the last gated
/// step was applied") when the row's word `skip_word` is 0, else from the
/// next `rows` rows (for "it was skipped"); then word `skip_word` is set
/// to 1 when the state's overflow flag is set, else 0, and the update
/// kernels skip the step on the device (`ops::optim`). So the host writes
/// a step's scalars without knowing whether the device applied the last
/// one (its skip word says), and reads that verdict a step later.
///
/// Errors: tables shorter than stated, on another device, or the state itself.
pub fn gate(
    table: &Buffer,
    choices: &Buffer,
    rows: usize,
    (row_words, skip_word): (usize, usize),
    state: &Buffer,
) -> Result<()> {
    const OP: &str = "gate";
    if skip_word >= row_words {
        return Err(Error::invalid(OP, format!("skip word {skip_word} is outside a row of {row_words} words")));
    }
    super::check_u32(OP, 2 * rows * row_words)?;
    table.check_len(OP, "table", rows * row_words, 4)?;
    choices.check_len(OP, "choices", 2 * rows * row_words, 4)?;
    check_state(OP, state, table, "table")?;
    check_state(OP, state, choices, "choices")?;
    if table.same_as(choices) {
        return Err(Error::invalid(OP, "the table and its choices must be two different buffers"));
    }
    if rows == 0 {
        return Ok(());
    }
    run(
        table.device(),
        |g| {
            let params = params(rows, 0, (row_words, skip_word), (1.0, 1.0));
            dispatch(g, "amp", "gate", &[], &params, &[], &[state, table, choices], groups(rows, 256))
        },
        || {
            let found = state.host()[FOUND_INF];
            twin::gate(found, &mut table.host_mut(), &choices.host(), rows, (row_words, skip_word));
        },
    )
}

/// `torch._amp_update_scale_` on the state: after an overflow the scale is
/// multiplied by `backoff` and the tracker restarts; otherwise the tracker
/// counts one more clean step and on reaching `interval` (never when 0) the
/// scale is multiplied by `growth` unless that makes it infinite, and the
/// tracker restarts. The inverse scale follows; the overflow flag is
/// cleared for the next step and its value kept as the verdict. One launch
/// of one thread.
///
/// Errors: factors that are not exact powers of two ([`is_exact_factor`]:
/// elsewhere the f32 products would not be PyTorch's double ones), a short
/// state.
pub fn update_scale(state: &Buffer, growth: f64, backoff: f64, interval: u32) -> Result<()> {
    const OP: &str = "update_scale";
    if !is_exact_factor(growth) || !is_exact_factor(backoff) {
        return Err(Error::invalid(OP, format!("factors {growth} and {backoff} must be powers of two")));
    }
    state.check_len(OP, "state", STATE_WORDS, 4)?;
    run(
        state.device(),
        |g| {
            let params = params(0, interval, (0, 0), (growth, backoff));
            dispatch(g, "amp", "update_scale", &[], &params, &[], &[state], 1)
        },
        || {
            twin::update_scale(&mut state.host_mut(), (growth, backoff), interval);
        },
    )
}

//! Loss scaling's reference twins (`ops/amp.rs` has the launches and the
//! scaler's story) and the layout of the state buffer both backends share.

/// Words of a scaler state buffer (`ops::amp::state_words`).
pub const STATE_WORDS: usize = 8;
/// Index of the scale (f32 bits) in a state buffer.
pub const SCALE: usize = 0;
/// Index of the inverse scale (f32 bits).
pub const INV_SCALE: usize = 1;
/// Index of the overflow flag (f32 0.0 or 1.0), set by `unscale_and_check`.
pub const FOUND_INF: usize = 2;
/// Index of the growth tracker (u32): clean steps since the scale changed.
pub const TRACKER: usize = 3;
/// Index of the last `update_scale`'s verdict (the flag it cleared).
pub const VERDICT: usize = 4;

/// `torch._amp_foreach_non_finite_check_and_unscale_` for one tensor:
/// multiplies `grad` (f32 bits) by the state's inverse scale, unless that
/// is exactly 1, and sets the state's overflow flag when any value was NaN
/// or ±inf before scaling.
pub(crate) fn unscale_and_check(st: &mut [u32], grad: &mut [u32]) {
    let s = f32::from_bits(st[INV_SCALE]);
    let mut found = false;
    for w in grad {
        let v = f32::from_bits(*w);
        found |= !v.is_finite();
        if s != 1.0 {
            *w = (v * s).to_bits();
        }
    }
    if found {
        st[FOUND_INF] = 1.0f32.to_bits();
    }
}

/// An optimizer's scalar table gated on the overflow flag `found_inf`
/// (the state's word): each of the first `rows` rows of `table`
/// (`row_words` words) is copied from row `r` of `choices` when its word
/// `skip_word` is 0, else from row `rows + r`; then that word becomes 1
/// when `found_inf` is set, else 0.
pub(crate) fn gate(
    found_inf: u32,
    table: &mut [u32],
    choices: &[u32],
    rows: usize,
    (row_words, skip_word): (usize, usize),
) {
    let skip = u32::from(found_inf != 0);
    for r in 0..rows {
        let at = r * row_words;
        let from = at + if table[at + skip_word] != 0 { rows * row_words } else { 0 };
        table[at..at + row_words].copy_from_slice(&choices[from..from + row_words]);
        table[at + skip_word] = skip;
    }
}

/// `torch._amp_update_scale_` on the state `st`: back off after an
/// overflow, grow after `interval` clean steps (never when 0, nor to
/// infinity), the inverse scale multiplied alongside by the f32 reciprocal
/// factor; the overflow flag moves to the verdict word and is cleared.
pub(crate) fn update_scale(st: &mut [u32], (growth, backoff): (f64, f64), interval: u32) {
    let f = |v: f64| v as f32;
    let found = st[FOUND_INF];
    st[VERDICT] = found;
    st[FOUND_INF] = 0;
    let (mut scale, mut inv) = (f32::from_bits(st[SCALE]), f32::from_bits(st[INV_SCALE]));
    if found != 0 {
        scale *= f(backoff);
        inv *= f(1.0 / backoff);
        st[TRACKER] = 0;
    } else {
        let successful = st[TRACKER].saturating_add(1);
        if successful == interval {
            let grown = scale * f(growth);
            if grown.is_finite() {
                scale = grown;
                inv *= f(1.0 / growth);
            }
            st[TRACKER] = 0;
        } else {
            st[TRACKER] = successful;
        }
    }
    st[SCALE] = scale.to_bits();
    st[INV_SCALE] = inv.to_bits();
}

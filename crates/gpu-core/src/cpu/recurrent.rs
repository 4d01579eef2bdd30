//! Fast recurrent cell steps: the reference's gate math in f32 (as the GPU
//! kernel does; the reference twin works in f64), batch rows over all cores.
//! Each row is computed from read-only views into a scratch row, then the
//! rows are stored into their slots of the sequence buffers, so no two tasks
//! write one buffer.

use rayon::prelude::*;

use crate::kernels::recurrent::{Dims, RecurrentKind, SAVED};

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// tanh from one `exp` (glibc's `tanhf` goes through `expm1f` and was a
/// fifth of an LSTM step): a Taylor series where `(e − 1)/(e + 1)` would
/// cancel, ±1 where `e` would overflow; within about 1e-6 relative of
/// `f32::tanh`, NaN in, NaN out.
fn tanh(v: f32) -> f32 {
    let a = v.abs();
    if a < 0.0625 {
        let v2 = v * v;
        v * (1.0 - v2 * (1.0 / 3.0 - v2 * (2.0 / 15.0)))
    } else if a > 9.0 {
        1.0f32.copysign(v)
    } else {
        let e = (2.0 * v).exp();
        (e - 1.0) / (e + 1.0)
    }
}

/// Runs `row(b, scratch_row)` for every batch row into `B` scratch rows of
/// `width`, on all cores when the step is large enough to pay for it.
fn rows(d: &Dims, width: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut scratch = vec![0.0; d.batch * width];
    if d.batch * width < 4096 || rayon::current_num_threads() == 1 {
        scratch.chunks_exact_mut(width).enumerate().for_each(|(b, s)| row(b, s));
    } else {
        scratch.par_chunks_exact_mut(width).enumerate().for_each(|(b, s)| row(b, s));
    }
    scratch
}

/// One forward step at time `t` (see `ops::recurrent::cell_forward`):
/// `xs` = xw, `hws` = h_prev W_hhᵀ, `bs` = b_hh; writes the new h (and c)
/// into `st` and the gates into `sv`.
pub(crate) fn forward(d: &Dims, t: usize, xs: &[f32], hws: &[f32], bs: Option<&[f32]>, st: &mut [f32], sv: &mut [f32]) {
    let (h, gh, bh) = (d.hidden, d.gh(), d.bh());
    let (prev, out) = d.slots(t);
    let c_off = (d.steps + 1) * bh;
    // Scratch row: h | c | gates (SAVED · h).
    let width = (2 + SAVED) * h;
    let states: &[f32] = st;
    let scratch = rows(d, width, |b, s| {
        let (hn, rest) = s.split_at_mut(h);
        let (cn, gates) = rest.split_at_mut(h);
        let xrow = &xs[(t * d.batch + b) * gh..][..gh];
        let hrow = &hws[b * gh..][..gh];
        let a = |k: usize, j: usize| xrow[k * h + j] + hrow[k * h + j] + bs.map_or(0.0, |bs| bs[k * h + j]);
        let hp = &states[prev * bh + b * h..][..h];
        // Only the LSTM's states hold cell values.
        let cp = |j: usize| states[c_off + prev * bh + b * h + j];
        for j in 0..h {
            hn[j] = match d.kind {
                RecurrentKind::RnnTanh => tanh(a(0, j)),
                RecurrentKind::RnnRelu => a(0, j).max(0.0),
                RecurrentKind::Lstm => {
                    let (ig, fg) = (sigmoid(a(0, j)), sigmoid(a(1, j)));
                    let (gg, og) = (tanh(a(2, j)), sigmoid(a(3, j)));
                    let c = fg * cp(j) + ig * gg;
                    cn[j] = c;
                    for (k, v) in [ig, fg, gg, og].into_iter().enumerate() {
                        gates[k * h + j] = v;
                    }
                    og * tanh(c)
                }
                RecurrentKind::Gru => {
                    let (rg, zg) = (sigmoid(a(0, j)), sigmoid(a(1, j)));
                    let hn = hrow[2 * h + j] + bs.map_or(0.0, |bs| bs[2 * h + j]);
                    let n = tanh(xrow[2 * h + j] + rg * hn);
                    for (k, v) in [rg, zg, n, hn].into_iter().enumerate() {
                        gates[k * h + j] = v;
                    }
                    (1.0 - zg) * n + zg * hp[j]
                }
            };
        }
    });
    for (b, s) in scratch.chunks_exact(width).enumerate() {
        st[out * bh + b * h..][..h].copy_from_slice(&s[..h]);
        if d.kind == RecurrentKind::Lstm {
            st[c_off + out * bh + b * h..][..h].copy_from_slice(&s[h..2 * h]);
        }
        if matches!(d.kind, RecurrentKind::Lstm | RecurrentKind::Gru) {
            sv[(t * d.batch + b) * SAVED * h..][..SAVED * h].copy_from_slice(&s[2 * h..]);
        }
    }
}

/// Read-only inputs of one backward step.
pub(crate) struct BackwardIn<'a> {
    /// `dy`, `[T, B, H]`.
    pub dys: &'a [f32],
    /// The previous step's `dhw @ W_hh`, if any.
    pub rec: Option<&'a [f32]>,
    /// The forward's states.
    pub st: &'a [f32],
    /// The forward's saved gates (LSTM, GRU).
    pub sv: Option<&'a [f32]>,
}

/// One backward step at time `t` (see `ops::recurrent::cell_backward`):
/// writes `dx` (= dxw), `dhw` (GRU) and the carries `ca` (dh | dc).
pub(crate) fn backward(d: &Dims, t: usize, i: &BackwardIn, dx: &mut [f32], dhw: Option<&mut [f32]>, ca: &mut [f32]) {
    let (h, gh, bh) = (d.hidden, d.gh(), d.bh());
    let (prev, out) = d.slots(t);
    let c_off = (d.steps + 1) * bh;
    // Scratch row: dx (gh) | dhw (gh) | dh carry (h) | dc carry (h).
    let width = 2 * gh + 2 * h;
    let carry: &[f32] = ca;
    let scratch = rows(d, width, |b, s| {
        let (sdx, rest) = s.split_at_mut(gh);
        let (sdh, rest) = rest.split_at_mut(gh);
        let (cah, cac) = rest.split_at_mut(h);
        let row = b * h;
        let gate =
            |k: usize, j: usize| i.sv.expect("LSTM and GRU save gates")[(t * d.batch + b) * SAVED * h + k * h + j];
        for j in 0..h {
            let dh = i.dys[t * bh + row + j] + carry[row + j] + i.rec.map_or(0.0, |r| r[row + j]);
            match d.kind {
                RecurrentKind::RnnTanh => {
                    let y = i.st[out * bh + row + j];
                    sdx[j] = dh * (1.0 - y * y);
                }
                RecurrentKind::RnnRelu => sdx[j] = if i.st[out * bh + row + j] > 0.0 { dh } else { 0.0 },
                RecurrentKind::Lstm => {
                    let (ig, fg, gg, og) = (gate(0, j), gate(1, j), gate(2, j), gate(3, j));
                    let tc = tanh(i.st[c_off + out * bh + row + j]);
                    let dc = carry[bh + row + j] + dh * og * (1.0 - tc * tc);
                    let cp = i.st[c_off + prev * bh + row + j];
                    sdx[j] = dc * gg * ig * (1.0 - ig);
                    sdx[h + j] = dc * cp * fg * (1.0 - fg);
                    sdx[2 * h + j] = dc * ig * (1.0 - gg * gg);
                    sdx[3 * h + j] = dh * tc * og * (1.0 - og);
                    cac[j] = dc * fg;
                }
                RecurrentKind::Gru => {
                    let (rg, zg, n, hn) = (gate(0, j), gate(1, j), gate(2, j), gate(3, j));
                    let dn = dh * (1.0 - zg) * (1.0 - n * n);
                    let dr = dn * hn * rg * (1.0 - rg);
                    let dz = dh * (i.st[prev * bh + row + j] - n) * zg * (1.0 - zg);
                    for (k, (vx, vh)) in [(dr, dr), (dz, dz), (dn, dn * rg)].into_iter().enumerate() {
                        sdx[k * h + j] = vx;
                        sdh[k * h + j] = vh;
                    }
                    cah[j] = dh * zg;
                }
            }
        }
    });
    let mut dhw = dhw;
    for (b, s) in scratch.chunks_exact(width).enumerate() {
        dx[(t * d.batch + b) * gh..][..gh].copy_from_slice(&s[..gh]);
        if let (RecurrentKind::Gru, Some(dhw)) = (d.kind, dhw.as_deref_mut()) {
            dhw[(t * d.batch + b) * gh..][..gh].copy_from_slice(&s[gh..2 * gh]);
        }
        // The dh carry is consumed (zero) except where the GRU passes one on;
        // the LSTM's dc carry moves to the previous step.
        ca[b * h..][..h].copy_from_slice(&s[2 * gh..2 * gh + h]);
        if d.kind == RecurrentKind::Lstm {
            ca[bh + b * h..][..h].copy_from_slice(&s[2 * gh + h..]);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The one-`exp` tanh against std's across its three branches, both
    /// signs, the branch edges, huge values and NaN.
    #[test]
    fn tanh_matches_std() {
        let mut v = -12.0f32;
        while v <= 12.0 {
            for x in [v, v * 1e-3, v * 1e-6] {
                let (got, want) = (super::tanh(x), x.tanh());
                assert!((got - want).abs() <= 2e-6 * want.abs().max(1e-30), "tanh({x}) = {got}, std {want}");
            }
            v += 0.0137;
        }
        for x in [0.0625f32, -0.0625, 9.0, -9.0, 1e30, -1e30, 0.0, -0.0] {
            assert!((super::tanh(x) - x.tanh()).abs() <= 2e-6 * x.tanh().abs(), "tanh({x})");
        }
        assert!(super::tanh(f32::NAN).is_nan());
        assert_eq!(super::tanh(-0.0).to_bits(), (-0.0f32).to_bits());
    }
}

//! Fast recurrent cell steps: the reference's gate math in f32 (as the GPU
//! kernel does; the reference twin works in f64), batch rows over all cores.
//! Each row is computed from read-only views into a scratch row, then the
//! rows are stored into their slots of the sequence buffers, so no two tasks
//! write one buffer. The LSTM's rows are vector loops compiled per SIMD
//! level (`simd.rs`), with the branch-free `exp` of `fast_math.rs`.

use rayon::prelude::*;

use super::gemm::Mat;
use super::gemm_packed_a::{suits, PackedA, PackedB};

use super::simd::multiversion;
use crate::kernels::fast_math::{sigmoid, tanh};
use crate::kernels::recurrent::{BackwardIn, RecurrentKind, SeqDims, SAVED};

thread_local! {
    /// The last step's scratch rows, for the next step: a fresh vector per
    /// step (200 KB for the LSTM bench) cost its page faults every step.
    static SPARE: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `row(b, scratch_row)` for every batch row into `B` scratch rows of
/// `width`, on all cores when the step is large enough to pay for it; hand
/// the rows back with [`done`].
fn rows(d: &SeqDims, width: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut scratch = SPARE.take();
    scratch.clear();
    scratch.resize(d.batch * width, 0.0);
    if d.batch * width < 4096 || rayon::current_num_threads() == 1 {
        scratch.chunks_exact_mut(width).enumerate().for_each(|(b, s)| row(b, s));
    } else {
        scratch.par_chunks_exact_mut(width).enumerate().for_each(|(b, s)| row(b, s));
    }
    scratch
}

/// Keeps `scratch` for the next step's [`rows`].
fn done(scratch: Vec<f32>) {
    SPARE.set(scratch);
}

/// One forward step at time `t` (see `ops::recurrent::cell_forward`):
/// `xs` = xw, `hws` = h_prev W_hhᵀ, `bs` = b_hh; writes the new h (and c)
/// into `st` and the gates into `sv`.
pub(crate) fn forward(
    d: &SeqDims,
    t: usize,
    xs: &[f32],
    hws: &[f32],
    bs: Option<&[f32]>,
    st: &mut [f32],
    sv: &mut [f32],
) {
    let (h, gh, bh) = (d.hidden, d.gh(), d.bh());
    let (prev, out) = d.slots(t);
    let c_off = d.cell_offset();
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
        if d.kind == RecurrentKind::Lstm {
            // Only the LSTM's states hold cell values.
            let cp = &states[c_off + prev * bh + b * h..][..h];
            return lstm_row(xrow, hrow, bs, cp, hn, cn, &mut gates[..4 * h]);
        }
        for j in 0..h {
            hn[j] = match d.kind {
                RecurrentKind::RnnTanh => tanh(a(0, j)),
                RecurrentKind::RnnRelu => crate::kernels::unary::relu(a(0, j)),
                RecurrentKind::Lstm => unreachable!("LSTM rows run lstm_row"),
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
    done(scratch);
}

/// An LSTM's whole forward sequence with the batch rows split over the
/// cores once: each task runs its rows through every step (`h_prev W_hhᵀ`
/// for its rows, then their cells), so no step waits on another thread and
/// a task's rows stay in its cache. Rows of the batch are independent in
/// the forward pass, and each row's product and cell are the per-step
/// path's, so the bits are [`forward`]'s. `w_hh` is `W_hh`, row-major
/// `[4H, H]`; `xs` = xw for all steps; writes every step's h and c into
/// `st` and gates into `sv`.
pub(crate) fn lstm_forward_sequence(
    d: &SeqDims,
    xs: &[f32],
    w_hh: &[f32],
    bs: Option<&[f32]>,
    st: &mut [f32],
    sv: &mut [f32],
) {
    let (h, gh, bh, batch) = (d.hidden, d.gh(), d.bh(), d.batch);
    let c_off = d.cell_offset();
    assert!(d.kind == RecurrentKind::Lstm && w_hh.len() >= h * gh, "wgrad internal: lstm_forward_sequence operands");
    assert!(st.len() >= c_off + (d.steps + 1) * bh && sv.len() >= d.steps * batch * SAVED * h);
    assert!(xs.len() >= d.steps * batch * gh);
    let per = batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let w = StepWeight::new(Mat { data: w_hh, rs: 1, cs: h }, (h, gh), per);
    let (st, sv) = (Rows::new(st), Rows::new(sv));
    (0..batch.div_ceil(per)).into_par_iter().for_each(|task| {
        let rows = task * per..((task + 1) * per).min(batch);
        let (mut hw, mut packed) = (vec![0.0f32; rows.len() * gh], None);
        for i in 0..d.steps {
            let t = d.time(i);
            let (prev, out) = d.slots(t);
            // SAFETY (every `Rows` access below): this task alone touches
            // batch rows `rows` of every slot of `st` and of every step of
            // `sv`, and reads slot `prev` while it writes slot `out`.
            let h_prev = unsafe { st.get(prev * bh + rows.start * h, rows.len() * h) };
            w.product(h_prev, rows.len(), &mut packed, &mut hw);
            for (j, b) in rows.clone().enumerate() {
                let (hn, cn, gates, cp) = unsafe {
                    (
                        st.get_mut(out * bh + b * h, h),
                        st.get_mut(c_off + out * bh + b * h, h),
                        sv.get_mut((t * batch + b) * SAVED * h, 4 * h),
                        st.get(c_off + prev * bh + b * h, h),
                    )
                };
                lstm_row(&xs[(t * batch + b) * gh..][..gh], &hw[j * gh..][..gh], bs, cp, hn, cn, gates);
            }
        }
    });
}

/// The backward pass of [`lstm_forward_sequence`], its rows split over the
/// cores the same way: per step each task's cells (from `dy`, the carries
/// and its rows of the last step's `dhw @ W_hh`) write their rows of `dx`
/// (= dxw = dhw for the LSTM), then the task multiplies those rows by
/// `W_hh` for the next step. The bits are the per-step path's
/// ([`backward`] then the product). `carry` is `[dh; dc]` (`[2, B, H]`,
/// starting as `dh_n`, `dc_n`), left as `[0; dc0]`; `dh0` gets the last
/// step's product (at least one step).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lstm_backward_sequence(
    d: &SeqDims,
    i: &BackwardIn,
    w_hh: &[f32],
    dx: &mut [f32],
    carry: &mut [f32],
    dh0: &mut [f32],
) {
    let (h, gh, bh, batch) = (d.hidden, d.gh(), d.bh(), d.batch);
    let c_off = d.cell_offset();
    let sv = i.sv.expect("the LSTM saves its gates");
    assert!(
        d.kind == RecurrentKind::Lstm && d.steps > 0 && w_hh.len() >= gh * h,
        "wgrad internal: lstm_backward_sequence"
    );
    assert!(dx.len() >= d.steps * batch * gh && carry.len() >= 2 * bh && dh0.len() >= bh);
    let per = batch.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let w = StepWeight::new(Mat::rows(w_hh, h), (gh, h), per);
    let (dx, carry, dh0) = (Rows::new(dx), Rows::new(carry), Rows::new(dh0));
    (0..batch.div_ceil(per)).into_par_iter().for_each(|task| {
        let rows = task * per..((task + 1) * per).min(batch);
        let (mut rec, mut cac, mut packed) = (vec![0.0f32; rows.len() * h], vec![0.0f32; h], None);
        for (n, step) in (0..d.steps).rev().enumerate() {
            let t = d.time(step);
            let (prev, out) = d.slots(t);
            for (j, b) in rows.clone().enumerate() {
                let row = b * h;
                // SAFETY (every `Rows` access here): this task alone touches
                // batch rows `rows` of `carry`, `dx` and `dh0`.
                let (carry_h, carry_c, sdx) = unsafe {
                    (carry.get_mut(row, h), carry.get_mut(bh + row, h), dx.get_mut((t * batch + b) * gh, gh))
                };
                lstm_row_backward(
                    &i.dys[t * bh + row..][..h],
                    carry_h,
                    (n > 0).then(|| &rec[j * h..][..h]),
                    carry_c,
                    &i.st[c_off + out * bh + row..][..h],
                    &i.st[c_off + prev * bh + row..][..h],
                    &sv[(t * batch + b) * SAVED * h..][..4 * h],
                    sdx,
                    &mut cac,
                );
                // The dh carry is consumed; the dc carry moves to the previous step.
                carry_h.fill(0.0);
                carry_c.copy_from_slice(&cac);
            }
            // SAFETY: as above (this task's rows of dx at time t).
            let dhw = unsafe { dx.get((t * batch + rows.start) * gh, rows.len() * gh) };
            w.product(dhw, rows.len(), &mut packed, &mut rec);
        }
        // SAFETY: as above.
        unsafe { dh0.get_mut(rows.start * h, rows.len() * h) }.copy_from_slice(&rec);
    });
}

/// A sequence's recurrent weight as every step's product reads it: on
/// hosts with the packed-A kernel packed run by run once (`PackedB`: read
/// in place, `W_hh`'s rows 1 KiB apart at H = 256 fell on a few of L1's
/// sets, and the forward's `W_hhᵀ` needed a transposed copy anyway), else
/// the strided view, which `matrixmultiply` packs itself. The same kernel
/// and sums as `cpu::gemm` on the view, so the same bits.
struct StepWeight<'a> {
    view: Mat<'a>,
    packed: Option<PackedB>,
    kn: (usize, usize),
}

impl<'a> StepWeight<'a> {
    /// The `k` x `n` weight `view`, multiplied by up to `rows` rows a step.
    fn new(view: Mat<'a>, (k, n): (usize, usize), rows: usize) -> Self {
        let packed = suits((rows, k)).then(|| PackedB::new((k, n), (view.data, view.rs, view.cs)));
        StepWeight { view, packed, kn: (k, n) }
    }

    /// `c = a · W` for the `m` row-major rows of `a`; `scratch` keeps the
    /// packed rows between steps.
    fn product(&self, a: &[f32], m: usize, scratch: &mut Option<PackedA>, c: &mut [f32]) {
        let (k, n) = self.kn;
        match &self.packed {
            Some(b) => {
                let a = (a, k, 1);
                match scratch {
                    Some(p) => p.repack((m, k), a),
                    None => *scratch = Some(PackedA::new((m, k), a)),
                }
                b.product(scratch.as_ref().expect("packed above"), 1.0, 0.0, c, n);
            }
            None => super::gemm::gemm((m, k, n), 1.0, Mat::rows(a, k), self.view, 0.0, c, n),
        }
    }
}

/// A buffer whose disjoint parts several tasks read and write at once
/// (each its own batch rows): slices handed out by offset, bounds-checked;
/// that no two tasks' parts overlap is the caller's promise.
#[derive(Clone, Copy)]
struct Rows {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks touch disjoint parts (the `get`/`get_mut` contract).
unsafe impl Send for Rows {}
unsafe impl Sync for Rows {}

impl Rows {
    fn new(data: &mut [f32]) -> Self {
        Rows { ptr: data.as_mut_ptr(), len: data.len() }
    }

    /// `len` values from `at`, read.
    ///
    /// # Safety
    /// No task writes them while the slice lives.
    unsafe fn get<'a>(self, at: usize, len: usize) -> &'a [f32] {
        assert!(at + len <= self.len, "wgrad internal: row slice past its buffer");
        std::slice::from_raw_parts(self.ptr.add(at), len)
    }

    /// `len` values from `at`, written.
    ///
    /// # Safety
    /// No other slice of them lives while this one does.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get_mut<'a>(self, at: usize, len: usize) -> &'a mut [f32] {
        assert!(at + len <= self.len, "wgrad internal: row slice past its buffer");
        std::slice::from_raw_parts_mut(self.ptr.add(at), len)
    }
}

/// One backward step at time `t` (see `kernels::recurrent::backward_step`):
/// writes `dx` (= dxw), `dhw` (GRU) and the carries `ca` (dh | dc).
pub(crate) fn backward(d: &SeqDims, t: usize, i: &BackwardIn, dx: &mut [f32], dhw: Option<&mut [f32]>, ca: &mut [f32]) {
    let (h, gh, bh) = (d.hidden, d.gh(), d.bh());
    let (prev, out) = d.slots(t);
    let c_off = d.cell_offset();
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
        if d.kind == RecurrentKind::Lstm {
            let sv = i.sv.expect("LSTM and GRU save gates");
            return lstm_row_backward(
                &i.dys[t * bh + row..][..h],
                &carry[row..][..h],
                i.rec.map(|r| &r[row..][..h]),
                &carry[bh + row..][..h],
                &i.st[c_off + out * bh + row..][..h],
                &i.st[c_off + prev * bh + row..][..h],
                &sv[(t * d.batch + b) * SAVED * h..][..4 * h],
                &mut sdx[..4 * h],
                cac,
            );
        }
        for j in 0..h {
            let dh = i.dys[t * bh + row + j] + carry[row + j] + i.rec.map_or(0.0, |r| r[row + j]);
            match d.kind {
                RecurrentKind::RnnTanh => {
                    let y = i.st[out * bh + row + j];
                    sdx[j] = dh * (1.0 - y * y);
                }
                RecurrentKind::RnnRelu => {
                    sdx[j] = if crate::kernels::unary::relu_passes(i.st[out * bh + row + j]) { dh } else { 0.0 }
                }
                RecurrentKind::Lstm => unreachable!("LSTM rows run lstm_row_backward"),
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
    done(scratch);
}

multiversion! {
    /// One LSTM forward row: the gates' pre-activations `xw + h W_hhᵀ (+
    /// b_hh)` into `gates` (i | f | g | o, `h` each), then the gates
    /// themselves, the new cell `cn = f·cp + i·g` and output `hn = o·tanh(cn)`.
    fn lstm_row(xrow: &[f32], hrow: &[f32], bias: Option<&[f32]>, cp: &[f32], hn: &mut [f32], cn: &mut [f32], gates: &mut [f32]) {
        let h = hn.len();
        match bias {
            Some(b) => gates.iter_mut().zip(xrow).zip(hrow).zip(b).for_each(|(((a, &x), &w), &b)| *a = x + w + b),
            // + 0.0 as with a zero bias: a −0 pre-activation turns +0.
            None => gates.iter_mut().zip(xrow).zip(hrow).for_each(|((a, &x), &w)| *a = x + w + 0.0),
        }
        let (ig, rest) = gates.split_at_mut(h);
        let (fg, rest) = rest.split_at_mut(h);
        let (gg, og) = rest.split_at_mut(h);
        // One loop per gate: a chained iterator does not vectorize (it ran
        // scalar, most of the cell's time).
        for gate in [&mut *ig, &mut *fg, &mut *og] {
            for v in gate.iter_mut() {
                *v = sigmoid(*v);
            }
        }
        for v in gg.iter_mut() {
            *v = tanh(*v);
        }
        for j in 0..h.min(cp.len()).min(cn.len()) {
            let c = fg[j] * cp[j] + ig[j] * gg[j];
            cn[j] = c;
            hn[j] = og[j] * tanh(c);
        }
    }
}

multiversion! {
    /// One LSTM backward row: from `dh = dy + dh carry (+ rec, the
    /// recurrent term)`, the cell's output `c` and input `cp`, and the
    /// saved gates (i | f | g | o), the gates' gradients into `sdx` and the
    /// cell's carry `cac` = `dc·f` for the previous step.
    fn lstm_row_backward(
        dy: &[f32],
        carry_h: &[f32],
        rec: Option<&[f32]>,
        carry_c: &[f32],
        c: &[f32],
        cp: &[f32],
        gates: &[f32],
        sdx: &mut [f32],
        cac: &mut [f32],
    ) {
        let h = cac.len();
        let (ig, fg, gg, og) = (&gates[..h], &gates[h..2 * h], &gates[2 * h..3 * h], &gates[3 * h..4 * h]);
        let (carry_c, c, cp) = (&carry_c[..h], &c[..h], &cp[..h]);
        let (si, rest) = sdx.split_at_mut(h);
        let (sf, rest) = rest.split_at_mut(h);
        let (sg, so) = rest.split_at_mut(h);
        // dh first into `so`, which each element reads before writing.
        match rec {
            Some(r) => so.iter_mut().zip(dy).zip(carry_h).zip(r).for_each(|(((o, &a), &b), &r)| *o = a + b + r),
            None => so.iter_mut().zip(dy).zip(carry_h).for_each(|((o, &a), &b)| *o = a + b + 0.0),
        }
        for j in 0..h {
            let dh = so[j];
            let tc = tanh(c[j]);
            let dc = carry_c[j] + dh * og[j] * (1.0 - tc * tc);
            si[j] = dc * gg[j] * ig[j] * (1.0 - ig[j]);
            sf[j] = dc * cp[j] * fg[j] * (1.0 - fg[j]);
            sg[j] = dc * ig[j] * (1.0 - gg[j] * gg[j]);
            so[j] = dh * tc * og[j] * (1.0 - og[j]);
            cac[j] = dc * fg[j];
        }
    }
}

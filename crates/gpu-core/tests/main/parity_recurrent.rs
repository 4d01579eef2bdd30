//! Recurrent cells over whole sequences: GPU kernels vs CPU twins for every
//! kind and both directions on awkward sizes (outputs and every gradient),
//! the CPU twins vs a naive reference and values worked out by hand, the
//! T = 0 convention, and errors.

use crate::common;
use common::*;
use wgrad_gpu_core::ops::recurrent::{
    recurrent_backward, recurrent_backward_at, recurrent_forward, RecurrentKind, RecurrentSaved,
};
use wgrad_gpu_core::testing::assert_close;
use wgrad_gpu_core::{Buffer, Device};

const KINDS: [RecurrentKind; 4] =
    [RecurrentKind::RnnTanh, RecurrentKind::RnnRelu, RecurrentKind::Lstm, RecurrentKind::Gru];

/// Host data of one sequence and its output gradients.
struct Data {
    kind: RecurrentKind,
    t: usize,
    b: usize,
    h: usize,
    xw: Vec<f32>,
    w_hh: Vec<f32>,
    b_hh: Option<Vec<f32>>,
    h0: Vec<f32>,
    c0: Option<Vec<f32>>,
    dy: Vec<f32>,
    dh_n: Option<Vec<f32>>,
    dc_n: Option<Vec<f32>>,
}

impl Data {
    /// Random data; `extras` adds b_hh and the final-state gradients.
    fn random(kind: RecurrentKind, t: usize, b: usize, h: usize, extras: bool, seed: u64) -> Data {
        let mut r = rng(seed);
        let gh = kind.gates() * h;
        // W_hh of scale 1/√H keeps the recurrence contractive over 100 steps.
        let s = 1.0 / (h as f32).sqrt();
        let lstm = kind == RecurrentKind::Lstm;
        Data {
            kind,
            t,
            b,
            h,
            xw: r.vec(t * b * gh, -1.0, 1.0),
            w_hh: r.vec(gh * h, -s, s),
            b_hh: extras.then(|| r.vec(gh, -0.5, 0.5)),
            h0: r.vec(b * h, -1.0, 1.0),
            c0: lstm.then(|| r.vec(b * h, -1.0, 1.0)),
            dy: r.vec(t * b * h, -1.0, 1.0),
            dh_n: extras.then(|| r.vec(b * h, -1.0, 1.0)),
            dc_n: (extras && lstm).then(|| r.vec(b * h, -1.0, 1.0)),
        }
    }

    fn forward(&self, dev: &Device, reverse: bool) -> (RecurrentSaved, Buffer) {
        let up = |v: &Vec<f32>| Buffer::from_f32(dev, v).unwrap();
        let w = up(&self.w_hh);
        let (bias, c0) = (self.b_hh.as_ref().map(up), self.c0.as_ref().map(up));
        let saved = recurrent_forward(
            self.kind,
            &up(&self.xw),
            &w,
            bias.as_ref(),
            &up(&self.h0),
            c0.as_ref(),
            self.t,
            self.b,
            self.h,
            reverse,
        )
        .unwrap();
        (saved, w)
    }
}

/// Reads the `[.., B, H]` view `l` of the saved states.
fn read_view(saved: &RecurrentSaved, l: &wgrad_gpu_core::Layout) -> Vec<f32> {
    let all = saved.states().to_f32().unwrap();
    all[l.offset..l.offset + l.numel()].to_vec()
}

fn compare_sequences(g: &Device, c: &Device, data: &Data, reverse: bool) {
    let what = format!(
        "{} T={} B={} H={} reverse={reverse} bias={}",
        data.kind.name(),
        data.t,
        data.b,
        data.h,
        data.b_hh.is_some()
    );
    let (sg, wg) = data.forward(g, reverse);
    let (sc, wc) = data.forward(c, reverse);
    let states = sg.states_shape().iter().product();
    same(&format!("{what}: states"), sg.states(), sc.states(), states, 1e-4, 1e-5);
    if let (Some(a), Some(b)) = (sg.gates(), sc.gates()) {
        same(&format!("{what}: saved gates"), a, b, data.t * data.b * 4 * data.h, 1e-4, 1e-5);
    }

    let up = |dev: &Device, v: &Vec<f32>| Buffer::from_f32(dev, v).unwrap();
    let grads = |dev: &Device, saved: &RecurrentSaved, w: &Buffer| {
        let (dh_n, dc_n) = (data.dh_n.as_ref().map(|v| up(dev, v)), data.dc_n.as_ref().map(|v| up(dev, v)));
        recurrent_backward(saved, w, &up(dev, &data.dy), dh_n.as_ref(), dc_n.as_ref()).unwrap()
    };
    let (gg, gc) = (grads(g, &sg, &wg), grads(c, &sc, &wc));
    let (t, b, h, gh) = (data.t, data.b, data.h, data.kind.gates() * data.h);
    same(&format!("{what}: dxw"), &gg.dxw, &gc.dxw, t * b * gh, 1e-3, 1e-5);
    same(&format!("{what}: dw_hh"), &gg.dw_hh, &gc.dw_hh, gh * h, 1e-3, 1e-4);
    same(&format!("{what}: dh0"), &gg.dh0, &gc.dh0, b * h, 1e-3, 1e-5);
    assert_eq!(gg.db_hh.is_some(), data.b_hh.is_some(), "{what}: db_hh exactly with b_hh");
    if let (Some(x), Some(y)) = (&gg.db_hh, &gc.db_hh) {
        same(&format!("{what}: db_hh"), x, y, gh, 1e-3, 1e-4);
    }
    assert_eq!(gg.dc0.is_some(), data.kind == RecurrentKind::Lstm, "{what}: dc0 exactly for the LSTM");
    if let (Some(x), Some(y)) = (&gg.dc0, &gc.dc0) {
        same(&format!("{what}: dc0"), x, y, b * h, 1e-3, 1e-5);
    }
}

#[test]
fn sequences_and_gradients_match_twin() {
    let Some((g, c)) = devices("sequences_and_gradients_match_twin") else { return };
    let mut seed = 0;
    for kind in KINDS {
        for h in [1, 7, 33] {
            for t in [1, 100] {
                // 19 rows: three row groups of the subgroup product, the
                // last partly filled (its store loop picks every row).
                for b in [1, 3, 19] {
                    for extras in [false, true] {
                        seed += 1;
                        let data = Data::random(kind, t, b, h, extras, seed);
                        for reverse in [false, true] {
                            compare_sequences(&g, &c, &data, reverse);
                        }
                    }
                }
            }
        }
    }
}

/// `recurrent_backward_at` reads dy (and dh_n, dc_n) in place at an offset into a larger
/// buffer (as autograd does inside the gradient of all the states): the
/// same gradients, bit for bit, as a dense dy, on every backend and kind
/// (the LSTM's steps in the products' stores on a GPU). Fails when an
/// offset is dropped in a kernel or twin.
#[test]
fn dy_is_read_in_place_at_its_offset() {
    for dev in cpu_and_gpu("dy_is_read_in_place_at_its_offset") {
        for (i, kind) in KINDS.into_iter().enumerate() {
            let data = Data::random(kind, 5, 3, 7, true, 40 + i as u64);
            let (saved, w) = data.forward(&dev, false);
            let up = |v: &Vec<f32>| Buffer::from_f32(&dev, v).unwrap();
            let (dh_n, dc_n) = (data.dh_n.as_ref().map(up), data.dc_n.as_ref().map(up));
            let dense = recurrent_backward(&saved, &w, &up(&data.dy), dh_n.as_ref(), dc_n.as_ref()).unwrap();
            // dy after 21 words of noise, with noise after it too.
            let pad = vec![9.0f32; 21];
            let wide = up(&[pad.clone(), data.dy.clone(), pad].concat());
            let at = recurrent_backward_at(
                &saved,
                &w,
                (&wide, 21),
                dh_n.as_ref().map(|g| (g, 0)),
                dc_n.as_ref().map(|g| (g, 0)),
            )
            .unwrap();
            // dh_n and dc_n in place too: after dy in one buffer, between noise.
            let finals: Vec<f32> = [data.dh_n.clone(), data.dc_n.clone()].into_iter().flatten().flatten().collect();
            let all = up(&[vec![9.0f32; 21], data.dy.clone(), vec![9.0; 5], finals, vec![9.0; 3]].concat());
            let after_dy = 21 + data.dy.len() + 5;
            let dh_at = data.dh_n.as_ref().map(|_| (&all, after_dy));
            let dc_at = data.dc_n.as_ref().map(|_| (&all, after_dy + data.dh_n.as_ref().map_or(0, Vec::len)));
            let all_at = recurrent_backward_at(&saved, &w, (&all, 21), dh_at, dc_at).unwrap();
            for got in [&at, &all_at] {
                let mut pairs = vec![(&dense.dxw, &got.dxw), (&dense.dw_hh, &got.dw_hh), (&dense.dh0, &got.dh0)];
                pairs.extend(dense.db_hh.as_ref().zip(got.db_hh.as_ref()));
                pairs.extend(dense.dc0.as_ref().zip(got.dc0.as_ref()));
                for (x, y) in pairs {
                    assert_eq!(x.to_f32().unwrap(), y.to_f32().unwrap(), "{} on {}", kind.name(), dev.name());
                }
            }
        }
    }
}

/// The fast CPU path (f32, rows over threads) against the reference twin
/// (f64), with the same tolerances as the GPU kernel; B·H large enough for
/// the rows to be split over threads.
#[test]
fn fast_cpu_sequences_match_the_reference() {
    let (f, r) = (Device::cpu(), Device::cpu_reference());
    let mut seed = 1000;
    for kind in KINDS {
        for (t, b, h) in [(1, 1, 7), (9, 3, 33), (5, 32, 64)] {
            for extras in [false, true] {
                seed += 1;
                let data = Data::random(kind, t, b, h, extras, seed);
                for reverse in [false, true] {
                    compare_sequences(&f, &r, &data, reverse);
                }
            }
        }
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// A naive whole-sequence forward in f64, written from the PyTorch docs:
/// returns y `[T, B, H]`, h_n and c_n.
fn reference(d: &Data, reverse: bool) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (t_len, bs, hs) = (d.t, d.b, d.h);
    let gh = d.kind.gates() * hs;
    let mut h: Vec<f64> = d.h0.iter().map(|&v| v as f64).collect();
    let mut c: Vec<f64> = d.c0.as_ref().map_or(vec![0.0; bs * hs], |c| c.iter().map(|&v| v as f64).collect());
    let mut y = vec![0.0f32; t_len * bs * hs];
    let order: Vec<usize> = if reverse { (0..t_len).rev().collect() } else { (0..t_len).collect() };
    for t in order {
        let mut h_new = vec![0.0; bs * hs];
        for b in 0..bs {
            // hw = h W_hhᵀ + b_hh and xw for this (t, b).
            let hw: Vec<f64> = (0..gh)
                .map(|r| {
                    let dot: f64 = (0..hs).map(|m| d.w_hh[r * hs + m] as f64 * h[b * hs + m]).sum();
                    dot + d.b_hh.as_ref().map_or(0.0, |bias| bias[r] as f64)
                })
                .collect();
            let xw = |r: usize| d.xw[(t * bs + b) * gh + r] as f64;
            for j in 0..hs {
                let a = |k: usize| xw(k * hs + j) + hw[k * hs + j];
                h_new[b * hs + j] = match d.kind {
                    RecurrentKind::RnnTanh => a(0).tanh(),
                    RecurrentKind::RnnRelu => a(0).max(0.0),
                    RecurrentKind::Lstm => {
                        let cell = sigmoid(a(1)) * c[b * hs + j] + sigmoid(a(0)) * a(2).tanh();
                        c[b * hs + j] = cell;
                        sigmoid(a(3)) * cell.tanh()
                    }
                    RecurrentKind::Gru => {
                        let (r, z) = (sigmoid(a(0)), sigmoid(a(1)));
                        let n = (xw(2 * hs + j) + r * hw[2 * hs + j]).tanh();
                        (1.0 - z) * n + z * h[b * hs + j]
                    }
                };
            }
        }
        h = h_new;
        for (o, &v) in y[t * bs * hs..][..bs * hs].iter_mut().zip(&h) {
            *o = v as f32;
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (y, f(h), f(c))
}

fn cpu_and_gpu(test: &str) -> Vec<Device> {
    let mut devs = vec![Device::cpu_reference()];
    devs.extend(wgrad_gpu_core::testing::gpu_or_skip(test));
    devs
}

#[test]
fn sequences_match_a_naive_reference() {
    for dev in cpu_and_gpu("sequences_match_a_naive_reference") {
        for (i, kind) in KINDS.into_iter().enumerate() {
            for reverse in [false, true] {
                let data = Data::random(kind, 4, 2, 3, true, 50 + i as u64);
                let what = format!("{} reverse={reverse} on {}", kind.name(), dev.name());
                let (saved, _) = data.forward(&dev, reverse);
                let (y, h_n, c_n) = reference(&data, reverse);
                assert_close(&format!("{what}: y"), &read_view(&saved, &saved.output_layout()), &y, 1e-5, 1e-6);
                assert_close(&format!("{what}: h_n"), &read_view(&saved, &saved.h_n_layout()), &h_n, 1e-5, 1e-6);
                if let Some(l) = saved.c_n_layout() {
                    assert_close(&format!("{what}: c_n"), &read_view(&saved, &l), &c_n, 1e-5, 1e-6);
                }
            }
        }
    }
}

#[test]
fn reverse_is_forward_on_the_flipped_sequence() {
    for dev in cpu_and_gpu("reverse_is_forward_on_the_flipped_sequence") {
        for (i, kind) in KINDS.into_iter().enumerate() {
            let data = Data::random(kind, 5, 2, 3, true, 70 + i as u64);
            let gh = kind.gates() * data.h;
            let step = data.b * gh;
            let flipped_xw: Vec<f32> = (0..data.t).rev().flat_map(|t| data.xw[t * step..][..step].to_vec()).collect();
            let flipped = Data { xw: flipped_xw, ..Data::random(kind, 5, 2, 3, true, 70 + i as u64) };
            let (rev, _) = data.forward(&dev, true);
            let (fwd, _) = flipped.forward(&dev, false);
            let (yr, yf) = (read_view(&rev, &rev.output_layout()), read_view(&fwd, &fwd.output_layout()));
            let bh = data.b * data.h;
            let yf_flipped: Vec<f32> = (0..data.t).rev().flat_map(|t| yf[t * bh..][..bh].to_vec()).collect();
            let what = format!("{} on {}", kind.name(), dev.name());
            assert_close(&what, &yr, &yf_flipped, 1e-6, 1e-7);
            assert_close(&what, &read_view(&rev, &rev.h_n_layout()), &read_view(&fwd, &fwd.h_n_layout()), 1e-6, 1e-7);
        }
    }
}

/// One step, one unit: every value worked out from the formulas.
#[test]
fn hand_checked_single_steps() {
    for dev in cpu_and_gpu("hand_checked_single_steps") {
        let one = |v: f32| Buffer::from_f32(&dev, &[v]).unwrap();
        let read = |b: &Buffer| b.to_f32().unwrap()[0] as f64;
        let (h0, w, bias, dy) = (0.5f64, -0.8f64, 0.3f64, 1.5f64);
        let close = |what: &str, got: f64, want: f64| {
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{what} on {}: got {got}, want {want}",
                dev.name()
            );
        };

        // tanh RNN: y = tanh(xw + w h0 + b); every gradient is dy (1 − y²) times a factor.
        for (kind, xw) in
            [(RecurrentKind::RnnTanh, 0.2f64), (RecurrentKind::RnnRelu, 0.9), (RecurrentKind::RnnRelu, -0.9)]
        {
            let (saved, wb) = {
                let wb = one(w as f32);
                let s = recurrent_forward(
                    kind,
                    &one(xw as f32),
                    &wb,
                    Some(&one(bias as f32)),
                    &one(h0 as f32),
                    None,
                    1,
                    1,
                    1,
                    false,
                )
                .unwrap();
                (s, wb)
            };
            let a = xw + w * h0 + bias;
            let (y, da) = match kind {
                RecurrentKind::RnnTanh => (a.tanh(), 1.0 - a.tanh().powi(2)),
                _ => (a.max(0.0), if a > 0.0 { 1.0 } else { 0.0 }),
            };
            let name = kind.name();
            close(&format!("{name} y"), read_view(&saved, &saved.output_layout())[0] as f64, y);
            let g = recurrent_backward(&saved, &wb, &one(dy as f32), None, None).unwrap();
            close(&format!("{name} dxw"), read(&g.dxw), dy * da);
            close(&format!("{name} dw_hh"), read(&g.dw_hh), dy * da * h0);
            close(&format!("{name} db_hh"), read(g.db_hh.as_ref().unwrap()), dy * da);
            close(&format!("{name} dh0"), read(&g.dh0), dy * da * w);
        }

        // LSTM, gates i f g o with W_hh = [0.1, -0.2, 0.3, 0.4], no bias.
        let xw = [0.5f64, -0.5, 0.25, 1.0];
        let wl = [0.1f64, -0.2, 0.3, 0.4];
        let c0 = -0.7f64;
        let f32v = |v: &[f64]| Buffer::from_f32(&dev, &v.iter().map(|&x| x as f32).collect::<Vec<_>>()).unwrap();
        let wb = f32v(&wl);
        let saved = recurrent_forward(
            RecurrentKind::Lstm,
            &f32v(&xw),
            &wb,
            None,
            &one(h0 as f32),
            Some(&one(c0 as f32)),
            1,
            1,
            1,
            true,
        )
        .unwrap();
        let a: Vec<f64> = (0..4).map(|k| xw[k] + wl[k] * h0).collect();
        let (i, f, gg, o) = (sigmoid(a[0]), sigmoid(a[1]), a[2].tanh(), sigmoid(a[3]));
        let c = f * c0 + i * gg;
        let y = o * c.tanh();
        close("lstm y", read_view(&saved, &saved.output_layout())[0] as f64, y);
        close("lstm c_n", read_view(&saved, &saved.c_n_layout().unwrap())[0] as f64, c);
        // Gradients with dy and dc_n: dc = dc_n + dy·o·(1 − tanh²c).
        let dc_n = 0.25f64;
        let g = recurrent_backward(&saved, &wb, &one(dy as f32), None, Some(&one(dc_n as f32))).unwrap();
        let dc = dc_n + dy * o * (1.0 - c.tanh().powi(2));
        let da =
            [dc * gg * i * (1.0 - i), dc * c0 * f * (1.0 - f), dc * i * (1.0 - gg * gg), dy * c.tanh() * o * (1.0 - o)];
        let dxw = g.dxw.to_f32().unwrap();
        let dw = g.dw_hh.to_f32().unwrap();
        for k in 0..4 {
            close(&format!("lstm dxw[{k}]"), dxw[k] as f64, da[k]);
            close(&format!("lstm dw_hh[{k}]"), dw[k] as f64, da[k] * h0);
        }
        close("lstm dc0", read(g.dc0.as_ref().unwrap()), dc * f);
        close("lstm dh0", read(&g.dh0), (0..4).map(|k| da[k] * wl[k]).sum());
        assert!(g.db_hh.is_none());

        // GRU, gates r z n, with b_hh: the reset gate scales hw_n + b_hn.
        let xw = [0.3f64, -0.6, 0.8];
        let wg = [0.5f64, 0.2, -0.9];
        let bg = [0.1f64, -0.1, 0.4];
        let wb = f32v(&wg);
        let saved = recurrent_forward(
            RecurrentKind::Gru,
            &f32v(&xw),
            &wb,
            Some(&f32v(&bg)),
            &one(h0 as f32),
            None,
            1,
            1,
            1,
            false,
        )
        .unwrap();
        let hw: Vec<f64> = (0..3).map(|k| wg[k] * h0 + bg[k]).collect();
        let (r, z) = (sigmoid(xw[0] + hw[0]), sigmoid(xw[1] + hw[1]));
        let n = (xw[2] + r * hw[2]).tanh();
        let y = (1.0 - z) * n + z * h0;
        close("gru y", read_view(&saved, &saved.output_layout())[0] as f64, y);
        let dh_n = -0.5f64;
        let g = recurrent_backward(&saved, &wb, &one(dy as f32), Some(&one(dh_n as f32)), None).unwrap();
        let d = dy + dh_n;
        let dn = d * (1.0 - z) * (1.0 - n * n);
        let dz = d * (h0 - n) * z * (1.0 - z);
        let dr = dn * hw[2] * r * (1.0 - r);
        let dhw = [dr, dz, dn * r];
        let (dxw, dw, db) = (g.dxw.to_f32().unwrap(), g.dw_hh.to_f32().unwrap(), g.db_hh.unwrap().to_f32().unwrap());
        for k in 0..3 {
            close(&format!("gru dxw[{k}]"), dxw[k] as f64, [dr, dz, dn][k]);
            close(&format!("gru dw_hh[{k}]"), dw[k] as f64, dhw[k] * h0);
            close(&format!("gru db_hh[{k}]"), db[k] as f64, dhw[k]);
        }
        close("gru dh0", read(&g.dh0), d * z + (0..3).map(|k| dhw[k] * wg[k]).sum::<f64>());
    }
}

#[test]
fn empty_sequences_pass_the_state_through() {
    for dev in cpu_and_gpu("empty_sequences_pass_the_state_through") {
        let up = |v: &[f32]| Buffer::from_f32(&dev, v).unwrap();
        let (h0, c0) = (up(&[1.0, 2.0]), up(&[3.0, 4.0]));
        let w = up(&[0.5; 16]);
        let bias = up(&[0.0; 8]);
        for reverse in [false, true] {
            let saved =
                recurrent_forward(RecurrentKind::Lstm, &up(&[]), &w, Some(&bias), &h0, Some(&c0), 0, 1, 2, reverse)
                    .unwrap();
            assert_eq!(saved.output_layout().numel(), 0);
            assert_eq!(read_view(&saved, &saved.h_n_layout()), [1.0, 2.0]);
            assert_eq!(read_view(&saved, &saved.c_n_layout().unwrap()), [3.0, 4.0]);
            let g = recurrent_backward(&saved, &w, &up(&[]), Some(&up(&[5.0, 6.0])), Some(&up(&[7.0, 8.0]))).unwrap();
            assert_eq!(g.dh0.to_f32().unwrap()[..2], [5.0, 6.0]);
            assert_eq!(g.dc0.unwrap().to_f32().unwrap()[..2], [7.0, 8.0]);
            assert_eq!(g.dw_hh.to_f32().unwrap()[..16], [0.0; 16]);
            assert_eq!(g.db_hh.unwrap().to_f32().unwrap()[..8], [0.0; 8]);
            // Without final-state gradients dh0 is zero.
            let g = recurrent_backward(&saved, &w, &up(&[]), None, None).unwrap();
            assert_eq!(g.dh0.to_f32().unwrap()[..2], [0.0; 2]);
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let dev = Device::cpu_reference();
    let up = |n: usize| Buffer::from_f32(&dev, &vec![0.1; n]).unwrap();
    let (t, b, h) = (3, 2, 4);
    let err = |kind: RecurrentKind, xw: usize, w: usize, bias: Option<usize>, c0: Option<usize>, h: usize| {
        let bias = bias.map(up);
        let c0 = c0.map(up);
        recurrent_forward(kind, &up(xw), &up(w), bias.as_ref(), &up(b * 4), c0.as_ref(), t, b, h, false)
            .unwrap_err()
            .to_string()
    };
    let e = err(RecurrentKind::Gru, t * b * 3 * h - 1, 3 * h * h, None, None, h);
    assert!(e.contains("recurrent_forward") && e.contains("xw"), "{e}");
    let e = err(RecurrentKind::Lstm, t * b * 4 * h, 4 * h * h - 1, None, Some(b * h), h);
    assert!(e.contains("w_hh"), "{e}");
    let e = err(RecurrentKind::RnnTanh, t * b * h, h * h, Some(h - 1), None, h);
    assert!(e.contains("b_hh"), "{e}");
    let e = err(RecurrentKind::Lstm, t * b * 4 * h, 4 * h * h, None, None, h);
    assert!(e.contains("lstm needs c0"), "{e}");
    let e = err(RecurrentKind::Gru, t * b * 3 * h, 3 * h * h, None, Some(b * h), h);
    assert!(e.contains("c0 given for gru"), "{e}");
    let e = err(RecurrentKind::Lstm, t * b * 4 * h, 4 * h * h, None, Some(b * h - 1), h);
    assert!(e.contains("c0 [B, H]"), "{e}");
    let e = err(RecurrentKind::RnnRelu, 0, 0, None, None, 0);
    assert!(e.contains("hidden size 0"), "{e}");
    // h0 shorter than B·H.
    let e = recurrent_forward(
        RecurrentKind::RnnTanh,
        &up(t * b * h),
        &up(h * h),
        None,
        &up(b * h - 1),
        None,
        t,
        b,
        h,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("h0"), "{e}");

    let saved = recurrent_forward(
        RecurrentKind::Gru,
        &up(t * b * 3 * h),
        &up(3 * h * h),
        None,
        &up(b * h),
        None,
        t,
        b,
        h,
        true,
    )
    .unwrap();
    let w = up(3 * h * h);
    let e = recurrent_backward(&saved, &w, &up(t * b * h - 1), None, None).unwrap_err().to_string();
    assert!(e.contains("recurrent_backward") && e.contains("dy"), "{e}");
    let e = recurrent_backward(&saved, &w, &up(t * b * h), None, Some(&up(b * h))).unwrap_err().to_string();
    assert!(e.contains("dc_n given for gru"), "{e}");
    let e = recurrent_backward(&saved, &w, &up(t * b * h), Some(&up(1)), None).unwrap_err().to_string();
    assert!(e.contains("dh_n"), "{e}");
    let e = recurrent_backward(&saved, &up(2), &up(t * b * h), None, None).unwrap_err().to_string();
    assert!(e.contains("w_hh"), "{e}");

    if let Some(gpu) = wgrad_gpu_core::testing::gpu_or_skip("bad_arguments_are_errors (devices)") {
        let on_gpu = Buffer::from_f32(&gpu, &vec![0.1; h * h]).unwrap();
        let e =
            recurrent_forward(RecurrentKind::RnnTanh, &up(t * b * h), &on_gpu, None, &up(b * h), None, t, b, h, false)
                .unwrap_err()
                .to_string();
        assert!(e.contains("different devices"), "{e}");
    }
}

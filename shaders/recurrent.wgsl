// Fused recurrent cells with PyTorch's gate math (gpu-core/src/ops/recurrent.rs
// runs the sequence and holds the CPU twins). One thread per (batch row,
// hidden unit), one launch per time step. The host computes the step's
// hw = h_prev @ W_hhᵀ with a matmul; everything after it is one kernel:
//   rnn   h = act(xw + hw + b), act = tanh (KIND 0) or relu (KIND 1)
//   lstm  i, f, g, o = σ, σ, tanh, σ of the four blocks of xw + hw + b;
//         c = f·c_prev + i·g; h = o·tanh(c)
//   gru   r, z = σ(xw + hw + b) of the first two blocks; hn = hw_n + b_n;
//         n = tanh(xw_n + r·hn); h = (1 − z)·n + z·h_prev
//
// Whole-sequence buffers are bound every step and indexed with p.t, so no
// step needs a sub-buffer view. `states` is [K, T+1, B, H]: hidden states
// (K = 0) and, for the LSTM, cell states (K = 1). The initial state sits in
// slot 0 (forward) or slot T (reverse) and the state after time t in slot
// t + 1 (forward) or t (reverse), so the outputs y[0..T] are one contiguous
// run of slots in time order in both directions. A step reads its previous
// slot and writes its own through the one read_write binding: different
// elements, and each thread touches only its own (b, j).
//
// `saved` ([T, B, 4H], LSTM and GRU) keeps what the backward needs per time:
// LSTM i, f, g, o; GRU r, z, n, hn (hn includes b_hn, since dr needs it).
//
// Backward of one step (time t, taken in reverse processing order):
//   dh = dy[t] + carry_h + dh_rec, where dh_rec = dhw_{next} @ W_hh (the
//   previous launch's matmul) and carry_h the part of dh_prev that bypasses
//   W_hh (GRU's z·dh). LSTM's dc travels in carry_c. The kernel writes the
//   pre-activation gradients dxw[t] (and, for the GRU, dhw[t], which differs
//   in the n block: dhw_n = dn_pre·r) and the new carries.
//#include common.wgsl

// 0 rnn_tanh, 1 rnn_relu, 2 lstm, 3 gru (`RecurrentKind::code`).
override KIND: u32 = 0u;
// hw (cell_forward) and dh_rec (cell_backward) are the sums of PARTS
// partial products stored one after another: on GPUs a step's product,
// which has few outputs and a long K, runs as a batch of slices of K
// (`step_slices` in ops/recurrent.rs), and this kernel adds the slices, in
// order, where it reads them.
override PARTS: u32 = 1u;

struct Params {
    t: u32,
    steps: u32,
    batch: u32,
    hidden: u32,
    reverse: u32,
    // cell_forward: 1 when b_hh is bound (else `bias` is a placeholder).
    has_bias: u32,
    // cell_backward: 1 when dh_rec holds the previous launch's matmul (else a placeholder).
    has_rec: u32,
    // cell_backward: where dy ([T, B, H]) starts in its buffer.
    dy_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Each entry point statically uses only its own bindings, so the globals
// share binding numbers with different types:
//   cell_forward   xw, hw, bias, states, saved
//   cell_backward  dy, dh_rec, states_in, saved_in, dxw, dhw, carry
// The inputs and their `load_*` readers (buffers, or textures in the
// `_tex` variant on CPU adapters):
//#include recurrent_inputs_f32.wgsl
@group(0) @binding(4) var<storage, read_write> states: array<f32>;
@group(0) @binding(5) var<storage, read_write> saved: array<f32>;
@group(0) @binding(5) var<storage, read_write> dxw: array<f32>;
// GRU only (a placeholder otherwise: dhw = dxw for the RNN and LSTM).
@group(0) @binding(6) var<storage, read_write> dhw: array<f32>;
// [2, B, H]: carry_h, then carry_c (LSTM).
@group(0) @binding(7) var<storage, read_write> carry: array<f32>;

//#include lstm_cell.wgsl

fn gates() -> u32 {
    switch KIND {
        case 2u: { return 4u; }
        case 3u: { return 3u; }
        default: { return 1u; }
    }
}

// Slot of the state before time t and of the state after it.
fn slots() -> vec2<u32> {
    if p.reverse != 0u {
        return vec2<u32>(p.t + 1u, p.t);
    }
    return vec2<u32>(p.t, p.t + 1u);
}

// Element i of hw: the sum of its PARTS slices ([B, G·H] each).
fn hw_sum(i: u32) -> f32 {
    var v = load_hw(i);
    for (var s = 1u; s < PARTS; s++) {
        v += load_hw(i + s * p.batch * gates() * p.hidden);
    }
    return v;
}

// Element i of dh_rec: the sum of its PARTS slices ([B, H] each).
fn dh_rec_sum(i: u32) -> f32 {
    var v = load_dh_rec(i);
    for (var s = 1u; s < PARTS; s++) {
        v += load_dh_rec(i + s * p.batch * p.hidden);
    }
    return v;
}

// Gate block k of hw (+ b_hh) for thread (b, j), w0 = b·G·H + j.
fn hw_at(w0: u32, j: u32, k: u32) -> f32 {
    var v = hw_sum(w0 + k * p.hidden);
    if p.has_bias != 0u {
        v += load_bias(k * p.hidden + j);
    }
    return v;
}

@compute @workgroup_size(256)
fn cell_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    let bh = p.batch * p.hidden;
    if i >= bh {
        return;
    }
    let hd = p.hidden;
    let b = i / hd;
    let j = i - b * hd;
    let gh = gates() * hd;
    let x0 = (p.t * p.batch + b) * gh + j;
    let w0 = b * gh + j;
    let s0 = (p.t * p.batch + b) * 4u * hd + j;
    let slot = slots();
    let prev = slot.x * bh + i;
    let out = slot.y * bh + i;
    switch KIND {
        case 2u: {
            let xw = vec4(load_xw(x0), load_xw(x0 + hd), load_xw(x0 + 2u * hd), load_xw(x0 + 3u * hd));
            let hw = vec4(hw_at(w0, j, 0u), hw_at(w0, j, 1u), hw_at(w0, j, 2u), hw_at(w0, j, 3u));
            let c_off = (p.steps + 1u) * bh;
            let step = lstm_step(xw + hw, states[c_off + prev]);
            states[c_off + out] = step.c;
            states[out] = step.h;
            saved[s0] = step.gates.x;
            saved[s0 + hd] = step.gates.y;
            saved[s0 + 2u * hd] = step.gates.z;
            saved[s0 + 3u * hd] = step.gates.w;
        }
        case 3u: {
            let r = sigmoid(load_xw(x0) + hw_at(w0, j, 0u));
            let z = sigmoid(load_xw(x0 + hd) + hw_at(w0, j, 1u));
            let hn = hw_at(w0, j, 2u);
            let n = tanh_stable(load_xw(x0 + 2u * hd) + r * hn);
            states[out] = (1.0 - z) * n + z * states[prev];
            saved[s0] = r;
            saved[s0 + hd] = z;
            saved[s0 + 2u * hd] = n;
            saved[s0 + 3u * hd] = hn;
        }
        default: {
            let v = load_xw(x0) + hw_at(w0, j, 0u);
            states[out] = select(tanh_stable(v), relu(v), KIND == 1u);
        }
    }
}

@compute @workgroup_size(256)
fn cell_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    let bh = p.batch * p.hidden;
    if i >= bh {
        return;
    }
    let hd = p.hidden;
    let b = i / hd;
    let j = i - b * hd;
    let x0 = (p.t * p.batch + b) * gates() * hd + j;
    let s0 = (p.t * p.batch + b) * 4u * hd + j;
    let slot = slots();
    let prev = slot.x * bh + i;
    let out = slot.y * bh + i;
    var dh = load_dy(p.dy_offset + p.t * bh + i) + carry[i];
    if p.has_rec != 0u {
        dh += dh_rec_sum(i);
    }
    // Only the GRU has a path from h_prev to h that bypasses W_hh.
    carry[i] = 0.0;
    switch KIND {
        case 2u: {
            let gates = vec4(load_saved(s0), load_saved(s0 + hd), load_saved(s0 + 2u * hd), load_saved(s0 + 3u * hd));
            let c_off = (p.steps + 1u) * bh;
            let g = lstm_step_grad(gates, load_states(c_off + out), load_states(c_off + prev), dh, carry[bh + i]);
            dxw[x0] = g.d.x;
            dxw[x0 + hd] = g.d.y;
            dxw[x0 + 2u * hd] = g.d.z;
            dxw[x0 + 3u * hd] = g.d.w;
            carry[bh + i] = g.dc_prev;
        }
        case 3u: {
            let r = load_saved(s0);
            let z = load_saved(s0 + hd);
            let n = load_saved(s0 + 2u * hd);
            let hn = load_saved(s0 + 3u * hd);
            let dn = dh * (1.0 - z) * (1.0 - n * n);
            let dr = dn * hn * r * (1.0 - r);
            let dz = dh * (load_states(prev) - n) * z * (1.0 - z);
            dxw[x0] = dr;
            dxw[x0 + hd] = dz;
            dxw[x0 + 2u * hd] = dn;
            dhw[x0] = dr;
            dhw[x0 + hd] = dz;
            dhw[x0 + 2u * hd] = dn * r;
            carry[i] = dh * z;
        }
        default: {
            let h = load_states(out);
            dxw[x0] = select(dh * (1.0 - h * h), select(0.0, dh, relu_passes(h)), KIND == 1u);
        }
    }
}

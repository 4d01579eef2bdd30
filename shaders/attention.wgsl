// Fused scaled-dot-product attention per (batch·head) over dense
// q [BH, Lq, D], k [BH, Lk, D], v [BH, Lk, DV] (gpu-core/src/ops/attention.rs
// holds the CPU twins that define the semantics):
//   attention_forward       out = softmax(q kᵀ·scale + mask) v, lse_i = log Σ_j exp(s_ij)
//   attention_backward_dq   dq_i = scale Σ_j dS_ij k_j, and delta_i = dO_i·O_i
//   attention_backward_dkv  dv_j = Σ_i P_ij dO_i, dk_j = scale Σ_i dS_ij q_i
// with P_ij = exp(s_ij − lse_i) and dS_ij = P_ij (dO_i·v_j − delta_i).
//
// Each invocation owns ROWS rows of one side: query rows (forward, dq) or
// key rows (dkv). Their vectors (q, dO, the accumulators) sit in private
// arrays; the rows of the other side are streamed in blocks of 4, the same
// rows for every invocation of the workgroup (a workgroup covers consecutive
// rows of one batch·head), so on GPUs those loads are broadcasts. No
// workgroup memory and no barrier: on CPU drivers (llvmpipe) a barrier turns
// the shader into a coroutine, and every buffer load is a loop over the
// SIMD lanes, which is why the host gives each invocation several rows
// there (each loaded chunk then serves all of them) and one on GPUs.
// The exception, opt-in and meant for GPUs: attention_backward_dkv_split
// (at the end) shares each key row among SPLIT invocations and sums their
// dot products through workgroup memory, two barriers per block of queries.
//
// The softmax is online (flash-attention style): a running maximum and sum
// per row, the accumulator rescaled once per block of 4 keys, so memory is
// O(L·D), never O(L²). The backward recomputes P from the saved lse; each
// gradient row is a gather by its owner, so there are no atomics and results
// are the same bits on every run.
//
// q, k, v, the output, its gradient and dq, dk, dv are stored as f32, or
// as f16 in the generated variants (attention_f16*, one swapped include:
// attention_io_f32.wgsl); the mask, lse and delta and all arithmetic are f32.
//
// Hidden entries (causal, past the end, or a −inf mask) are exactly −inf
// scores and contribute exactly 0. A row with every key hidden gets out = 0,
// lse = +inf and zero gradients (PyTorch gives NaN there).
//#include common.wgsl

// Invocations per workgroup (host: 8 on CPU adapters, one SIMD register;
// 64 on GPUs).
override WG: u32 = 64u;
// Head dims of q/k (D) and of v (DV), each 1..=4·CAP.
override D: u32 = 64u;
override DV: u32 = 64u;
// PyTorch's is_causal: query i sees keys j ≤ i (top-left aligned).
override CAUSAL: bool = false;
// Whether binding 4 holds an additive mask (otherwise it is a placeholder).
override HAS_MASK: bool = false;

// vec4 chunks per row of q/k and of v.
override D4: u32 = (D + 3u) / 4u;
override DV4: u32 = (DV + 3u) / 4u;
// Rows per invocation, 1..=4 with ROWS · max(D4, DV4) ≤ CAP (host: 1 on
// GPUs, as many as fit on CPU drivers).
override ROWS: u32 = 1u;
// Invocations that share a key row in attention_backward_dkv_split (host:
// WGRAD_ATTENTION_SPLIT), and each one's chunks of a row of q/k and of v.
override SPLIT: u32 = 4u;
override D4S: u32 = (D4 + SPLIT - 1u) / SPLIT;
override DV4S: u32 = (DV4 + SPLIT - 1u) / SPLIT;
// vec4 slots of each per-invocation row array (ROWS rows of D4 or DV4
// chunks, row r at r·D4): head dims up to 256. Loops over them have constant
// trip counts (D4, DV4, ROWS), so drivers can keep them in registers.
const CAP: u32 = 64u;
const NEG_INF_BITS: u32 = 0xff800000u;

struct Params {
    // batch·heads, heads (the mask's batch index is bh / heads), lengths.
    bh: u32,
    heads: u32,
    lq: u32,
    lk: u32,
    scale: f32,
    // Workgroups per batch·head: ceil(rows / (WG·ROWS)), rows = lq (forward, dq) or lk (dkv);
    // ceil(lk / (WG / SPLIT)) for attention_backward_dkv_split.
    blocks: u32,
    // Mask strides over (batch, head, query, key); 0 broadcasts.
    mask_b: u32,
    mask_h: u32,
    mask_q: u32,
    mask_k: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Bindings 1-3 (q, k, v), 5 (out / o), 7 (dout) and 8-10 (dq, dk, dv), with
// their readers (load_X(i): element i; load_X_quad(j): elements 4j..4j+3,
// rows whose width is a multiple of 4 starting on such a boundary) and
// stores (store_X(t, ·): unit t): the f32 library below, generated from the
// binding list in kernels/attention.rs; the f16 variants swap this line.
//#include attention_io_f32.wgsl
@group(0) @binding(4) var<storage, read> mask: array<f32>;
// Each entry point statically uses only its own bindings, so the globals
// below (and the io library's) may share binding numbers with different types:
//   forward  q, k, v, mask, out, lse_out
//   dq       q, k, v, mask, o, lse, dout, dq, delta_out
//   dkv      q, k, v, mask, o (unused), lse, dout, delta, dk, dv
// attention_backward_dkv_split's dot products, s then dP, of each invocation's
// chunks (declared after every override: see matmul_coop.wgsl).
var<workgroup> partial: array<vec4<f32>, 2u * WG>;
@group(0) @binding(6) var<storage, read_write> lse_out: array<f32>;
@group(0) @binding(6) var<storage, read> lse: array<f32>;
@group(0) @binding(8) var<storage, read> delta: array<f32>;
@group(0) @binding(9) var<storage, read_write> delta_out: array<f32>;

// ---- rows ------------------------------------------------------------------

// Chunk c of a row of each operand, zeros past the row's end: `q_at(row,
// c, D)`, `k_at`, `v_at`, `o_at` and `dout_at` (rows D or DV wide), generated
// with the storage library (kernels/io.rs, `Binding::rows`).

// Element e (and e + 1, clamped into the row) of row r of a per-invocation
// array of width n (n4 chunks): the pair a store unit takes.
fn pair(a: ptr<function, array<vec4<f32>, CAP>>, r: u32, n4: u32, n: u32, e: u32) -> vec2<f32> {
    let e1 = min(e + 1u, n - 1u);
    return vec2<f32>((*a)[r * n4 + e / 4u][e % 4u], (*a)[r * n4 + e1 / 4u][e1 % 4u]);
}

// Chunk c of four rows as the columns of a matrix: `x * m` is the four dot
// products of x with the rows, `m * w` the rows' sum weighted by w.
fn k4(rows: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(k_at(rows.x, c, D), k_at(rows.y, c, D), k_at(rows.z, c, D), k_at(rows.w, c, D));
}

fn v4(rows: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(v_at(rows.x, c, DV), v_at(rows.y, c, DV), v_at(rows.z, c, DV), v_at(rows.w, c, DV));
}

fn q4(rows: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(q_at(rows.x, c, D), q_at(rows.y, c, D), q_at(rows.z, c, D), q_at(rows.w, c, D));
}

fn dout4(rows: vec4<u32>, c: u32) -> mat4x4<f32> {
    return mat4x4<f32>(dout_at(rows.x, c, DV), dout_at(rows.y, c, DV), dout_at(rows.z, c, DV), dout_at(rows.w, c, DV));
}

// ---- scores ----------------------------------------------------------------

fn neg_inf() -> f32 {
    return f32_bits(NEG_INF_BITS);
}

// Hidden scores are exactly −inf, tested by bits (compilers that assume no
// infinities may fold a float comparison).
fn hidden(s: vec4<f32>) -> vec4<bool> {
    return bitcast<vec4<u32>>(s) == vec4<u32>(NEG_INF_BITS);
}

// Scores of queries i and keys j (pairwise) from their dot products: scaled,
// masked, and −inf where the key is hidden from the query.
fn scores(bh: u32, i: vec4<u32>, j: vec4<u32>, dots: vec4<f32>) -> vec4<f32> {
    var s = dots * p.scale;
    if HAS_MASK {
        let base = (bh / p.heads) * p.mask_b + (bh % p.heads) * p.mask_h;
        let ic = min(i, vec4<u32>(p.lq - 1u));
        let jc = min(j, vec4<u32>(p.lk - 1u));
        let at = vec4<u32>(base) + ic * p.mask_q + jc * p.mask_k;
        s += vec4<f32>(mask[at.x], mask[at.y], mask[at.z], mask[at.w]);
    }
    var keep = (i < vec4<u32>(p.lq)) & (j < vec4<u32>(p.lk));
    if CAUSAL {
        keep = keep & (j <= i);
    }
    return select(vec4<f32>(neg_inf()), s, keep);
}

// exp(s − shift), exactly 0 for hidden scores (a CPU driver's exp of −inf
// need not be 0, and a fully hidden row must stay exactly empty).
fn weights(s: vec4<f32>, shift: vec4<f32>) -> vec4<f32> {
    return select(exp(s - shift), vec4<f32>(0.0), hidden(s));
}

// ---- workgroup tiles ---------------------------------------------------------

// The rows of one workgroup: ROWS sets of WG consecutive rows of one
// batch·head; invocation `lid` owns rows first + r·WG + lid, r < ROWS.
struct Tile {
    bh: u32,
    first: u32,
    // The last row of the group (clamped into 0..rows).
    last: u32,
    lid: u32,
    rows: u32,
}

fn tile(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, rows: u32) -> Tile {
    let w = linear_workgroup(wid, nwg);
    let first = (w % p.blocks) * WG * ROWS;
    return Tile(w / p.blocks, first, min(first + WG * ROWS, rows) - 1u, lid, rows);
}

// Row r of the invocation, clamped into 0..rows: rows past the end compute a
// duplicate and store nothing, so control flow stays uniform.
fn row_of(t: Tile, r: u32) -> u32 {
    return min(t.first + r * WG + t.lid, t.rows - 1u);
}

fn row_live(t: Tile, r: u32) -> bool {
    return t.first + r * WG + t.lid < t.rows;
}

// Keys a workgroup of query rows must visit: causal rows see no key past
// their own index, so the last row bounds the loop (uniform across the group).
fn key_end(t: Tile) -> u32 {
    if CAUSAL {
        return min(p.lk, t.last + 1u);
    }
    return p.lk;
}

fn four(i: u32) -> vec4<u32> {
    return vec4<u32>(i) + vec4<u32>(0u, 1u, 2u, 3u);
}

// ---- entry points ----------------------------------------------------------
//
// Within a block of 4 keys (or queries) the matrices s, w, dp, ds hold one
// column per own row r: its values against the 4 rows of the block.

@compute @workgroup_size(WG)
fn attention_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile(wid, nwg, lid, p.lq);
    if t.bh >= p.bh {
        return;
    }
    var x: array<vec4<f32>, CAP>;
    var acc: array<vec4<f32>, CAP>;
    var qi: vec4<u32>;
    for (var r = 0u; r < ROWS; r++) {
        qi[r] = row_of(t, r);
        for (var c = 0u; c < D4; c++) {
            x[r * D4 + c] = q_at(t.bh * p.lq + qi[r], c, D);
        }
    }
    var m = vec4<f32>(neg_inf());
    var l = vec4<f32>(0.0);
    let kend = key_end(t);
    for (var j0 = 0u; j0 < kend; j0 += 4u) {
        let j = four(j0);
        let rows = vec4<u32>(t.bh * p.lk) + min(j, vec4<u32>(p.lk - 1u));
        var s: mat4x4<f32>;
        for (var c = 0u; c < D4; c++) {
            let kc = k4(rows, c);
            for (var r = 0u; r < ROWS; r++) {
                s[r] += x[r * D4 + c] * kc;
            }
        }
        var w: mat4x4<f32>;
        var alpha: vec4<f32>;
        for (var r = 0u; r < ROWS; r++) {
            let sr = scores(t.bh, vec4<u32>(qi[r]), j, s[r]);
            let m_new = max(m[r], max(max(sr.x, sr.y), max(sr.z, sr.w)));
            // While every key so far is hidden, m_new is −inf: shift by 0
            // instead (all weights are 0 then anyway) to keep −inf − −inf out.
            let shift = select(m_new, 0.0, bitcast<u32>(m_new) == NEG_INF_BITS);
            alpha[r] = weights(vec4<f32>(m[r]), vec4<f32>(shift)).x;
            w[r] = weights(sr, vec4<f32>(shift));
            l[r] = l[r] * alpha[r] + dot(w[r], vec4<f32>(1.0));
            m[r] = m_new;
        }
        for (var c = 0u; c < DV4; c++) {
            let vc = v4(rows, c);
            for (var r = 0u; r < ROWS; r++) {
                acc[r * DV4 + c] = acc[r * DV4 + c] * alpha[r] + vc * w[r];
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        if !row_live(t, r) {
            continue;
        }
        let row = t.bh * p.lq + qi[r];
        let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
        for (var e = 0u; e < DV; e += LANES) {
            store_out((row * DV + e) / LANES, pair(&acc, r, DV4, DV, e) * inv);
        }
        lse_out[row] = select(f32_bits(0x7f800000u), m[r] + log(l[r]), l[r] > 0.0);
    }
}

@compute @workgroup_size(WG)
fn attention_backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile(wid, nwg, lid, p.lq);
    if t.bh >= p.bh {
        return;
    }
    var x: array<vec4<f32>, CAP>;
    var g: array<vec4<f32>, CAP>;
    var acc: array<vec4<f32>, CAP>;
    var qi: vec4<u32>;
    var dsum: vec4<f32>;
    var shift: vec4<f32>;
    for (var r = 0u; r < ROWS; r++) {
        qi[r] = row_of(t, r);
        let row = t.bh * p.lq + qi[r];
        for (var c = 0u; c < D4; c++) {
            x[r * D4 + c] = q_at(row, c, D);
        }
        for (var c = 0u; c < DV4; c++) {
            g[r * DV4 + c] = dout_at(row, c, DV);
            dsum[r] += dot(g[r * DV4 + c], o_at(row, c, DV));
        }
        shift[r] = lse[row];
    }
    let kend = key_end(t);
    for (var j0 = 0u; j0 < kend; j0 += 4u) {
        let j = four(j0);
        let rows = vec4<u32>(t.bh * p.lk) + min(j, vec4<u32>(p.lk - 1u));
        var s: mat4x4<f32>;
        for (var c = 0u; c < D4; c++) {
            let kc = k4(rows, c);
            for (var r = 0u; r < ROWS; r++) {
                s[r] += x[r * D4 + c] * kc;
            }
        }
        var dp: mat4x4<f32>;
        for (var c = 0u; c < DV4; c++) {
            let vc = v4(rows, c);
            for (var r = 0u; r < ROWS; r++) {
                dp[r] += g[r * DV4 + c] * vc;
            }
        }
        var ds: mat4x4<f32>;
        for (var r = 0u; r < ROWS; r++) {
            ds[r] = weights(scores(t.bh, vec4<u32>(qi[r]), j, s[r]), vec4<f32>(shift[r])) * (dp[r] - dsum[r]);
        }
        for (var c = 0u; c < D4; c++) {
            let kc = k4(rows, c);
            for (var r = 0u; r < ROWS; r++) {
                acc[r * D4 + c] += kc * ds[r];
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        if !row_live(t, r) {
            continue;
        }
        let row = t.bh * p.lq + qi[r];
        for (var e = 0u; e < D; e += LANES) {
            store_dq((row * D + e) / LANES, pair(&acc, r, D4, D, e) * p.scale);
        }
        delta_out[row] = dsum[r];
    }
}

@compute @workgroup_size(WG)
fn attention_backward_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = tile(wid, nwg, lid, p.lk);
    if t.bh >= p.bh {
        return;
    }
    var x: array<vec4<f32>, CAP>;
    var y: array<vec4<f32>, CAP>;
    var gk: array<vec4<f32>, CAP>;
    var gv: array<vec4<f32>, CAP>;
    var ki: vec4<u32>;
    for (var r = 0u; r < ROWS; r++) {
        ki[r] = row_of(t, r);
        let row = t.bh * p.lk + ki[r];
        for (var c = 0u; c < D4; c++) {
            x[r * D4 + c] = k_at(row, c, D);
        }
        for (var c = 0u; c < DV4; c++) {
            y[r * DV4 + c] = v_at(row, c, DV);
        }
    }
    // Causal: key j is seen by queries i ≥ j, so the group's first key row
    // bounds the loop from below.
    let start = select(0u, t.first, CAUSAL);
    for (var i0 = start; i0 < p.lq; i0 += 4u) {
        let i = four(i0);
        let rows = vec4<u32>(t.bh * p.lq) + min(i, vec4<u32>(p.lq - 1u));
        var s: mat4x4<f32>;
        for (var c = 0u; c < D4; c++) {
            let qc = q4(rows, c);
            for (var r = 0u; r < ROWS; r++) {
                s[r] += x[r * D4 + c] * qc;
            }
        }
        var dp: mat4x4<f32>;
        for (var c = 0u; c < DV4; c++) {
            let gc = dout4(rows, c);
            for (var r = 0u; r < ROWS; r++) {
                dp[r] += y[r * DV4 + c] * gc;
            }
        }
        let shift = vec4<f32>(lse[rows.x], lse[rows.y], lse[rows.z], lse[rows.w]);
        let dsum = vec4<f32>(delta[rows.x], delta[rows.y], delta[rows.z], delta[rows.w]);
        var w: mat4x4<f32>;
        var ds: mat4x4<f32>;
        for (var r = 0u; r < ROWS; r++) {
            w[r] = weights(scores(t.bh, i, vec4<u32>(ki[r]), s[r]), shift);
            ds[r] = w[r] * (dp[r] - dsum);
        }
        for (var c = 0u; c < DV4; c++) {
            let gc = dout4(rows, c);
            for (var r = 0u; r < ROWS; r++) {
                gv[r * DV4 + c] += gc * w[r];
            }
        }
        for (var c = 0u; c < D4; c++) {
            let qc = q4(rows, c);
            for (var r = 0u; r < ROWS; r++) {
                gk[r * D4 + c] += qc * ds[r];
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        if !row_live(t, r) {
            continue;
        }
        let row = t.bh * p.lk + ki[r];
        for (var e = 0u; e < D; e += LANES) {
            store_dk((row * D + e) / LANES, pair(&gk, r, D4, D, e) * p.scale);
        }
        for (var e = 0u; e < DV; e += LANES) {
            store_dv((row * DV + e) / LANES, pair(&gv, r, DV4, DV, e));
        }
    }
}

// ---- dk, dv with a key row shared by SPLIT invocations (GPUs) --------------
//
// attention_backward_dkv keeps four rows (k, v and both gradients) in each
// invocation's registers: 256 floats at head dim 64, more than a GPU thread
// holds without spilling to memory (in the Transformer bench's profile on an
// H200, docs/history/gpu-h200-2026-11-26-session30.log, its two launches took
// 7.6 ms: about 0.1 TFLOP/s). Here SPLIT neighbouring invocations share one key row,
// invocation `lane` holding its chunks lane, lane + SPLIT, ... of each: a
// SPLIT-th of the registers and of the loads of each query row, SPLIT times
// the invocations. The row's two dot products per block of queries (s and
// dP) are summed over its invocations through workgroup memory, in lane
// order, so every lane weighs the block with the same bits. Rows are the
// workgroup's WG / SPLIT consecutive key rows of one batch·head (ROWS = 1).

// Elements e and e + 1 (clamped to the row's last, n − 1) of chunk `v` that
// holds elements 4·(e / 4)..: the pair a store unit takes.
fn chunk_pair(v: vec4<f32>, e: u32, n: u32) -> vec2<f32> {
    return vec2<f32>(v[e % 4u], v[min(e + 1u, n - 1u) % 4u]);
}

@compute @workgroup_size(WG)
fn attention_backward_dkv_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = linear_workgroup(wid, nwg);
    let bh = w / p.blocks;
    if bh >= p.bh {
        return;
    }
    let lane = lid % SPLIT;
    let first = (w % p.blocks) * (WG / SPLIT);
    let own = first + lid / SPLIT;
    // Rows past the end compute a duplicate and store nothing: every
    // invocation reaches the barriers.
    let kj = min(own, p.lk - 1u);
    let row = bh * p.lk + kj;
    var x: array<vec4<f32>, CAP>;
    var y: array<vec4<f32>, CAP>;
    var gk: array<vec4<f32>, CAP>;
    var gv: array<vec4<f32>, CAP>;
    for (var m = 0u; m < D4S; m++) {
        let c = m * SPLIT + lane;
        if c < D4 {
            x[m] = k_at(row, c, D);
        }
    }
    for (var m = 0u; m < DV4S; m++) {
        let c = m * SPLIT + lane;
        if c < DV4 {
            y[m] = v_at(row, c, DV);
        }
    }
    let start = select(0u, first, CAUSAL);
    for (var i0 = start; i0 < p.lq; i0 += 4u) {
        let i = four(i0);
        let rows = vec4<u32>(bh * p.lq) + min(i, vec4<u32>(p.lq - 1u));
        var s = vec4<f32>(0.0);
        for (var m = 0u; m < D4S; m++) {
            let c = m * SPLIT + lane;
            if c < D4 {
                s += x[m] * q4(rows, c);
            }
        }
        var dp = vec4<f32>(0.0);
        for (var m = 0u; m < DV4S; m++) {
            let c = m * SPLIT + lane;
            if c < DV4 {
                dp += y[m] * dout4(rows, c);
            }
        }
        partial[2u * lid] = s;
        partial[2u * lid + 1u] = dp;
        workgroupBarrier();
        let lane0 = lid - lane;
        s = vec4<f32>(0.0);
        dp = vec4<f32>(0.0);
        for (var l = 0u; l < SPLIT; l++) {
            s += partial[2u * (lane0 + l)];
            dp += partial[2u * (lane0 + l) + 1u];
        }
        // The next block overwrites `partial` only after every lane read it.
        workgroupBarrier();
        let shift = vec4<f32>(lse[rows.x], lse[rows.y], lse[rows.z], lse[rows.w]);
        let dsum = vec4<f32>(delta[rows.x], delta[rows.y], delta[rows.z], delta[rows.w]);
        let wt = weights(scores(bh, i, vec4<u32>(kj), s), shift);
        let ds = wt * (dp - dsum);
        for (var m = 0u; m < DV4S; m++) {
            let c = m * SPLIT + lane;
            if c < DV4 {
                gv[m] += dout4(rows, c) * wt;
            }
        }
        for (var m = 0u; m < D4S; m++) {
            let c = m * SPLIT + lane;
            if c < D4 {
                gk[m] += q4(rows, c) * ds;
            }
        }
    }
    if own >= p.lk {
        return;
    }
    for (var m = 0u; m < D4S; m++) {
        let c = m * SPLIT + lane;
        for (var e = 4u * c; c < D4 && e < min(4u * c + 4u, D); e += LANES) {
            store_dk((row * D + e) / LANES, chunk_pair(gk[m] * p.scale, e, D));
        }
    }
    for (var m = 0u; m < DV4S; m++) {
        let c = m * SPLIT + lane;
        for (var e = 4u * c; c < DV4 && e < min(4u * c + 4u, DV); e += LANES) {
            store_dv((row * DV + e) / LANES, chunk_pair(gv[m], e, DV));
        }
    }
}

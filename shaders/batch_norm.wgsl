// Batch normalisation straight on [A, C, B] data (NCHW is A = N, B = H·W;
// layer norm's affine part is A = rows, C = columns, B = 1), with an optional
// residual add and ReLU fused in (gpu-core/src/ops/batch_norm.rs holds the CPU
// twins and the host side):
//   stats        per-channel mean and rstd = 1 / sqrt(biased var + eps), plus
//                the running-stat update (unbiased var), in two levels
//   forward      y = act(xhat · weight + bias [+ res]), xhat = (x - mean) · rstd
//   grad sums    per channel Σdy' and Σdy'·xhat (dy' = dy masked by y > 0
//                when the ReLU is fused): the bias and weight gradients
//   backward     dx = weight·rstd·(dy' - Σdy'/M - xhat·Σdy'xhat/M) in
//                training, weight·rstd·dy' otherwise; dres = dy'
//
// The reductions view the data as [A, K] with K = C·B columns. Level 1 gives
// each thread one column and a chunk of rows: neighbouring threads read
// neighbouring addresses, and chunks × K threads fill any device. Level 2
// gives each channel one workgroup that folds its chunks × B partials in a
// fixed order and a fixed tree, so results are the same bits on every run
// (no atomics). Statistics combine (count, mean, M2) triples with Welford's
// update and Chan's pairwise formula: no E[x²] - E[x]² cancellation.
//
// The activations (x, dy, y, residual; the outputs y, dx, dres) and the
// per-channel inputs of the elementwise entries are read and written only
// through the functions of the storage library included below (generated
// from the binding list in kernels/batch_norm.rs; f32 here, and the f16 and
// texture variants swap that one line). Statistics, weight, bias and the
// sums are f32 in every variant, and so is all arithmetic. The scalar
// entries give thread t the LANES elements from LANES·t (its unit: two per
// f16 word); the vec4 entries' quad q is elements 4q..4q+3 (B a multiple
// of 4, so whole units).
//#include common.wgsl
//#include half.wgsl
//#include batch_norm_io_f32.wgsl

// Threads per level-2 workgroup (the host picks 64 or 256); a power of two
// because the tree halves it.
override WG: u32 = 256u;
// How x becomes xhat: 0 = x is already normalised (layer and group norm's
// affine part), 1 = (x - mean) · rstd with `stats` = [mean; rstd] per channel.
override CENTRE: u32 = 1u;
override HAS_WEIGHT: bool = true;
override HAS_BIAS: bool = true;
override RELU: bool = false;
// f16 activations with the fuser's tail (gpu/tails.rs): the values are
// rounded to f16 before the residual add and before the ReLU, where the
// unfused ops store f16 and read it back, so the bits are theirs.
override ROUND_TAIL: bool = false;
// Backward: the training formula (the statistics depend on x) or the
// per-channel affine one (evaluation, or statistics given).
override TRAIN: bool = true;

struct Params {
    // A: rows (the batch), C: channels, B: positions per (row, channel).
    outer: u32,
    channels: u32,
    inner: u32,
    // Rows of A per level-1 thread, and the number of such chunks.
    chunk: u32,
    chunks: u32,
    eps: f32,
    momentum: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Bindings by entry point (each uses only its own, so globals of different
// types share numbers):
//   stats_partial          x, part_out
//   stats_final            part_in, stats_out
//   stats_final_running    part_in, stats_out, run_mean, run_var (updated in place)
//   eval_stats             run_mean_in, run_var_in, stats_out
//   forward(_res)          x, stats, weight, bias, [res], y_out
//   grad_partial           dy, x, y, stats, part_out
//   grad_final             part_in, dbias_out, dweight_out
//   backward(_res)         dy, x, y, stats, weight, dbias, dweight, dx, [dres]
// (the activation bindings and the per-channel inputs of forward,
// grad_partial and backward are declared by the storage library).
@group(0) @binding(1) var<storage, read> part_in: array<vec2<f32>>;
@group(0) @binding(1) var<storage, read> eval_mean_in: array<f32>;

@group(0) @binding(2) var<storage, read_write> stats_part_out: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> dbias_out: array<f32>;
@group(0) @binding(2) var<storage, read> eval_var_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> final_stats_out: array<f32>;

@group(0) @binding(3) var<storage, read_write> run_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> eval_stats_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> dweight_out: array<f32>;

@group(0) @binding(4) var<storage, read_write> run_var: array<f32>;

@group(0) @binding(5) var<storage, read_write> grad_part_out: array<vec2<f32>>;



// Element i of an input activation, for the reductions (whose threads walk
// columns): lane i % LANES of unit i / LANES.
fn x_at(i: u32) -> f32 {
    return load_x_unit(i / LANES)[i % LANES];
}

fn dy_at(i: u32) -> f32 {
    return load_dy_unit(i / LANES)[i % LANES];
}

fn x2_at(i: u32) -> f32 {
    return load_x2_unit(i / LANES)[i % LANES];
}

fn y_at(i: u32) -> f32 {
    return load_y_unit(i / LANES)[i % LANES];
}

var<workgroup> tree: array<vec4<f32>, WG>;

// ---- level 1 ----------------------------------------------------------------

// The level-1 thread's column k and its rows [a0, a1); false past the end.
struct Slice {
    ok: bool,
    k: u32,
    a0: u32,
    a1: u32,
}

fn slice_of(gid: u32) -> Slice {
    let cols = p.channels * p.inner;
    var s: Slice;
    s.ok = gid < cols * p.chunks;
    s.k = gid % cols;
    s.a0 = (gid / cols) * p.chunk;
    s.a1 = min(s.a0 + p.chunk, p.outer);
    return s;
}

fn global_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return linear_workgroup(wid, nwg) * 256u + lid;
}

// (mean, M2) of the thread's rows of one column, by Welford's update.
@compute @workgroup_size(256)
fn stats_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let gid = global_id(wid, nwg, lid);
    let s = slice_of(gid);
    if !s.ok {
        return;
    }
    let cols = p.channels * p.inner;
    var mean = 0.0;
    var m2 = 0.0;
    var n = 0.0;
    for (var a = s.a0; a < s.a1; a++) {
        let v = x_at(a * cols + s.k);
        n += 1.0;
        let d = v - mean;
        mean += d / n;
        m2 += d * (v - mean);
    }
    stats_part_out[gid] = vec2<f32>(mean, m2);
}

// Σdy' and Σdy'·xhat of the thread's rows of one column.
@compute @workgroup_size(256)
fn grad_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let gid = global_id(wid, nwg, lid);
    let s = slice_of(gid);
    if !s.ok {
        return;
    }
    let cols = p.channels * p.inner;
    let c = s.k / p.inner;
    var ms = vec2<f32>(0.0, 1.0);
    if CENTRE == 1u {
        ms = vec2<f32>(load_bwd_stat(c), load_bwd_stat(p.channels + c));
    }
    var acc = vec2<f32>(0.0, 0.0);
    for (var a = s.a0; a < s.a1; a++) {
        let i = a * cols + s.k;
        let g = masked(vec4<f32>(dy_at(i)), vec4<f32>(y_at(i))).x;
        acc += vec2<f32>(g, g * ((x2_at(i) - ms.x) * ms.y));
    }
    grad_part_out[gid] = acc;
}

// ---- level 2 ----------------------------------------------------------------

// Chan's pairwise combination of (count, mean, M2) triples.
fn chan(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    let n = a.x + b.x;
    if b.x == 0.0 {
        return a;
    }
    if a.x == 0.0 {
        return b;
    }
    let d = b.y - a.y;
    let f = b.x / n;
    return vec4<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f, 0.0);
}

// Combines the workgroup's values in a fixed tree; `STATS` picks Chan's
// formula, otherwise a plain sum. Ends with a barrier so `tree` may be reused.
fn tree_combine(lid: u32, v: vec4<f32>, stats: bool) -> vec4<f32> {
    tree[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if lid < s {
            if stats {
                tree[lid] = chan(tree[lid], tree[lid + s]);
            } else {
                tree[lid] = tree[lid] + tree[lid + s];
            }
        }
        workgroupBarrier();
    }
    let total = tree[0];
    workgroupBarrier();
    return total;
}

// Partial j of channel c: chunk j / B, position j % B.
fn part_index(c: u32, j: u32) -> u32 {
    return (j / p.inner) * p.channels * p.inner + c * p.inner + j % p.inner;
}

// The channel's (count, mean, M2) over all its values.
fn channel_moments(c: u32, lid: u32) -> vec4<f32> {
    let items = p.chunks * p.inner;
    var acc = vec4<f32>(0.0);
    for (var j = lid; j < items; j += WG) {
        let chunk = j / p.inner;
        let rows = f32(min(p.chunk, p.outer - chunk * p.chunk));
        let v = part_in[part_index(c, j)];
        acc = chan(acc, vec4<f32>(rows, v.x, v.y, 0.0));
    }
    return tree_combine(lid, acc, true);
}

fn rstd_of(var_b: f32) -> f32 {
    return 1.0 / sqrt(max(var_b, 0.0) + p.eps);
}

@compute @workgroup_size(WG)
fn stats_final(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so returning keeps the barriers legal.
    let c = linear_workgroup(wid, nwg);
    if c >= p.channels {
        return;
    }
    let m = channel_moments(c, lid);
    if lid == 0u {
        final_stats_out[c] = m.y;
        final_stats_out[p.channels + c] = rstd_of(m.z / m.x);
    }
}

// stats_final plus running = (1 - momentum)·running + momentum·batch, with
// the unbiased variance for running_var (as PyTorch), updated in place.
@compute @workgroup_size(WG)
fn stats_final_running(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = linear_workgroup(wid, nwg);
    if c >= p.channels {
        return;
    }
    let m = channel_moments(c, lid);
    if lid == 0u {
        final_stats_out[c] = m.y;
        final_stats_out[p.channels + c] = rstd_of(m.z / m.x);
        let keep = 1.0 - p.momentum;
        run_mean[c] = keep * run_mean[c] + p.momentum * m.y;
        run_var[c] = keep * run_var[c] + p.momentum * (m.z / (m.x - 1.0));
    }
}

// Σdy' and Σdy'·xhat per channel: the bias and the weight gradients.
@compute @workgroup_size(WG)
fn grad_final(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = linear_workgroup(wid, nwg);
    if c >= p.channels {
        return;
    }
    let items = p.chunks * p.inner;
    // Blocks of 32 summed first keep a long serial f32 sum from drifting.
    var acc = vec4<f32>(0.0);
    for (var j0 = lid; j0 < items; j0 += WG * 32u) {
        var block = vec2<f32>(0.0);
        for (var j = j0; j < min(j0 + WG * 32u, items); j += WG) {
            block += part_in[part_index(c, j)];
        }
        acc += vec4<f32>(block, 0.0, 0.0);
    }
    let total = tree_combine(lid, acc, false);
    if lid == 0u {
        dbias_out[c] = total.x;
        dweight_out[c] = total.y;
    }
}

// Evaluation: [running_mean; 1 / sqrt(running_var + eps)], one thread per channel.
@compute @workgroup_size(64)
fn eval_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = linear_workgroup(wid, nwg) * 64u + lid;
    if c >= p.channels {
        return;
    }
    eval_stats_out[c] = eval_mean_in[c];
    eval_stats_out[p.channels + c] = rstd_of(eval_var_in[c]);
}

// ---- elementwise ------------------------------------------------------------
// The scalar entries give each thread one unit of LANES elements (one in
// f32, two in f16: a whole storage word, so no two threads store into one
// word), each element in its own channel; the entries ending in 4 (when B
// is a multiple of 4) give it four neighbours of one channel with vec4
// loads. The math is written once on vec4; the scalar entries use lane x
// (compilers drop the rest).

// Channel of flat element i.
fn channel_of(i: u32) -> u32 {
    return (i / p.inner) % p.channels;
}

fn total() -> u32 {
    return p.outer * p.channels * p.inner;
}

// Units of LANES elements (the last one part-used when LANES does not divide the total).
fn units() -> u32 {
    return (total() + LANES - 1u) / LANES;
}

// act(xhat · weight + bias + extra) in channel c. The statistics, weight and
// bias bindings are the forward entries' (2, 3, 4).
fn affine(x: vec4<f32>, extra: vec4<f32>, c: u32) -> vec4<f32> {
    var v = x;
    if CENTRE == 1u {
        v = (x - load_fwd_stat(c)) * load_fwd_stat(p.channels + c);
    }
    if HAS_WEIGHT {
        v *= load_fwd_weight(c);
    }
    if HAS_BIAS {
        v += load_fwd_bias(c);
    }
    if ROUND_TAIL {
        v = round_f16(v);
    }
    v += extra;
    if RELU && ROUND_TAIL {
        v = round_f16(v);
    }
    if RELU {
        // The unary table's ReLU, which the fuser merges here (common.wgsl).
        v = relu4(v);
    }
    return v;
}

// The forward of unit t with `extra` (the residual's unit, or zeros) added;
// lanes past the end stay 0.
fn forward_unit(t: u32, extra: vec2<f32>) -> vec2<f32> {
    let x = load_x_unit(t);
    var y = vec2<f32>(0.0);
    for (var l = 0u; l < LANES; l++) {
        let i = t * LANES + l;
        if i < total() {
            y[l] = affine(vec4<f32>(x[l]), vec4<f32>(extra[l]), channel_of(i)).x;
        }
    }
    return y;
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = global_id(wid, nwg, lid);
    if t < units() {
        store_y(t, forward_unit(t, vec2<f32>(0.0)));
    }
}

@compute @workgroup_size(256)
fn forward_res(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = global_id(wid, nwg, lid);
    if t < units() {
        store_y_res(t, forward_unit(t, load_res_unit(t)));
    }
}

@compute @workgroup_size(256)
fn forward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = global_id(wid, nwg, lid);
    if i < total() / 4u {
        store_y_quad(i, affine(load_x_quad(i), vec4<f32>(0.0), channel_of(4u * i)));
    }
}

@compute @workgroup_size(256)
fn forward4_res(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = global_id(wid, nwg, lid);
    if i < total() / 4u {
        store_y_res_quad(i, affine(load_x_quad(i), load_res_quad(i), channel_of(4u * i)));
    }
}

// The gradient behind the fused ReLU: zero where the output was <= 0.
fn masked(dy: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    if RELU {
        return select(vec4<f32>(0.0), dy, relu_passes4(y));
    }
    return dy;
}

// dx from dy' (already masked) in channel c; bindings are the backward
// entries' (statistics 4, weight 5, sums 6 and 7).
fn input_grad(g: vec4<f32>, x: vec4<f32>, c: u32) -> vec4<f32> {
    var mean = 0.0;
    var scale = 1.0;
    if CENTRE == 1u {
        mean = load_bwd_stat(c);
        scale = load_bwd_stat(p.channels + c);
    }
    let rstd = scale;
    if HAS_WEIGHT {
        scale *= load_bwd_weight(c);
    }
    if TRAIN {
        let m = f32(p.outer * p.inner);
        let xhat = (x - mean) * rstd;
        return scale * (g - load_bwd_dbias(c) / m - xhat * (load_bwd_dweight(c) / m));
    }
    return scale * g;
}

// dx and dy' (the residual's gradient) of one unit.
struct UnitGrads {
    dx: vec2<f32>,
    g: vec2<f32>,
}

// The backward of unit t; lanes past the end stay 0.
fn backward_unit(t: u32) -> UnitGrads {
    let dy = load_dy_unit(t);
    let y = load_y_unit(t);
    let x = load_x2_unit(t);
    var out: UnitGrads;
    for (var l = 0u; l < LANES; l++) {
        let i = t * LANES + l;
        if i < total() {
            let g = masked(vec4<f32>(dy[l]), vec4<f32>(y[l])).x;
            out.dx[l] = input_grad(vec4<f32>(g), vec4<f32>(x[l]), channel_of(i)).x;
            out.g[l] = g;
        }
    }
    return out;
}

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = global_id(wid, nwg, lid);
    if t < units() {
        store_dx(t, backward_unit(t).dx);
    }
}

@compute @workgroup_size(256)
fn backward_res(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = global_id(wid, nwg, lid);
    if t < units() {
        let r = backward_unit(t);
        store_dx(t, r.dx);
        store_dres(t, r.g);
    }
}

@compute @workgroup_size(256)
fn backward4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = global_id(wid, nwg, lid);
    if i < total() / 4u {
        let g = masked(load_dy_quad(i), load_y_quad(i));
        store_dx_quad(i, input_grad(g, load_x2_quad(i), channel_of(4u * i)));
    }
}

@compute @workgroup_size(256)
fn backward4_res(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = global_id(wid, nwg, lid);
    if i < total() / 4u {
        let g = masked(load_dy_quad(i), load_y_quad(i));
        store_dx_quad(i, input_grad(g, load_x2_quad(i), channel_of(4u * i)));
        store_dres_quad(i, g);
    }
}

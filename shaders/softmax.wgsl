// Row-wise softmax family over contiguous [rows, cols] data
// (gpu-core/src/ops/softmax.rs, whose CPU twins define the semantics):
//   softmax_fwd  y = softmax(x), or log_softmax(x) when LOG = 1, max-subtracted;
//   softmax_bwd  dx = y·(dy − Σ dy·y), or dx = dy − exp(y)·Σ dy when LOG = 1;
//   ce_fwd       fused cross-entropy: per-row loss and weight, softmax probs;
//   ce_bwd       its gradient with respect to the logits.
// One workgroup per row: threads stride over the columns and combine their
// partial results with a fixed tree, so results are the same on every run.
// The `*_serial` entries (CPU adapters, many rows): one thread per row,
// columns in order (row_serial.wgsl); a workgroup of 32
// threads per short row had left llvmpipe's attention softmax at ~85 cycles
// an element (docs/performance.md).
//
// Cross-entropy follows torch.nn.functional.cross_entropy. Each row has a
// target distribution q over the classes (with class weights w, smoothing e,
// C = cols):
//   class targets t:   q_c = (1 − e)·w_t·[c = t] + (e / C)·w_c
//   probability rows y: q_c = w_c·((1 − e)·y_c + e / C)
// loss = −Σ_c q_c·log p_c and dloss/dx_c = p_c·Σq − q_c. A class target
// equal to the ignore index gives loss 0, weight 0 and a zero gradient; a
// class target ≥ C (which PyTorch rejects) gives NaN loss, weight and
// gradient, and ce_fwd reports it to the index-error record.
//#include common.wgsl
//#include row_serial.wgsl
//#include index_check.wgsl
//#include load_x_f32.wgsl

// Threads per workgroup: 32 or 256 by row length (the host picks); a power of two for the tree.
override WG: u32 = 256u;
// softmax_fwd / softmax_bwd: 1 for log_softmax.
override LOG: u32 = 0u;
// ce_*: 0 = class-index targets (u32 [rows]), 1 = probability targets (f32 [rows, cols], read as bits).
override TARGET: u32 = 0u;
// ce_*: 1 when a class-weight vector [cols] is bound (otherwise binding 3 is a placeholder).
override HAS_WEIGHT: u32 = 0u;

struct Params {
    // The rows [row0, rows) this launch computes, one workgroup each.
    rows: u32,
    cols: u32,
    // ce_*: whether `ignore` is an ignored class index.
    has_ignore: u32,
    ignore: u32,
    // ce_*: label smoothing e in [0, 1].
    smoothing: f32,
    // ce_fwd: the site number for index errors (index_check.rs).
    site: u32,
    // Work past the binding limit runs in ranges of rows (ops/softmax.rs),
    // each binding windows of its buffers: the first row, and the element
    // each kind of binding's window starts at (0 for a whole launch):
    // [rows, cols] f32 buffers, the input x (f32 or f16), per-row vectors.
    row0: u32,
    mat_shift: u32,
    x_shift: u32,
    vec_shift: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Each entry point statically uses only its own bindings, so the globals
// below may share binding numbers with different types.
// softmax_fwd and ce_fwd: the input rows (logits) x, read with load_x
// (load_x_f32.wgsl, or an f16 library in the f16-input variants).
@group(0) @binding(2) var<storage, read_write> y_out: array<f32>;
// softmax_bwd: dy and y, read with load_dy and load_y (row_grads_f32.wgsl,
// or textures in softmax_tex), and dx.
//#include row_grads_f32.wgsl
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
// ce_fwd and ce_bwd
@group(0) @binding(1) var<storage, read> probs_in: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_weight: array<f32>;
@group(0) @binding(6) var<storage, read_write> probs_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> index_error: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;

var<workgroup> sv: array<f32, WG>;

// Non-finite values by bits (a constant expression may not be infinite or NaN).
fn neg_inf() -> f32 {
    return f32_bits(0xff800000u);
}

fn nan() -> f32 {
    return f32_bits(0x7fc00000u);
}

// The workgroup's max (take_max) or sum of one value per thread. Ends with a
// barrier so that the next call may overwrite `sv` only after every thread
// has read the result.
fn tree(lid: u32, v: f32, take_max: bool) -> f32 {
    sv[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if lid < s {
            sv[lid] = select(sv[lid] + sv[lid + s], max(sv[lid], sv[lid + s]), take_max);
        }
        workgroupBarrier();
    }
    let r = sv[0];
    workgroupBarrier();
    return r;
}

// Where row `row` starts in the [rows, cols] windows and in x's.
fn row_base(row: u32) -> u32 {
    return row * p.cols - p.mat_shift;
}

fn x_base(row: u32) -> u32 {
    return row * p.cols - p.x_shift;
}

// The column loops below visit j = first, first + step, ...: (lid, WG) in a
// workgroup per row, (0, 1) in a thread per row.

// Max of one thread's columns of the row of x starting at `xb`.
fn part_max(xb: u32, first: u32, step: u32) -> f32 {
    var m = neg_inf();
    for (var j = first; j < p.cols; j += step) {
        m = max(m, load_x(xb + j));
    }
    return m;
}

// Σ exp(x − m) over one thread's columns.
fn part_sum_exp(xb: u32, m: f32, first: u32, step: u32) -> f32 {
    var s = 0.0;
    for (var j = first; j < p.cols; j += step) {
        s += exp(load_x(xb + j) - m);
    }
    return s;
}

// (max, Σ exp(x − max)) of the row of `x` starting at `xb`, by the workgroup.
fn row_stats(xb: u32, lid: u32) -> vec2<f32> {
    let m = tree(lid, part_max(xb, lid, WG), true);
    return vec2<f32>(m, tree(lid, part_sum_exp(xb, m, lid, WG), false));
}

// Writes one thread's columns of softmax (log-softmax) of row `row`, whose
// statistics are `st`.
fn write_softmax(row: u32, st: vec2<f32>, first: u32, step: u32) {
    let base = row_base(row);
    let xb = x_base(row);
    let log_s = log(st.y);
    for (var j = first; j < p.cols; j += step) {
        // (x − max) is exact for nearby values, so large magnitudes keep their precision.
        let z = load_x(xb + j) - st.x;
        y_out[base + j] = select(exp(z) / st.y, z - log_s, LOG == 1u);
    }
}

@compute @workgroup_size(WG)
fn softmax_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so returning keeps the barriers legal.
    let row = p.row0 + linear_workgroup(wid, nwg);
    if row >= p.rows {
        return;
    }
    write_softmax(row, row_stats(x_base(row), lid), lid, WG);
}

@compute @workgroup_size(SERIAL_ROWS)
fn softmax_fwd_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = serial_row(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let xb = x_base(row);
    let m = part_max(xb, 0u, 1u);
    write_softmax(row, vec2<f32>(m, part_sum_exp(xb, m, 0u, 1u)), 0u, 1u);
}

// One thread's part of the backward row sum: Σ dy·y (Σ dy for log-softmax).
fn part_bwd_sum(base: u32, first: u32, step: u32) -> f32 {
    var acc = 0.0;
    for (var j = first; j < p.cols; j += step) {
        let g = load_dy(base + j);
        acc += select(g * load_y(base + j), g, LOG == 1u);
    }
    return acc;
}

// Writes one thread's columns of dx given the row sum `s`.
fn write_bwd(base: u32, s: f32, first: u32, step: u32) {
    for (var j = first; j < p.cols; j += step) {
        let yj = load_y(base + j);
        let g = load_dy(base + j);
        dx[base + j] = select(yj * (g - s), g - exp(yj) * s, LOG == 1u);
    }
}

@compute @workgroup_size(WG)
fn softmax_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = p.row0 + linear_workgroup(wid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row_base(row);
    write_bwd(base, tree(lid, part_bwd_sum(base, lid, WG), false), lid, WG);
}

@compute @workgroup_size(SERIAL_ROWS)
fn softmax_bwd_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = serial_row(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let base = row_base(row);
    write_bwd(base, part_bwd_sum(base, 0u, 1u), 0u, 1u);
}

fn class_weight(c: u32) -> f32 {
    if HAS_WEIGHT == 1u {
        return weight[c];
    }
    return 1.0;
}

// A row's class target: index t, its weight w_t (0 when ignored, NaN when
// out of range), whether it is ignored and whether it is out of range.
struct RowTarget {
    t: u32,
    w: f32,
    ignored: bool,
    bad: bool,
}

fn row_target(row: u32) -> RowTarget {
    if TARGET == 1u {
        return RowTarget(0u, 1.0, false, false);
    }
    let t = targets[row - p.vec_shift];
    if p.has_ignore == 1u && t == p.ignore {
        return RowTarget(t, 0.0, true, false);
    }
    if t >= p.cols {
        return RowTarget(t, nan(), false, true);
    }
    return RowTarget(t, class_weight(t), false, false);
}

// q_c of the header comment.
fn target_mass(row: u32, c: u32, rt: RowTarget) -> f32 {
    let spread = p.smoothing / f32(p.cols);
    if TARGET == 1u {
        return class_weight(c) * ((1.0 - p.smoothing) * bitcast<f32>(targets[row_base(row) + c]) + spread);
    }
    var q = spread * class_weight(c);
    if c == rt.t {
        q += (1.0 - p.smoothing) * rt.w;
    }
    return q;
}

// One thread's columns of the forward: writes their probabilities and
// returns their part of Σ q·log p.
fn ce_fwd_part(row: u32, rt: RowTarget, st: vec2<f32>, first: u32, step: u32) -> f32 {
    let base = row_base(row);
    let log_s = log(st.y);
    var acc = 0.0;
    for (var j = first; j < p.cols; j += step) {
        let z = load_x(x_base(row) + j) - st.x;
        probs_out[base + j] = exp(z) / st.y;
        // A class target's classes of no mass add nothing, even at a
        // logit of -inf (PyTorch's masked logits: a finite loss, not
        // 0 * -inf); a probability target's zeros are multiplied, as in
        // PyTorch.
        let q = target_mass(row, j, rt);
        if !rt.ignored && !rt.bad && (TARGET == 1u || q != 0.0) {
            acc += q * (z - log_s);
        }
    }
    return acc;
}

// The row's loss from Σ q·log p, and its weight.
fn ce_store(row: u32, rt: RowTarget, total: f32) {
    loss[row - p.vec_shift] = select(-total, nan(), rt.bad);
    row_weight[row - p.vec_shift] = rt.w;
}

@compute @workgroup_size(WG)
fn ce_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = p.row0 + linear_workgroup(wid, nwg);
    if row >= p.rows {
        return;
    }
    let rt = row_target(row);
    if rt.bad && lid == 0u {
        report_index(p.site, rt.t, p.cols);
    }
    let st = row_stats(x_base(row), lid);
    let total = tree(lid, ce_fwd_part(row, rt, st, lid, WG), false);
    if lid == 0u {
        ce_store(row, rt, total);
    }
}

@compute @workgroup_size(SERIAL_ROWS)
fn ce_fwd_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = serial_row(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let rt = row_target(row);
    if rt.bad {
        report_index(p.site, rt.t, p.cols);
    }
    let xb = x_base(row);
    let m = part_max(xb, 0u, 1u);
    ce_store(row, rt, ce_fwd_part(row, rt, vec2<f32>(m, part_sum_exp(xb, m, 0u, 1u)), 0u, 1u));
}

// One thread's part of Σ_c q_c.
fn ce_mass_part(row: u32, rt: RowTarget, first: u32, step: u32) -> f32 {
    var acc = 0.0;
    for (var j = first; j < p.cols; j += step) {
        acc += target_mass(row, j, rt);
    }
    return acc;
}

// Writes one thread's columns of dlogits = g · (p · Σq − q).
fn ce_bwd_write(row: u32, rt: RowTarget, mass: f32, first: u32, step: u32) {
    let base = row_base(row);
    let g = grad[row - p.vec_shift];
    for (var j = first; j < p.cols; j += step) {
        var d = g * (probs_in[base + j] * mass - target_mass(row, j, rt));
        if rt.ignored {
            d = 0.0;
        }
        dlogits[base + j] = select(d, nan(), rt.bad);
    }
}

@compute @workgroup_size(WG)
fn ce_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = p.row0 + linear_workgroup(wid, nwg);
    if row >= p.rows {
        return;
    }
    let rt = row_target(row);
    ce_bwd_write(row, rt, tree(lid, ce_mass_part(row, rt, lid, WG), false), lid, WG);
}

@compute @workgroup_size(SERIAL_ROWS)
fn ce_bwd_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = serial_row(wid, nwg, lid);
    if row >= p.rows {
        return;
    }
    let rt = row_target(row);
    ce_bwd_write(row, rt, ce_mass_part(row, rt, 0u, 1u), 0u, 1u);
}

// Reductions over any set of axes of a strided view. `main`: one workgroup per
// output element (long reductions); `serial`: one thread per output (many
// short ones). Each thread walks the reduced elements j = lid, lid + WG, ... in a
// fixed order and the workgroup combines the partial results with a tree, so
// a sum is the same number on every run. OP numbering is `ReduceOp::code` in
// gpu-core/src/ops/reduce.rs.
//#include common.wgsl
//#include load_x_f32.wgsl

override OP: u32 = 0u;
// Threads per workgroup (the host picks 32 or 256 by reduction length); a
// power of two because the tree halves it.
override WG: u32 = 256u;
// Ranks of the kept and reduced index spaces, fixed per pipeline so the
// index loops unroll into constant indexing (dynamic indexing is slow on
// many drivers).
override KEPT_RANK: u32 = 1u;
override RED_RANK: u32 = 1u;

struct Params {
    // Dims kept in the output (coalesced) and their input strides.
    kept_shape: array<vec4<u32>, 2>,
    kept_strides: array<vec4<u32>, 2>,
    // Dims folded into each output (coalesced), in increasing axis order.
    red_shape: array<vec4<u32>, 2>,
    red_strides: array<vec4<u32>, 2>,
    n_out: u32,
    // Reduced elements per output, at least 1 (the host fills empty reductions).
    m: u32,
    offset: u32,
    // Var's divisor max(m - correction, 0).
    dof: f32,
    // Sums and means in chunks: each thread (`serial`, sums) or workgroup
    // (`main`) folds `chunk` reduced elements of one of `chunks` consecutive
    // ranges and writes partial sum (range, output) at range · n_out +
    // output (a mean's divided by m), which a second launch sums. Other ops
    // and short reductions: chunks = 1, chunk = m.
    chunk: u32,
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The input x (binding 1) is read with load_x: load_x_f32.wgsl, or an f16
// library in the f16-input variants (element offsets either way).
// f32 bits for value results, indices for ArgMax/ArgMin.
@group(0) @binding(2) var<storage, read_write> y: array<u32>;

var<workgroup> sv: array<f32, WG>;
var<workgroup> si: array<u32, WG>;

// Marks a thread that saw no element (m < WG).
const NONE: u32 = 0xffffffffu;

// By bits: `v != v` may be folded away by compilers that assume no NaNs.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Whether (vb, ib) replaces (va, ia) as the running max (OP 2, 4) or min
// (OP 3, 5). As in PyTorch a NaN wins over numbers and ties go to the lower
// index; the index test matters because thread t holds indices t, t + WG, ...
// (Comparisons in select are parenthesised: `a < b, c > d` would parse as a template list.)
fn beats(vb: f32, ib: u32, va: f32, ia: u32) -> bool {
    if ib == NONE {
        return false;
    }
    if ia == NONE {
        return true;
    }
    let nb = is_nan(vb);
    let na = is_nan(va);
    if nb || na {
        return nb && (!na || ib < ia);
    }
    if vb == va {
        return ib < ia;
    }
    return select((vb < va), (vb > va), OP == 2u || OP == 4u);
}

// The reduced elements from j, `step` at a time (see Walk in common.wgsl):
// `red_load(base, w)` then `red_next(&w)`.
fn red_walk(j: u32, step: u32) -> Walk {
    return walk_from(j, step, RED_RANK, p.red_shape);
}

fn red_next(w: ptr<function, Walk>) {
    walk_next(w, RED_RANK, p.red_shape);
}

fn red_load(base: u32, w: Walk) -> f32 {
    return load_x(base + walk_offset(w, RED_RANK, p.red_strides));
}

// The workgroup's total of one value per thread. Ends with a barrier so that
// a second call may overwrite `sv` only after every thread has read the total.
fn tree_sum(lid: u32, v: f32) -> f32 {
    sv[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if lid < s {
            sv[lid] = sv[lid] + sv[lid + s];
        }
        workgroupBarrier();
    }
    let total = sv[0];
    workgroupBarrier();
    return total;
}

fn store(o: u32, lid: u32, v: f32) {
    if lid == 0u {
        y[o] = bitcast<u32>(v);
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so returning keeps the barriers legal.
    // Workgroup `w` folds output o's range (w / n_out) of `chunk` elements:
    // a long sum over few outputs (a loss's mean over a whole tensor) then
    // spreads over many workgroups instead of one per output.
    let w_id = linear_workgroup(wid, nwg);
    if w_id >= p.n_out * p.chunks {
        return;
    }
    let o = w_id % p.n_out;
    let lo = (w_id / p.n_out) * p.chunk;
    let hi = min(p.m, lo + p.chunk);
    let base = p.offset + strided_offset(o, KEPT_RANK, p.kept_shape, p.kept_strides);

    if OP >= 2u && OP <= 5u {
        var bv = 0.0;
        var bi = NONE;
        var w = red_walk(lid, WG);
        for (var j = lid; j < p.m; j += WG) {
            let v = red_load(base, w);
            red_next(&w);
            if beats(v, j, bv, bi) {
                bv = v;
                bi = j;
            }
        }
        sv[lid] = bv;
        si[lid] = bi;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s = s >> 1u) {
            if lid < s && beats(sv[lid + s], si[lid + s], sv[lid], si[lid]) {
                sv[lid] = sv[lid + s];
                si[lid] = si[lid + s];
            }
            workgroupBarrier();
        }
        if lid == 0u {
            y[o] = select(bitcast<u32>(sv[0]), si[0], OP >= 4u);
        }
        return;
    }

    var acc = 0.0;
    var w = red_walk(lo + lid, WG);
    for (var j = lo + lid; j < hi; j += WG) {
        acc += red_load(base, w);
        red_next(&w);
    }
    let total = tree_sum(lid, acc);
    if OP == 0u {
        store(w_id, lid, total);
        return;
    }
    let mean = total / f32(p.m);
    if OP == 1u {
        store(w_id, lid, mean);
        return;
    }
    // Var, second pass: squared deviations from the mean (no E[x²] - E[x]² cancellation).
    var dev = 0.0;
    w = red_walk(lid, WG);
    for (var j = lid; j < p.m; j += WG) {
        let d = red_load(base, w) - mean;
        red_next(&w);
        dev += d * d;
    }
    store(o, lid, variance(tree_sum(lid, dev)));
}

// Var from the sum of squared deviations: m2 / dof, with IEEE m2 / 0 spelled
// out (WGSL does not promise infinities from a division).
fn variance(m2: f32) -> f32 {
    if p.dof > 0.0 {
        return m2 / p.dof;
    }
    return select(f32_bits(0x7f800000u), f32_bits(0x7fc00000u), !(m2 > 0.0));
}

// One thread per output walking its reduced elements in order: for many
// outputs with few elements each (bias gradients, batch statistics, sums over
// the batch), where a workgroup per output would leave most threads idle.
@compute @workgroup_size(64)
fn serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear_workgroup(wid, nwg) * 64u + lid;
    if t >= p.n_out * p.chunks {
        return;
    }
    // Output o, reduced range [lo, hi) (the whole block unless chunked).
    let o = t % p.n_out;
    let lo = (t / p.n_out) * p.chunk;
    let hi = min(p.m, lo + p.chunk);
    let base = p.offset + strided_offset(o, KEPT_RANK, p.kept_shape, p.kept_strides);
    if OP >= 2u && OP <= 5u {
        var bv = 0.0;
        var bi = NONE;
        var w = red_walk(0u, 1u);
        for (var j = 0u; j < p.m; j++) {
            let v = red_load(base, w);
            red_next(&w);
            if beats(v, j, bv, bi) {
                bv = v;
                bi = j;
            }
        }
        y[o] = select(bitcast<u32>(bv), bi, OP >= 4u);
        return;
    }
    // Blocked summation: a running f32 sum over thousands of elements drifts
    // (~1e-5 relative at 2048); summing blocks of 32 first and then the
    // block sums keeps the error near the tree reduction's. (Kahan's
    // compensation is no use here: drivers may reassociate it away.)
    var acc = 0.0;
    var w = red_walk(lo, 1u);
    for (var j0 = lo; j0 < hi; j0 += 32u) {
        var part = 0.0;
        for (var j = j0; j < min(j0 + 32u, hi); j++) {
            part += red_load(base, w);
            red_next(&w);
        }
        acc += part;
    }
    if OP == 0u {
        y[t] = bitcast<u32>(acc);
        return;
    }
    let mean = acc / f32(p.m);
    if OP == 1u {
        y[o] = bitcast<u32>(mean);
        return;
    }
    var dev = 0.0;
    w = red_walk(0u, 1u);
    for (var j = 0u; j < p.m; j++) {
        let d = red_load(base, w) - mean;
        red_next(&w);
        dev += d * d;
    }
    y[o] = bitcast<u32>(variance(dev));
}

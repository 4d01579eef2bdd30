// Row normalisation, the fused kernel behind layer, group and instance norm
// (gpu-core/src/ops/norm.rs holds the CPU twins; batch norm has batch_norm.wgsl):
//   forward   y = (x - mean) * rstd, rstd = 1 / sqrt(biased var + eps), per row
//   backward  dx = rstd * (dy - mean(dy) - y * mean(dy * y)), per row
// and with layer norm's affine in the same launches (AFFINE; one weight and
// bias per column):
//   forward   y as above, and z = y * w + b
//   backward  the same dx with dy * w in place of dy (z's gradient)
//
// One workgroup per contiguous row. Threads stride over the row in a fixed
// order and combine partial sums with a fixed tree, so results are the same
// bits on every run. The variance takes a second pass over the centred
// values (no E[x²] - E[x]² cancellation).
// `normalize_rows_serial` / `normalize_rows_backward_serial` (CPU adapters,
// many rows): one thread per row, columns in order (row_serial.wgsl).
//#include common.wgsl
//#include row_serial.wgsl
//#include load_x_f32.wgsl

// Threads per workgroup (the host picks 32 or 256 by row length); a power of
// two because the tree halves it.
override WG: u32 = 256u;

struct Params {
    // The rows [row0, rows) this launch computes, one workgroup each.
    rows: u32,
    cols: u32,
    eps: f32,
    // Ranges of rows past the binding limit (ops/rows.rs): the first row and
    // where the windows of [rows, cols] f32 buffers, of x, and of per-row
    // vectors start (0 for a whole launch).
    row0: u32,
    mat_shift: u32,
    x_shift: u32,
    vec_shift: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Forward: x, read with load_x (load_x_f32.wgsl, or an f16 library in the
// f16-input variants). Backward: dy and y, read with load_dy and load_y
// (row_grads_f32.wgsl, or textures in norm_tex).
//#include row_grads_f32.wgsl
// Each entry point statically uses only its own bindings, so the globals
// below may share binding numbers with different types:
//   forward   x, w, b, y, z, mean, rstd
//   backward  dy, y, rstd, w, dx
// (w, b and z are neither read nor written below their AFFINE level: the
// host binds some other buffer there.)
@group(0) @binding(2) var<storage, read> w_fwd: array<f32>;
@group(0) @binding(3) var<storage, read> b_fwd: array<f32>;
@group(0) @binding(4) var<storage, read_write> y_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> z_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(3) var<storage, read> rstd_in: array<f32>;
@group(0) @binding(4) var<storage, read> w_bwd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

// 0: no affine; 1: a weight; 2: a weight and a bias.
override AFFINE: u32 = 0u;

var<workgroup> part: array<vec2<f32>, WG>;

// The workgroup's totals of two values per thread. Ends with a barrier so a
// second call may overwrite `part` only after every thread read the totals.
fn tree_sum2(lid: u32, v: vec2<f32>) -> vec2<f32> {
    part[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s >> 1u) {
        if lid < s {
            part[lid] = part[lid] + part[lid + s];
        }
        workgroupBarrier();
    }
    let total = part[0];
    workgroupBarrier();
    return total;
}

// The column loops below visit j = first, first + step, ...: (lid, WG) in a
// workgroup per row, (0, 1) in a thread per row. `total` combines the
// threads' partial sums of a row: `tree_sum2`, or nothing for one thread.

// Σ x over one thread's columns of the row of x starting at `xb`.
fn part_sum(xb: u32, first: u32, step: u32) -> f32 {
    var s = 0.0;
    for (var j = first; j < p.cols; j += step) {
        s += load_x(xb + j);
    }
    return s;
}

// (Σ d, Σ d²) of one thread's deviations d = x - m0.
fn part_moments(xb: u32, m0: f32, first: u32, step: u32) -> vec2<f32> {
    var q = vec2<f32>(0.0, 0.0);
    for (var j = first; j < p.cols; j += step) {
        let d = load_x(xb + j) - m0;
        q += vec2<f32>(d, d * d);
    }
    return q;
}

// Row r's rstd from its rounded mean m0 and the deviations' mean moments.
// Second pass about the rounded mean m0: the deviations' own mean `shift`
// is the rounding error of m0 (the corrected two-pass algorithm), so
// y = ((x - m0) - shift) * rstd keeps the digits that an f32 mean of large
// values would lose.
struct RowNorm {
    m0: f32,
    shift: f32,
    rstd: f32,
}

fn row_norm(m0: f32, moments: vec2<f32>) -> RowNorm {
    let shift = moments.x;
    return RowNorm(m0, shift, 1.0 / sqrt(max(moments.y - shift * shift, 0.0) + p.eps));
}

// Writes one thread's columns of y (and z); the first thread also the statistics.
fn write_norm(r: u32, nr: RowNorm, first: u32, step: u32) {
    let base = r * p.cols - p.mat_shift;
    let xb = r * p.cols - p.x_shift;
    for (var j = first; j < p.cols; j += step) {
        let y = ((load_x(xb + j) - nr.m0) - nr.shift) * nr.rstd;
        y_out[base + j] = y;
        if AFFINE > 0u {
            var z = y * w_fwd[j];
            if AFFINE > 1u {
                z += b_fwd[j];
            }
            z_out[base + j] = z;
        }
    }
    if first == 0u {
        mean_out[r - p.vec_shift] = nr.m0 + nr.shift;
        rstd_out[r - p.vec_shift] = nr.rstd;
    }
}

@compute @workgroup_size(WG)
fn normalize_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so returning keeps the barriers legal.
    let r = p.row0 + linear_workgroup(wid, nwg);
    if r >= p.rows {
        return;
    }
    let xb = r * p.cols - p.x_shift;
    let n = f32(p.cols);
    let m0 = tree_sum2(lid, vec2<f32>(part_sum(xb, lid, WG), 0.0)).x / n;
    write_norm(r, row_norm(m0, tree_sum2(lid, part_moments(xb, m0, lid, WG)) / n), lid, WG);
}

@compute @workgroup_size(SERIAL_ROWS)
fn normalize_rows_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = serial_row(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    let xb = r * p.cols - p.x_shift;
    let n = f32(p.cols);
    let m0 = part_sum(xb, 0u, 1u) / n;
    write_norm(r, row_norm(m0, part_moments(xb, m0, 0u, 1u) / n), 0u, 1u);
}

// Column j of the row's output gradient at `at`: dy, or dy * w (AFFINE).
fn grad_at(at: u32, j: u32) -> f32 {
    if AFFINE > 0u {
        return load_dy(at) * w_bwd[j];
    }
    return load_dy(at);
}

// (Σ g, Σ g·y) over one thread's columns of the row starting at `base`.
fn part_grads(base: u32, first: u32, step: u32) -> vec2<f32> {
    var s = vec2<f32>(0.0, 0.0);
    for (var j = first; j < p.cols; j += step) {
        let g = grad_at(base + j, j);
        s += vec2<f32>(g, g * load_y(base + j));
    }
    return s;
}

// Writes one thread's columns of dx given the row's (mean g, mean g·y).
fn write_norm_grad(r: u32, means: vec2<f32>, first: u32, step: u32) {
    let base = r * p.cols - p.mat_shift;
    let rstd = rstd_in[r - p.vec_shift];
    for (var j = first; j < p.cols; j += step) {
        dx[base + j] = rstd * (grad_at(base + j, j) - means.x - load_y(base + j) * means.y);
    }
}

@compute @workgroup_size(WG)
fn normalize_rows_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = p.row0 + linear_workgroup(wid, nwg);
    if r >= p.rows {
        return;
    }
    let base = r * p.cols - p.mat_shift;
    write_norm_grad(r, tree_sum2(lid, part_grads(base, lid, WG)) / f32(p.cols), lid, WG);
}

@compute @workgroup_size(SERIAL_ROWS)
fn normalize_rows_backward_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = serial_row(wid, nwg, lid);
    if r >= p.rows {
        return;
    }
    write_norm_grad(r, part_grads(r * p.cols - p.mat_shift, 0u, 1u) / f32(p.cols), 0u, 1u);
}

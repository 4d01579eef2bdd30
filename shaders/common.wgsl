// Helpers shared by the kernels. A kernel pulls them in with the line
// `//#include common.wgsl` (resolved by gpu-core's shader registry).

// Kernels launch a linear number of workgroups that the host folds into an
// (x, y) grid when it exceeds 65,535; this rebuilds the linear id.
fn linear_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// Buffer index of the i-th element (row-major order) of a strided view: a
// division per dim. Kernels that visit many elements of one view walk it
// instead (Walk below).
fn strided_offset(i: u32, rank: u32, shape: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>) -> u32 {
    return walk_offset(walk_from(i, 0u, rank, shape), rank, strides);
}

// A walk through a view's elements in row-major order, `step` elements at a
// time, with no division per element: the multi-index is kept and advanced
// digit by digit with carries (strided_offset divides by every dim per
// element, which CPU drivers scalarise and GPUs emulate). `step` is held as
// digits of the same mixed radix; a walk that passes the view's end wraps,
// so its user stops by counting elements.
struct Walk {
    idx: array<u32, 8>,
    step: array<u32, 8>,
}

// The walk from element i (row-major over `shape`), `step` at a time.
fn walk_from(i: u32, step: u32, rank: u32, shape: array<vec4<u32>, 2>) -> Walk {
    var sh = shape;
    var w: Walk;
    var rem = i;
    var srem = step;
    for (var k = 0u; k < rank; k++) {
        let d = rank - 1u - k;
        let n = sh[d / 4u][d % 4u];
        w.idx[d] = rem % n;
        w.step[d] = srem % n;
        rem = rem / n;
        srem = srem / n;
    }
    return w;
}

// Moves `w` on by its step (one compare and subtract per dim: a digit plus a
// step digit plus a carry is below twice the dim).
fn walk_next(w: ptr<function, Walk>, rank: u32, shape: array<vec4<u32>, 2>) {
    var sh = shape;
    var carry = 0u;
    for (var k = 0u; k < rank; k++) {
        let d = rank - 1u - k;
        let n = sh[d / 4u][d % 4u];
        let v = (*w).idx[d] + (*w).step[d] + carry;
        carry = select(0u, 1u, v >= n);
        (*w).idx[d] = v - carry * n;
    }
}

// Buffer index (before the view's offset) of the walk's element in a view with `strides`.
fn walk_offset(w: Walk, rank: u32, strides: array<vec4<u32>, 2>) -> u32 {
    var st = strides;
    var off = 0u;
    for (var d = 0u; d < rank; d++) {
        off += w.idx[d] * st[d / 4u][d % 4u];
    }
    return off;
}

// The f32 with these bits. A constant expression may not be infinite or
// NaN (WGSL; Chrome's Tint rejects `bitcast<f32>(0x7f800000u)`, which
// naga accepts): non-finite constants go through this function's
// parameter, which is never a constant expression.
fn f32_bits(bits: u32) -> f32 {
    return bitcast<f32>(bits);
}

// IEEE pow for every sign of the base (WGSL's pow is undefined for x <= 0).
fn pow_ieee(x: f32, y: f32) -> f32 {
    if y == 0.0 {
        return 1.0;
    }
    let inf = f32_bits(0x7f800000u);
    if x == 0.0 {
        return select(0.0, inf, y < 0.0);
    }
    let m = pow(abs(x), y);
    if x > 0.0 {
        return m;
    }
    if floor(y) != y {
        return f32_bits(0x7fc00000u);
    }
    let odd = abs(y) < 16777216.0 && (i32(y) & 1) == 1;
    return select(m, -m, odd);
}

// ReLU as PyTorch computes it, x < 0 ? 0 : x, so that NaN and -0.0 pass
// unchanged (WGSL leaves max(NaN, 0) to the implementation). Every ReLU
// uses it: the unary table's row and the fused ones (batch norm's,
// pooling's, the products' stores, the RNN's cell); the Rust twin is
// `kernels::unary::relu`.
fn relu(v: f32) -> f32 {
    return select(v, 0.0, v < 0.0);
}

fn relu4(v: vec4<f32>) -> vec4<f32> {
    return select(v, vec4<f32>(0.0), v < vec4<f32>(0.0));
}

// Whether a ReLU with output y passes its gradient: not where y <= 0 (as
// PyTorch's threshold_backward; a NaN output passes it).
fn relu_passes(y: f32) -> bool {
    return !(y <= 0.0);
}

fn relu_passes4(y: vec4<f32>) -> vec4<bool> {
    return !(y <= vec4<f32>(0.0));
}

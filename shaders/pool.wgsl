// 2-D pooling over dense NCHW data seen as [planes, H, W] (planes = N * C),
// with PyTorch's semantics; the CPU twins are in gpu-core/src/ops/pool.rs.
//   max_forward   out = max over a dilated window (padding reads as -inf),
//                 argmax = y * W + x of the max (first on ties, NaN wins);
//                 with p.relu, the max of relu(x) (= relu of the max), its
//                 argmax NONE where that max is not positive, so the backward
//                 below applies ReLU's derivative too (relu then max pooling
//                 in one launch each way, same bits as the two ops)
//   max_backward  dx[y, x] = Σ g over the windows whose argmax is (y, x)
//   avg_forward   out = Σ window / divisor (fixed or, with ADAPTIVE, adaptive windows)
//   avg_backward  dx[y, x] = Σ g / divisor over the windows holding (y, x)
//
// Both backward passes are gathers: one thread per input pixel walks the few
// windows that can reach it, in a fixed order. No atomics, so gradients are
// the same bits on every run.
//
// The values (src, out, dx) and the argmax max_backward reads are read and
// written through pool_io_f32.wgsl (load_src, load_arg, store_out,
// store_dx; generated from the binding list in kernels/pool.rs); the
// variants swap that include for the f16 libraries (pool_f16,
// pool_f16_native) or the texture one (pool_tex). The backward passes store
// through grad_tail (pool_tail.wgsl; pool_relu_grad swaps it and the
// storage library for a ReLU's gradient merged into the store).
// Arithmetic is f32 either way, and each thread computes the LANES elements
// of its unit (two per f16 word), each from its own window.
//#include common.wgsl
//#include pool_io_f32.wgsl
//#include pool_tail.wgsl

// Adaptive average windows: start = floor(i * H / OH), end = ceil((i + 1) * H / OH).
override ADAPTIVE: bool = false;
// Window geometry (unused by adaptive windows); each geometry is a
// pipeline of its own, and models use one or two.
//#include window.wgsl
// The plane: input (H, W) and output (OH, OW) sizes. Constants, like the
// window, so that splitting a thread's element index into plane, row and
// column divides by constants (a multiply and shift, vectorised; a division
// by a uniform is three scalar `div`s per lane on CPU drivers and a long
// sequence on GPUs). A model pools a few plane sizes; the batch (planes)
// stays a run-time size.
override H: u32 = 1u;
override W: u32 = 1u;
override OH: u32 = 1u;
override OW: u32 = 1u;

struct Params {
    // Threads: output elements (forward) or input elements (backward).
    n: u32,
    // Padding; kernel, stride and dilation are the window.wgsl constants.
    ph: u32,
    pw: u32,
    // avg: 1 when padded positions count in the divisor.
    count_include_pad: u32,
    // max_forward: 1 to pool relu(x) (the ReLU before the pooling, fused).
    relu: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Each entry point statically uses only its own bindings, so the globals
// may share binding numbers with different types (src at 1, arg (read) and
// out at 2 and dx at 3 are the storage library's):
//   max_forward  src, out, arg_out     max_backward  src, arg_in, dx
//   avg_forward  src, out              avg_backward  src, out (= dx)
@group(0) @binding(3) var<storage, read_write> arg_out: array<u32>;

// Argmax of a window without a single in-bounds element (never equals a pixel).
const NONE: u32 = 0xffffffffu;

// By bits: `v != v` may be folded away by compilers that assume no NaNs.
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn thread_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return linear_workgroup(wid, nwg) * 256u + lid;
}

// Average window i along one dim of `size` (output `osize`, kernel k, stride
// s, padding pad): (first, end) of its in-bounds rows and its length
// counting padding (PyTorch's pool_size factor).
fn avg_window(i: u32, size: u32, osize: u32, k: u32, s: u32, pad: u32) -> vec3<u32> {
    if ADAPTIVE {
        let lo = (i * size) / osize;
        let hi = ((i + 1u) * size + osize - 1u) / osize;
        return vec3<u32>(lo, hi, hi - lo);
    }
    // In padded coordinates (shifted by +pad, so nothing is negative).
    let start = i * s;
    let end = min(start + k, size + 2u * pad);
    // Clamped into the unpadded rows; a window lying wholly in the padding
    // comes out empty (lo == hi) instead of wrapping around.
    let lo = min(max(start, pad), size + pad) - pad;
    let hi = max(min(end, size + pad), pad) - pad;
    return vec3<u32>(lo, max(hi, lo), end - start);
}

// The windows that can hold pixel `y` along one dim, as a range [lo, hi):
// fixed windows span `extent` = (k - 1) * dilation + 1 padded rows.
fn reaching(y: u32, size: u32, osize: u32, extent: u32, s: u32, pad: u32) -> vec2<u32> {
    if ADAPTIVE {
        let lo = (y * osize) / size;
        let hi = min(((y + 1u) * osize + size - 1u) / size, osize);
        return vec2<u32>(lo, hi);
    }
    // Window i covers padded rows [i * s, i * s + extent).
    let yp = y + pad;
    var lo = 0u;
    if yp >= extent {
        lo = (yp - extent) / s + 1u;
    }
    return vec2<u32>(lo, min(yp / s + 1u, osize));
}

fn avg_divisor(wy: vec3<u32>, wx: vec3<u32>) -> f32 {
    if ADAPTIVE || p.count_include_pad != 0u {
        return f32(wy.z * wx.z);
    }
    return f32((wy.y - wy.x) * (wx.y - wx.x));
}

// Element l of a unit: `v` with lane l set to `x`.
fn set_lane(v: vec2<f32>, l: u32, x: f32) -> vec2<f32> {
    return select(vec2<f32>(v.x, x), vec2<f32>(x, v.y), l == 0u);
}

// Max pooling's output element o: its value and argmax, written to arg_out[o].
fn max_at(o: u32) -> f32 {
    let ox = o % OW;
    let oy = (o / OW) % OH;
    let base = (o / (OW * OH)) * H * W;
    var best = f32_bits(0xff800000u);
    var arg = NONE;
    for (var ky = 0u; ky < KH; ky++) {
        // Padded coordinate; rows inside the padding are skipped (they read as -inf).
        let yp = oy * SH + ky * DH;
        if yp < p.ph || yp >= H + p.ph {
            continue;
        }
        let y = yp - p.ph;
        for (var kx = 0u; kx < KW; kx++) {
            let xp = ox * SW + kx * DW;
            if xp < p.pw || xp >= W + p.pw {
                continue;
            }
            let x = xp - p.pw;
            var v = load_src(base + y * W + x);
            if p.relu != 0u {
                // The ReLU op's own expression (unary table): the same bits.
                v = relu(v);
            }
            // PyTorch's rule: a larger value or any NaN takes over.
            if arg == NONE || v > best || is_nan(v) {
                best = v;
                arg = y * W + x;
            }
        }
    }
    // ReLU's derivative is 0 where its output is <= 0: such a window's
    // maximum passes no gradient back (a window with no element keeps its
    // -inf, as the two ops would give; a NaN maximum passes it).
    if p.relu != 0u && !relu_passes(best) {
        arg = NONE;
    }
    arg_out[o] = arg;
    return best;
}

// Max pooling's input gradient at element i: the f32 sum of the output
// gradients whose argmax it is.
fn max_grad_at(i: u32) -> f32 {
    let x = i % W;
    let y = (i / W) % H;
    let obase = (i / (W * H)) * OH * OW;
    let me = y * W + x;
    let eh = (KH - 1u) * DH + 1u;
    let ew = (KW - 1u) * DW + 1u;
    if SH >= eh && SW >= ew {
        // Windows that do not overlap (pooling's usual stride = kernel): the
        // pixel lies in at most one window, found by a division by the
        // constant stride, and the gather below is one branch-free select.
        let yp = y + p.ph;
        let xp = x + p.pw;
        let oy = yp / SH;
        let ox = xp / SW;
        let inside = yp - oy * SH < eh && xp - ox * SW < ew && oy < OH && ox < OW;
        let o = obase + min(oy, OH - 1u) * OW + min(ox, OW - 1u);
        return select(0.0, load_src(o), inside && load_arg(o) == me);
    }
    let ry = reaching(y, H, OH, eh, SH, p.ph);
    let rx = reaching(x, W, OW, ew, SW, p.pw);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy++) {
        for (var ox = rx.x; ox < rx.y; ox++) {
            let o = obase + oy * OW + ox;
            if load_arg(o) == me {
                acc += load_src(o);
            }
        }
    }
    return acc;
}

// Average pooling's output element o.
fn avg_at(o: u32) -> f32 {
    let ox = o % OW;
    let oy = (o / OW) % OH;
    let base = (o / (OW * OH)) * H * W;
    let wy = avg_window(oy, H, OH, KH, SH, p.ph);
    let wx = avg_window(ox, W, OW, KW, SW, p.pw);
    var acc = 0.0;
    for (var y = wy.x; y < wy.y; y++) {
        for (var x = wx.x; x < wx.y; x++) {
            acc += load_src(base + y * W + x);
        }
    }
    return acc / avg_divisor(wy, wx);
}

// Average pooling's input gradient at element i.
fn avg_grad_at(i: u32) -> f32 {
    let x = i % W;
    let y = (i / W) % H;
    let obase = (i / (W * H)) * OH * OW;
    let ry = reaching(y, H, OH, KH, SH, p.ph);
    let rx = reaching(x, W, OW, KW, SW, p.pw);
    var acc = 0.0;
    for (var oy = ry.x; oy < ry.y; oy++) {
        let wy = avg_window(oy, H, OH, KH, SH, p.ph);
        if y < wy.x || y >= wy.y {
            continue;
        }
        for (var ox = rx.x; ox < rx.y; ox++) {
            let wx = avg_window(ox, W, OW, KW, SW, p.pw);
            if x < wx.x || x >= wx.y {
                continue;
            }
            acc += load_src(obase + oy * OW + ox) / avg_divisor(wy, wx);
        }
    }
    return acc;
}

// Threads are units of LANES elements (p.n counts elements); lanes past
// p.n stay 0.
@compute @workgroup_size(256)
fn max_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    if t * LANES >= p.n {
        return;
    }
    var v = vec2<f32>(0.0);
    for (var l = 0u; l < LANES && t * LANES + l < p.n; l++) {
        v = set_lane(v, l, max_at(t * LANES + l));
    }
    store_out(t, v);
}

@compute @workgroup_size(256)
fn max_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    if t * LANES >= p.n {
        return;
    }
    var v = vec2<f32>(0.0);
    for (var l = 0u; l < LANES && t * LANES + l < p.n; l++) {
        v = set_lane(v, l, max_grad_at(t * LANES + l));
    }
    store_dx(t, grad_tail(t, v));
}

@compute @workgroup_size(256)
fn avg_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    if t * LANES >= p.n {
        return;
    }
    var v = vec2<f32>(0.0);
    for (var l = 0u; l < LANES && t * LANES + l < p.n; l++) {
        v = set_lane(v, l, avg_at(t * LANES + l));
    }
    store_out(t, v);
}

@compute @workgroup_size(256)
fn avg_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = thread_id(wid, nwg, lid);
    if t * LANES >= p.n {
        return;
    }
    var v = vec2<f32>(0.0);
    for (var l = 0u; l < LANES && t * LANES + l < p.n; l++) {
        v = set_lane(v, l, avg_grad_at(t * LANES + l));
    }
    store_out(t, grad_tail(t, v));
}

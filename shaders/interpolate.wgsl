// 2-D interpolation of dense NCHW data seen as [planes, IH, IW] -> [planes,
// OH, OW], PyTorch's F.interpolate in modes nearest and bilinear (the CPU
// twin, whose arithmetic this follows step for step, is
// gpu-core/src/kernels/interpolate.rs):
//   forward   one thread per output pixel: the pixel at floor(dst * scale)
//             (nearest; dst itself at the same size, dst / 2 at double), or the 2 x 2 pixels around the source position
//             weighted (bilinear)
//   backward  one thread per input pixel: the weighted sum of the output
//             gradients of the pixels that read it, in row-major output
//             order. The output pixels that can read input row i are found
//             by binary searches over the forward's own index arithmetic
//             (the first input row never decreases along the output), so
//             no thread adds into another's pixel: no atomics, the same
//             bits on every run.
//#include common.wgsl

struct Params {
    // Threads: output pixels (forward) or input pixels (backward), all planes.
    n: u32,
    ih: u32,
    iw: u32,
    oh: u32,
    ow: u32,
    // Source position per output step along rows and columns (PyTorch's
    // area_pixel_compute_scale, computed on the host in f32).
    scale_h: f32,
    scale_w: f32,
    // 1 for bilinear, else nearest; 1 to align corners (bilinear only).
    bilinear: u32,
    align_corners: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Nearest: the input index output index d reads along an axis of `size`
// resized to `out` (PyTorch's nearest_idx: same and double sizes exactly).
fn nearest(d: u32, scale: f32, size: u32, out: u32) -> u32 {
    if out == size {
        return d;
    }
    if out == 2u * size {
        return d >> 1u;
    }
    return min(u32(floor(f32(d) * scale)), size - 1u);
}

// Bilinear: the source position of output index d, clamped at 0.
fn source(d: u32, scale: f32) -> f32 {
    if p.align_corners != 0u {
        return scale * f32(d);
    }
    return max(scale * (f32(d) + 0.5) - 0.5, 0.0);
}

struct Taps {
    i0: u32,
    i1: u32,
    w0: f32,
    w1: f32,
}

// Bilinear: the two input indices output index d mixes, and their weights.
fn linear(d: u32, scale: f32, size: u32) -> Taps {
    let s = source(d, scale);
    let i0 = min(u32(s), size - 1u);
    let i1 = select(i0, i0 + 1u, i0 < size - 1u);
    let w1 = s - f32(i0);
    return Taps(i0, i1, 1.0 - w1, w1);
}

fn first(d: u32, scale: f32, size: u32, out: u32) -> u32 {
    if p.bilinear != 0u {
        return linear(d, scale, size).i0;
    }
    return nearest(d, scale, size, out);
}

// How much output index d takes from input index i along an axis.
fn weight(d: u32, i: u32, scale: f32, size: u32, out: u32) -> f32 {
    if p.bilinear == 0u {
        return select(0.0, 1.0, nearest(d, scale, size, out) == i);
    }
    let t = linear(d, scale, size);
    var w = 0.0;
    if t.i0 == i {
        w += t.w0;
    }
    if t.i1 == i {
        w += t.w1;
    }
    return w;
}

// The first output index in [0, out) whose first input index is at least i.
fn first_at_least(i: u32, scale: f32, size: u32, out: u32) -> u32 {
    var lo = 0u;
    var hi = out;
    while lo < hi {
        let mid = (lo + hi) / 2u;
        if first(mid, scale, size, out) < i {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// The output indices that can read input index i: [lo, hi).
fn reaching(i: u32, scale: f32, size: u32, out: u32) -> vec2<u32> {
    var lo = i;
    if p.bilinear != 0u && i > 0u {
        lo = i - 1u;
    }
    return vec2<u32>(first_at_least(lo, scale, size, out), first_at_least(i + 1u, scale, size, out));
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = linear_workgroup(wid, nwg) * 256u + lid;
    if o >= p.n {
        return;
    }
    let ox = o % p.ow;
    let oy = (o / p.ow) % p.oh;
    let base = (o / (p.ow * p.oh)) * p.ih * p.iw;
    if p.bilinear == 0u {
        dst[o] = src[base + nearest(oy, p.scale_h, p.ih, p.oh) * p.iw + nearest(ox, p.scale_w, p.iw, p.ow)];
        return;
    }
    let ty = linear(oy, p.scale_h, p.ih);
    let tx = linear(ox, p.scale_w, p.iw);
    let r0 = base + ty.i0 * p.iw;
    let r1 = base + ty.i1 * p.iw;
    dst[o] = ty.w0 * (tx.w0 * src[r0 + tx.i0] + tx.w1 * src[r0 + tx.i1])
        + ty.w1 * (tx.w0 * src[r1 + tx.i0] + tx.w1 * src[r1 + tx.i1]);
}

@compute @workgroup_size(256)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let x = i % p.iw;
    let y = (i / p.iw) % p.ih;
    let obase = (i / (p.iw * p.ih)) * p.oh * p.ow;
    let ry = reaching(y, p.scale_h, p.ih, p.oh);
    let rx = reaching(x, p.scale_w, p.iw, p.ow);
    var acc = 0.0;
    for (var dy = ry.x; dy < ry.y; dy++) {
        let a = weight(dy, y, p.scale_h, p.ih, p.oh);
        for (var dx = rx.x; dx < rx.y; dx++) {
            acc += src[obase + dy * p.ow + dx] * (a * weight(dx, x, p.scale_w, p.iw, p.ow));
        }
    }
    dst[i] = acc;
}

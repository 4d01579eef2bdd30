// Convolution lowering (gpu-core/src/ops/conv.rs): im2col unfolds the
// receptive fields of a dense [N, C, H, W] input into columns, col2im sums
// columns back into pixels (im2col's adjoint).
//
// The column buffer is dense [N, C, KH, KW, OH, OW], which is the same memory
// as [N, groups, (C/groups)*KH*KW, OH*OW]: groups only change how the matmul
// views it, so neither kernel needs to know them.
//
// Both kernels work in padded coordinates (input row ih sits at ih + pad_top)
// so all arithmetic stays unsigned.
//#include common.wgsl

struct Params {
    // Threads: column elements for im2col, input pixels for col2im.
    n: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    dilation_h: u32,
    dilation_w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// One thread per column element, written in order, so stores are coalesced;
// window positions in the padding read as zero.
@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let l = p.out_h * p.out_w;
    let col = i % l;
    var t = i / l;
    let kj = t % p.kernel_w;
    t = t / p.kernel_w;
    let ki = t % p.kernel_h;
    let plane = t / p.kernel_h; // n * C + c
    let ph = (col / p.out_w) * p.stride_h + ki * p.dilation_h;
    let pw = (col % p.out_w) * p.stride_w + kj * p.dilation_w;
    var v = 0.0;
    if ph >= p.pad_top && ph - p.pad_top < p.in_h && pw >= p.pad_left && pw - p.pad_left < p.in_w {
        v = src[(plane * p.in_h + ph - p.pad_top) * p.in_w + pw - p.pad_left];
    }
    dst[i] = v;
}

// Gather form: each input pixel visits the kernel taps that can cover it and
// adds the matching column entries in a fixed order. No two threads write one
// place, so there are no atomics and the result is deterministic.
@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let ph = (i / p.in_w) % p.in_h + p.pad_top;
    let pw = i % p.in_w + p.pad_left;
    let plane = i / (p.in_w * p.in_h);
    let l = p.out_h * p.out_w;
    let base = plane * p.kernel_h * p.kernel_w * l;
    var acc = 0.0;
    for (var ki = 0u; ki < p.kernel_h; ki++) {
        let tap_h = ki * p.dilation_h;
        // Taps grow with ki: once one lies below the pixel, the rest do too.
        if tap_h > ph {
            break;
        }
        let dh = ph - tap_h;
        let oh = dh / p.stride_h;
        if dh % p.stride_h != 0u || oh >= p.out_h {
            continue;
        }
        for (var kj = 0u; kj < p.kernel_w; kj++) {
            let tap_w = kj * p.dilation_w;
            if tap_w > pw {
                break;
            }
            let dw = pw - tap_w;
            let ow = dw / p.stride_w;
            if dw % p.stride_w != 0u || ow >= p.out_w {
                continue;
            }
            acc += src[base + (ki * p.kernel_w + kj) * l + oh * p.out_w + ow];
        }
    }
    dst[i] = acc;
}

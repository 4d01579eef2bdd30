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

// The kernel geometry is fixed per pipeline: a model has few distinct
// (kernel, stride, dilation) triples, and constant divisors turn the index
// arithmetic's divisions into multiplies (emulated per lane on CPU drivers).
//#include window.wgsl
// im2col: one thread per output row instead of per element (CPU adapters,
// where per-element index decoding dominates; GPUs keep per-element threads
// so that neighbouring threads write neighbouring addresses).
override ROWS: bool = false;

struct Params {
    // Threads: column elements (or column rows) for im2col, input pixels for col2im.
    n: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    pad_top: u32,
    pad_left: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Column entry (plane, ki, kj, oh, ow): the input pixel under tap (ki, kj)
// of output position (oh, ow), or zero in the padding.
fn im2col_value(plane: u32, ki: u32, kj: u32, oh: u32, ow: u32) -> f32 {
    let ph = oh * SH + ki * DH;
    let pw = ow * SW + kj * DW;
    if ph >= p.pad_top && ph - p.pad_top < p.in_h && pw >= p.pad_left && pw - p.pad_left < p.in_w {
        return src[(plane * p.in_h + ph - p.pad_top) * p.in_w + pw - p.pad_left];
    }
    return 0.0;
}

// Per element, the stores of neighbouring threads are neighbours (coalesced);
// per row (ROWS), each thread writes one output row of a tap.
@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    if ROWS {
        let oh = i % p.out_h;
        var t = i / p.out_h;
        let kj = t % KW;
        t = t / KW;
        let ki = t % KH;
        let plane = t / KH; // n * C + c
        let base = i * p.out_w;
        for (var ow = 0u; ow < p.out_w; ow++) {
            dst[base + ow] = im2col_value(plane, ki, kj, oh, ow);
        }
        return;
    }
    let l = p.out_h * p.out_w;
    let col = i % l;
    var t = i / l;
    let kj = t % KW;
    t = t / KW;
    let ki = t % KH;
    dst[i] = im2col_value(t / KH, ki, kj, col / p.out_w, col % p.out_w);
}

// Gather form: each input pixel visits the kernel taps that can cover it and
// adds the matching column entries in a fixed order. No two threads write one
// place, so there are no atomics and the result is deterministic.
fn col2im_value(plane: u32, ph: u32, pw: u32) -> f32 {
    let l = p.out_h * p.out_w;
    let base = plane * KH * KW * l;
    var acc = 0.0;
    for (var ki = 0u; ki < KH; ki++) {
        let tap_h = ki * DH;
        // Taps grow with ki: once one lies below the pixel, the rest do too.
        if tap_h > ph {
            break;
        }
        let dh = ph - tap_h;
        let oh = dh / SH;
        if dh % SH != 0u || oh >= p.out_h {
            continue;
        }
        for (var kj = 0u; kj < KW; kj++) {
            let tap_w = kj * DW;
            if tap_w > pw {
                break;
            }
            let dw = pw - tap_w;
            let ow = dw / SW;
            if dw % SW != 0u || ow >= p.out_w {
                continue;
            }
            acc += src[base + (ki * KW + kj) * l + oh * p.out_w + ow];
        }
    }
    return acc;
}

@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let ph = (i / p.in_w) % p.in_h + p.pad_top;
    dst[i] = col2im_value(i / (p.in_w * p.in_h), ph, i % p.in_w + p.pad_left);
}

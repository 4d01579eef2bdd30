// Batched matrix product C[b] = A[b] @ B[b] in f32: the portable kernel for
// GPUs (entry `main`), and the declarations that `matmul_subgroup.wgsl`
// (the kernel for CPU adapters) shares with it.
//
// A is read as [..batch, M, K] and B as [..batch, K, N] through strides, so
// transposed or sliced views need no copy; batch dims broadcast (stride 0).
// C is contiguous [batch, M, N]. Both kernels cover C with 64 x 64 tiles, one
// per workgroup, numbered batch-major then row-major (see `tile_of`).
//
// `main` walks K in steps of BK, staging an A tile and a B tile in workgroup
// memory; each thread then accumulates an 8 x 8 block of the tile in
// registers, so every value read from workgroup memory feeds 8 multiply-adds.
// Measurements and the configurations tried: docs/performance.md.
//
// Implicit-GEMM convolution (B_CONV > 0): B is not a strided matrix but a
// view of an NCHW tensor through a convolution geometry, gathered element
// by element by `b_value` in both kernels' loaders, so no column buffer is
// ever written (see gpu-core/src/ops/conv.rs for the three forms).
//
// Epilogue (both kernels, in `store4`): the f32 sums may be scaled
// (p.scale), get a bias added (p.bias_axis), then a ReLU (p.relu), then a
// residual (RESIDUAL, f32 stores only), and be stored rounded once to
// packed f16 (F16_OUT) instead of as f32, so attention's score scale, a
// layer's bias, its ReLU, a residual connection's add and an f16
// activation cost no further launch.
//#include common.wgsl
//#include half.wgsl

// Output tile of one workgroup (both kernels; the host picks them and
// divides by them). 64 x 64 by default; products with few rows (a
// convolution with 16 or 32 output channels, ResNet-20's first stages) use
// 16 x 128 or 32 x 128 so that no work goes to rows that do not exist and
// a workgroup still has 32-64 threads (the subgroup kernel: 32 x 64).
override TILE_M: u32 = 64u;
override TILE_N: u32 = 64u;

// Register block of one thread: TM rows x TN columns, held as vec4 columns.
const TM: u32 = 8u;
const TN: u32 = 8u;
// Threads of a workgroup along rows and columns.
override WM: u32 = TILE_M / TM;
override WN: u32 = TILE_N / TN;
override WG: u32 = WM * WN;
// Depth of one staged tile: at most 9 KiB of workgroup memory for both
// tiles, well under WebGPU's guaranteed 16 KiB, so two workgroups can share
// a compute unit.
const BK: u32 = 16u;
// vec4 slots per tile row.
override BM4: u32 = TILE_M / 4u;
override BN4: u32 = TILE_N / 4u;

// Which index runs fastest across neighbouring threads when `main` loads a
// tile from global memory: the one with unit stride, so that the reads of a
// warp are contiguous. A_K_FAST: A is row-major (k contiguous); otherwise m
// is contiguous (A transposed). B_K_FAST: B is transposed (k contiguous);
// otherwise n is contiguous.
override A_K_FAST: bool = true;
override B_K_FAST: bool = false;

// What B is. 0: a strided matrix (b_rs, b_cs). Otherwise a convolution's
// operand gathered from the NCHW tensor at b (one image, or one group of
// it, per batch entry), with the geometry below and in the conv_* params:
// 1: the im2col columns of the input, row (c, ki, kj), column (oh, ow);
// 2: their transpose, row (oh, ow), column (c, ki, kj) (weight gradient);
// 3: the adjoint gather of the output gradient, row (oc, ki, kj), column
//    (ih, iw): dY[oc, oh, ow] where oh * SH + ki * DH = ih + pad_top (and
//    likewise for w), zero where no output position maps there (input
//    gradient, transposed convolution).
override B_CONV: u32 = 0u;
// Kernel taps, stride and dilation of a gathered B. Forms 1 and 2 take the
// stride from the parameters instead (SH = SW = 1 here): it only scales an
// output pixel once per decoded column, so a model's strided and unstrided
// layers share their forward and weight-gradient pipelines (each one a JIT
// of 1-2 s on a CPU adapter's cold first step). Form 3 divides by the stride
// for every element it gathers, so there it stays a constant.
//#include window.wgsl

// Store C as packed f16 (two halves per word, element 2k low), each value
// rounded once to nearest even (half.wgsl) after the bias. The host sets it
// only for even N: every batch entry and row then starts on a word and the
// columns that exist come in pairs, so each thread writes whole words (an
// odd N takes the f32 store and a cast instead).
override F16_OUT: bool = false;
// `residual` (the output's shape, dense f32) is added last, after the ReLU
// (a residual connection's x + f(x)); f32 stores only. A constant, unlike
// the bias and the ReLU: only a few products take it (a Transformer
// block's last), and as a parameter its branch in every store slowed
// ResNet-20's convolutions on lavapipe by 3-4%.
override RESIDUAL: bool = false;
// The stored values times ReLU's derivative at `bias` (binding 3, the
// output's shape, dense f32), last: a ReLU's gradient merged by the fuser
// into the product computing it (gpu/tails.rs). Only a product without a
// bias takes it (a gradient's); f32 stores only.
override RELU_GRAD: bool = false;

struct Params {
    // Coalesced broadcast batch shape and each operand's strides over it.
    batch_shape: array<vec4<u32>, 2>,
    a_bstrides: array<vec4<u32>, 2>,
    b_bstrides: array<vec4<u32>, 2>,
    m: u32,
    n: u32,
    k: u32,
    brank: u32,
    // Element (i, j) of one batch entry of A is a[a_offset + i * a_rs + j * a_cs].
    a_offset: u32,
    a_rs: u32,
    a_cs: u32,
    b_offset: u32,
    b_rs: u32,
    b_cs: u32,
    tiles_n: u32,
    tiles_per_batch: u32,
    workgroups: u32,
    // Geometry of a gathered B (B_CONV > 0): the convolution's input and
    // output planes and its top/left zero padding.
    conv_in_h: u32,
    conv_in_w: u32,
    conv_out_h: u32,
    conv_out_w: u32,
    conv_pad_top: u32,
    conv_pad_left: u32,
    // Forms 1 and 2: the stride (form 3 uses the SH, SW constants).
    conv_stride_h: u32,
    conv_stride_w: u32,
    // Bias added to the f32 sums before they are stored. 0: none; 1: one
    // value per output row (a convolution's output channel in its
    // [OC, pixels] product); 2: one per output column (Linear's x @ Wᵀ).
    // Batch entry `e` reads the slice starting at (e % bias_batches) * M
    // (rows) or * N (columns): a grouped convolution's groups take
    // consecutive slices. The bias and the ReLU are parameters, not
    // override constants: a branch per stored row costs nothing measurable,
    // while each constant doubled the pipelines a model compiles (1-2 s of
    // LLVM each on a CPU adapter's first step).
    bias_axis: u32,
    bias_batches: u32,
    // 1: ReLU after the bias.
    relu: u32,
    // Multiplies the sums before the bias (1.0: none).
    scale: f32,
    // The `_act` variants' op fields (unary_fns.wgsl reads them as p.alpha,
    // p.beta) and whether they store the values before the op (zero
    // elsewhere; matmul_store_act.wgsl).
    alpha: f32,
    beta: f32,
    save_pre: u32,
    // The recurrent cell the `_cell` variants store (matmul_store_cell.wgsl;
    // zero for every other product): hidden size H, then element offsets
    // into the whole-sequence buffers for the step's time t: of xw[t]
    // (also dxw[t] and the saved gates[t]), of the state slots before and
    // after t in `states`, of the cell-state block there, and of dy[t].
    cell_hidden: u32,
    cell_x: u32,
    cell_prev: u32,
    cell_out: u32,
    cell_c: u32,
    cell_dy: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Operands A (binding 1) and B (binding 2) and their readers:
// `load_a_quad` / `load_b_quad` load four elements at once as f32, `load_a`
// / `load_b` single elements. The f32 library below (generated from the
// binding list in kernels/matmul.rs); `operands_f16*` read f16 storage
// instead (the variants swap this one line), and
// everything after the load is f32, so f16 products accumulate in f32.
//#include operands_f32.wgsl
// What happens to the sums as they are stored, with the bindings it needs
// (3 and up): the epilogue below (bias, ReLU, residual, f16), or in the
// `_cell` variants a recurrent cell (matmul_store_cell.wgsl).
//#include matmul_store.wgsl

// A gathered element splits into a tap part (channel, ki, kj: the rows of
// forms 1 and 3, the columns of form 2) and a pixel part (the other index),
// each decoded once per row or column. Unsigned arithmetic wraps, so an
// offset above/left of the input is a huge number that fails the `<` tests
// and still adds back to the right index.
struct ConvTap {
    // Offset of the channel's plane, and the tap's offsets ki * DH, kj * DW.
    plane: u32,
    dh: u32,
    dw: u32,
}

// Forms 1, 2: the output position's top-left input pixel (oh * stride_h -
// pad_top, ow * stride_w - pad_left). Form 3: the input pixel in padded coordinates.
struct ConvPixel {
    h: u32,
    w: u32,
}

fn conv_tap(r: u32) -> ConvTap {
    let plane = select(p.conv_in_h * p.conv_in_w, p.conv_out_h * p.conv_out_w, B_CONV == 3u);
    return ConvTap((r / (KW * KH)) * plane, ((r / KW) % KH) * DH, (r % KW) * DW);
}

fn conv_pixel(q: u32) -> ConvPixel {
    if B_CONV == 3u {
        return ConvPixel(q / p.conv_in_w + p.conv_pad_top, q % p.conv_in_w + p.conv_pad_left);
    }
    return ConvPixel(
        (q / p.conv_out_w) * p.conv_stride_h - p.conv_pad_top,
        (q % p.conv_out_w) * p.conv_stride_w - p.conv_pad_left,
    );
}

// Where in its plane the element under the tap lies (`line`, `col`; for
// form 3 the output position reached), how wide that plane's rows are, and
// whether the element exists (`ok`; for form 3 also that the tap lands on
// the stride grid).
struct ConvLine {
    line: u32,
    col: u32,
    width: u32,
    ok: bool,
}

fn conv_line(t: ConvTap, s: ConvPixel) -> ConvLine {
    if B_CONV == 3u {
        let dh = s.h - t.dh;
        let dw = s.w - t.dw;
        let row_ok = s.h >= t.dh && dh % SH == 0u && dh / SH < p.conv_out_h;
        let ok = row_ok && s.w >= t.dw && dw % SW == 0u && dw / SW < p.conv_out_w;
        return ConvLine(dh / SH, dw / SW, p.conv_out_w, ok);
    }
    let ih = s.h + t.dh;
    let iw = s.w + t.dw;
    return ConvLine(ih, iw, p.conv_in_w, ih < p.conv_in_h && iw < p.conv_in_w);
}

// The element of the entry at `base` under tap t at pixel s, or zero.
fn conv_gather(base: u32, t: ConvTap, s: ConvPixel) -> f32 {
    let l = conv_line(t, s);
    return select(0.0, load_b(select(base, base + t.plane + l.line * l.width + l.col, l.ok)), l.ok);
}

// Element (row, col) of the batch entry of B at `base`; row < K and
// col < N (callers clamp).
fn b_value(base: u32, row: u32, col: u32) -> f32 {
    if B_CONV == 0u {
        return load_b(base + row * p.b_rs + col * p.b_cs);
    }
    if B_CONV == 2u {
        return conv_gather(base, conv_tap(col), conv_pixel(row));
    }
    return conv_gather(base, conv_tap(row), conv_pixel(col));
}

// One output tile: its batch entry, first row and column, and where that
// batch entry of A, B and C starts.
struct Tile {
    m0: u32,
    n0: u32,
    a_base: u32,
    b_base: u32,
    c_base: u32,
    // Where this batch entry's bias slice starts.
    bias_base: u32,
    // This batch entry's last element of A and of (a strided) B: where the
    // subgroup kernel's strided loads (modes 3) stop.
    a_last: u32,
    b_last: u32,
}

// Where batch entry `batch` starts in A (x) and in B (y), over the
// p.brank dims of p.batch_shape. The loop runs a fixed 8 times and selects
// the rank's dims, once per lane, rather than `for k < p.brank`: Mesa 22's
// lavapipe inlines a loop bound read from the parameters into a new shader
// variant whenever a launch binds new buffers, and where that loop is much
// of the kernel it compiles (and keeps) one at every launch. The LSTM's
// per-step products, whose store is small, cost ~5 ms and ~400 KB a launch
// that way (docs/internals/gpu-core.md, "Loop bounds on lavapipe").
fn batch_offsets(batch: u32) -> vec2<u32> {
    var rem = batch;
    var off = vec2<u32>(0u);
    for (var k = 0u; k < 8u; k++) {
        let on = k < p.brank;
        let d = select(0u, p.brank - 1u - k, on);
        let n = select(1u, p.batch_shape[d / 4u][d % 4u], on);
        let strides = vec2(p.a_bstrides[d / 4u][d % 4u], p.b_bstrides[d / 4u][d % 4u]);
        off += select(vec2<u32>(0u), vec2(rem % n) * strides, on);
        rem /= n;
    }
    return off;
}

fn tile_of(wg: u32) -> Tile {
    let batch = wg / p.tiles_per_batch;
    let t = wg % p.tiles_per_batch;
    var tl: Tile;
    tl.m0 = (t / p.tiles_n) * TILE_M;
    tl.n0 = (t % p.tiles_n) * TILE_N;
    let offsets = batch_offsets(batch);
    tl.a_base = p.a_offset + offsets.x;
    tl.b_base = p.b_offset + offsets.y;
    tl.c_base = batch * p.m * p.n;
    tl.bias_base = (batch % p.bias_batches) * select(p.n, p.m, p.bias_axis == 1u);
    tl.a_last = tl.a_base + (p.m - 1u) * p.a_rs + (p.k - 1u) * p.a_cs;
    tl.b_last = tl.b_base + (p.k - 1u) * p.b_rs + (p.n - 1u) * p.b_cs;
    return tl;
}

// Writes the columns col.. (col a multiple of 4) of the sums `s` that
// exist to row `row` of C, through the epilogue.
fn store4(tl: Tile, row: u32, col: u32, s: vec4<f32>) {
    store_sums(tl, row, col, s, column_bias(tl, col) + vec4<f32>(row_bias(tl, row)));
}

// k-major tiles: As[k][m], Bs[k][n]. A thread's rows (columns) at one k are
// then whole vec4s, read with one load each.
var<workgroup> As: array<vec4<f32>, BK * BM4>;
var<workgroup> Bs: array<vec4<f32>, BK * BN4>;

// Stages rows m0.., depths k0.. of A into As (zeros outside A).
fn load_a_tile(lid: u32, tl: Tile, k0: u32) {
    for (var s = 0u; s < BM4 * BK / WG; s++) {
        let slot = lid + s * WG;
        var kk: u32;
        var mg: u32;
        if A_K_FAST {
            kk = slot % BK;
            mg = slot / BK;
        } else {
            mg = slot % BM4;
            kk = slot / BM4;
        }
        let k = k0 + kk;
        let m = tl.m0 + 4u * mg;
        var v = vec4<f32>(0.0);
        for (var j = 0u; j < 4u; j++) {
            let ok = k < p.k && m + j < p.m;
            // Outside A read a valid element and discard it: no divergent branch.
            let i = select(tl.a_base, tl.a_base + (m + j) * p.a_rs + k * p.a_cs, ok);
            v[j] = select(0.0, load_a(i), ok);
        }
        As[kk * BM4 + mg] = v;
    }
}

// Stages depths k0.., columns n0.. of B into Bs (zeros outside B).
fn load_b_tile(lid: u32, tl: Tile, k0: u32) {
    for (var s = 0u; s < BN4 * BK / WG; s++) {
        let slot = lid + s * WG;
        var kk: u32;
        var ng: u32;
        if B_K_FAST {
            kk = slot % BK;
            ng = slot / BK;
        } else {
            ng = slot % BN4;
            kk = slot / BN4;
        }
        let k = k0 + kk;
        let n = tl.n0 + 4u * ng;
        var v = vec4<f32>(0.0);
        for (var j = 0u; j < 4u; j++) {
            let ok = k < p.k && n + j < p.n;
            // Outside B read a valid element (clamped) and discard it.
            v[j] = select(0.0, b_value(tl.b_base, min(k, p.k - 1u), min(n + j, p.n - 1u)), ok);
        }
        Bs[kk * BN4 + ng] = v;
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wg = linear_workgroup(wid, nwg);
    // The folded grid may hold a few more workgroups than tiles.
    if wg >= p.workgroups {
        return;
    }
    let tl = tile_of(wg);

    // Thread (tx, ty) owns the vec4 row groups ty, ty + WM and column groups
    // tx, tx + WN: neighbouring threads read neighbouring vec4s of Bs (no bank
    // conflicts) and the threads of one row read the same As vec4 (broadcast).
    let tx = lid % WN;
    let ty = lid / WN;
    var acc: array<vec4<f32>, TM * TN / 4u>;
    for (var i = 0u; i < TM * TN / 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    let ktiles = (p.k + BK - 1u) / BK;
    for (var kt = 0u; kt < ktiles; kt++) {
        load_a_tile(lid, tl, kt * BK);
        load_b_tile(lid, tl, kt * BK);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<vec4<f32>, TM / 4u>;
            var bv: array<vec4<f32>, TN / 4u>;
            for (var r = 0u; r < TM / 4u; r++) {
                av[r] = As[kk * BM4 + ty + r * WM];
            }
            for (var q = 0u; q < TN / 4u; q++) {
                bv[q] = Bs[kk * BN4 + tx + q * WN];
            }
            for (var i = 0u; i < TM; i++) {
                let x = vec4<f32>(av[i / 4u][i % 4u]);
                for (var q = 0u; q < TN / 4u; q++) {
                    acc[i * (TN / 4u) + q] = fma(x, bv[q], acc[i * (TN / 4u) + q]);
                }
            }
        }
        // The next tile overwrites As/Bs only after every thread is done reading.
        workgroupBarrier();
    }

    // `acc` is indexed by constants only here: a loop over the block whose
    // body is the whole epilogue is one a driver may leave rolled, and
    // then indexes `acc` at run time, which puts the block in local
    // memory (an NVIDIA H200: 2 TFLOP/s instead of 28;
    // docs/history/performance-log-2026-11.md). Written for TM = 8 rows of
    // TN / 4 = 2 vec4 columns.
    store_block_row(tl, tx, ty, 0u, acc[0], acc[1]);
    store_block_row(tl, tx, ty, 1u, acc[2], acc[3]);
    store_block_row(tl, tx, ty, 2u, acc[4], acc[5]);
    store_block_row(tl, tx, ty, 3u, acc[6], acc[7]);
    store_block_row(tl, tx, ty, 4u, acc[8], acc[9]);
    store_block_row(tl, tx, ty, 5u, acc[10], acc[11]);
    store_block_row(tl, tx, ty, 6u, acc[12], acc[13]);
    store_block_row(tl, tx, ty, 7u, acc[14], acc[15]);
}

// Row `i` of thread (tx, ty)'s register block: its two vec4 column groups
// `s0` (columns 4 tx..) and `s1` (columns 4 (tx + WN)..), through the epilogue.
fn store_block_row(tl: Tile, tx: u32, ty: u32, i: u32, s0: vec4<f32>, s1: vec4<f32>) {
    let row = tl.m0 + 4u * (ty + (i / 4u) * WM) + i % 4u;
    store4(tl, row, tl.n0 + 4u * tx, s0);
    store4(tl, row, tl.n0 + 4u * (tx + WN), s1);
}

// Batched matrix product for CPU adapters (lavapipe/llvmpipe): the same
// contract, parameters and 64 x 64 output tiles as `main` in matmul.wgsl,
// whose declarations it includes. Needs subgroups of exactly 8 lanes (the
// host checks the adapter before choosing this kernel).
//
// Why a second kernel: a CPU driver runs the 8 invocations of a subgroup as
// the lanes of one SIMD register, and on llvmpipe (Mesa 22.3, measured):
// - every load whose address may differ per lane becomes a loop over the
//   lanes, about 10 cycles per lane for a vec4;
// - a barrier turns the whole shader into a coroutine whose values live in
//   memory, which halves the speed of everything else;
// - loops over private arrays are not unrolled, so the arrays go to scratch
//   memory (10-20x slower).
// The tiled kernel, right for GPUs, hits all three. So here:
// - no workgroup memory and no barrier: operands come straight from global
//   memory (the CPU's caches do the staging), four elements per load;
// - a workgroup is one subgroup and computes a whole tile: the 8 lanes
//   share its rows (up to 64) and split its 64 columns; each lane loads a
//   different A row and `subgroupBroadcast` (a register shuffle) hands every
//   row to every lane: one A load per 32 values used, not per 4;
// - each lane accumulates a 64 x 8 block, updated row by row over four
//   depths, so a row's accumulators are loaded and stored once per 4 depths.
//   The block is as tall as the tile (ROW_GROUPS x 8 rows, up to 64).
//   While operands came from storage buffers, whose lane-divergent loads
//   dominated, 64 rows paid (a 1024^3 product 10.3 -> 14.4 GFLOP/s on a Zen
//   3 host); with texture operands (operands_tex.wgsl, the f32 path
//   on CPU adapters) the host caps it at 32 rows, as fast and half the
//   compile time, and a convolution's gathered product at 16 rows, a
//   little slower for half again (a cold first step is mostly compile
//   time; ops/matmul/tiles.rs: SUBGROUP_TEXTURE_ROW_GROUPS);
// - private arrays are only indexed by constants: the register block is
//   spelled out in small helpers instead of loops;
// - products at most 32 columns wide (a convolution's weight gradient with
//   one input channel: 9 columns; a classifier's 10 outputs) get 32-column
//   tiles (`TILE_N` 32) when their operands are buffers: each lane keeps one
//   column group, so no work goes to a second group of 32 columns that
//   would never be stored. With texture operands the host keeps 64 (one
//   pipeline fewer to compile per narrow product form).
//#include matmul.wgsl

// Lanes per subgroup the kernel is written for.
const LANES: u32 = 8u;

// How the operands are read (host-chosen). 0: any strides (or B gathered
// for a convolution, B_CONV > 0), element by element. 1: unit stride along
// rows (A row-major: k contiguous; B row-major: n contiguous), vec4 loads.
// 2: unit stride along columns (A transposed: m contiguous; B transposed: k
// contiguous), vec4 loads. Modes 1 and 2 need the other stride, the batch
// strides and the offset to be multiples of 4. 3: any strides, a lane's four
// elements spaced by the run-time stride from one clamped index (each
// clamped to the view's last element). The host uses 3 for every texture
// operand: a texel is fetched alone whatever the layout, so the modes only
// differ in index arithmetic, and one variant instead of three (a layer's
// forward, input-gradient and weight-gradient products) saves a pipeline
// compile of 1.5-2 s each on llvmpipe.
override A_MODE: u32 = 0u;
override B_MODE: u32 = 0u;
// Groups of eight rows the subgroup computes: TILE_M / 8, or fewer when the
// whole product has fewer rows (a recurrent step's batch, a 16-channel
// convolution), so no work is spent on rows that would not be stored.
override ROW_GROUPS: u32 = 8u;

// Row-major elements of a (row, col) view, clamped into the matrix: reads
// outside it return some element of it, which is then discarded or masked.
fn a_index(tl: Tile, row: u32, col: u32) -> u32 {
    return tl.a_base + min(row, p.m - 1u) * p.a_rs + min(col, p.k - 1u) * p.a_cs;
}

fn b_index(tl: Tile, row: u32, col: u32) -> u32 {
    return tl.b_base + min(row, p.k - 1u) * p.b_rs + min(col, p.n - 1u) * p.b_cs;
}

// Element (row, col) of B, clamped likewise: strided, or gathered from a
// convolution's tensor (B_CONV > 0, which the host pairs with B_MODE 0).
fn b_elem(tl: Tile, row: u32, col: u32) -> f32 {
    return b_value(tl.b_base, min(row, p.k - 1u), min(col, p.n - 1u));
}

// Zeroes the components of v at depths k.. that lie beyond K (they must add
// nothing to the sums; rows and columns beyond M and N are simply not stored).
fn mask_depths(v: vec4<f32>, k: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), v, vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k));
}

// This lane's share of rows r0..r0 + 7 at depths k..k + 3 of A: row r0 + lane
// (modes 0, 1), or rows r0 + 4 * (lane / 4).. at depth k + lane % 4 (mode 2).
fn load_a8(tl: Tile, r0: u32, k: u32, lane: u32) -> vec4<f32> {
    if A_MODE == 2u {
        let d = k + lane % 4u;
        let v = load_a_quad(a_index(tl, r0 + 4u * (lane / 4u), d) / 4u);
        return select(vec4<f32>(0.0), v, d < p.k);
    }
    let row = r0 + lane;
    if A_MODE == 3u {
        let i = a_index(tl, row, k);
        let s = p.a_cs;
        let v = vec4(load_a(i), load_a(min(i + s, tl.a_last)), load_a(min(i + 2u * s, tl.a_last)), load_a(min(i + 3u * s, tl.a_last)));
        return mask_depths(v, k);
    }
    if A_MODE == 1u {
        return mask_depths(load_a_quad(a_index(tl, row, k) / 4u), k);
    }
    var v: vec4<f32>;
    v.x = load_a(a_index(tl, row, k));
    v.y = load_a(a_index(tl, row, k + 1u));
    v.z = load_a(a_index(tl, row, k + 2u));
    v.w = load_a(a_index(tl, row, k + 3u));
    return mask_depths(v, k);
}

// The loaded A values of the 8 rows, each as a vec4 over the 4 depths, in
// every lane.
fn spread_a(v: vec4<f32>) -> array<vec4<f32>, 8> {
    let w0 = subgroupBroadcast(v, 0u);
    let w1 = subgroupBroadcast(v, 1u);
    let w2 = subgroupBroadcast(v, 2u);
    let w3 = subgroupBroadcast(v, 3u);
    let w4 = subgroupBroadcast(v, 4u);
    let w5 = subgroupBroadcast(v, 5u);
    let w6 = subgroupBroadcast(v, 6u);
    let w7 = subgroupBroadcast(v, 7u);
    if A_MODE == 2u {
        // Lane 4h + d holds rows 4h..4h + 3 at depth d: transpose the 4 x 4 blocks.
        return array<vec4<f32>, 8>(
            vec4(w0.x, w1.x, w2.x, w3.x),
            vec4(w0.y, w1.y, w2.y, w3.y),
            vec4(w0.z, w1.z, w2.z, w3.z),
            vec4(w0.w, w1.w, w2.w, w3.w),
            vec4(w4.x, w5.x, w6.x, w7.x),
            vec4(w4.y, w5.y, w6.y, w7.y),
            vec4(w4.z, w5.z, w6.z, w7.z),
            vec4(w4.w, w5.w, w6.w, w7.w),
        );
    }
    return array<vec4<f32>, 8>(w0, w1, w2, w3, w4, w5, w6, w7);
}

// The column halves of a lane's four columns n..n + 3 (clamped into the
// matrix) of a convolution's gathered B (`columns_hoisted`): their pixels
// (forms 1, 3) or their taps (form 2), decoded once per kernel instead of
// at every depth step: llvmpipe hoists nothing out of loops, and a pixel
// divides by the run-time plane width, eight scalar divisions per decode
// on x86 (a tap divides by constants). Used for tiles of at most four row
// groups (32 rows, every tile with texture operands): the decode was a
// third of the time of ResNet-20's 16-channel forward convolutions (1.6x
// faster, Zen 3 host). For 32-row tiles an early measurement (before
// texture operands, on a noisy host) had them a third slower with it; the
// minimum over 8-15 profiled steps of each kernel (session 15) has them
// faster: MNIST's second convolution forward 5.1 -> 4.5 ms and input
// gradient 7.5 -> 6.4 ms, ResNet-20's 32- and 64-channel stages 4-35%
// faster per kernel, none slower by more than 1%. 64-row tiles (buffer
// operands only) were not measured again.
fn columns_hoisted() -> bool {
    return B_CONV > 0u && ROW_GROUPS <= 4u;
}

// Only the pixels (forms 1, 3) or only the taps (form 2) are used.
struct ConvCols {
    p0: ConvPixel,
    p1: ConvPixel,
    p2: ConvPixel,
    p3: ConvPixel,
    t0: ConvTap,
    t1: ConvTap,
    t2: ConvTap,
    t3: ConvTap,
}

fn conv_cols(n: u32) -> ConvCols {
    let last = p.n - 1u;
    let n0 = min(n, last);
    let n1 = min(n + 1u, last);
    let n2 = min(n + 2u, last);
    let n3 = min(n + 3u, last);
    var cc: ConvCols;
    if B_CONV == 2u {
        cc.t0 = conv_tap(n0);
        cc.t1 = conv_tap(n1);
        cc.t2 = conv_tap(n2);
        cc.t3 = conv_tap(n3);
    } else {
        cc.p0 = conv_pixel(n0);
        cc.p1 = conv_pixel(n1);
        cc.p2 = conv_pixel(n2);
        cc.p3 = conv_pixel(n3);
    }
    return cc;
}

// Depth k of the four columns of `cc`, zero past K: the row's half (its
// tap, or for form 2 its pixel) is decoded once for the four.
fn conv_row4(tl: Tile, k: u32, cc: ConvCols) -> vec4<f32> {
    let row = min(k, p.k - 1u);
    var v: vec4<f32>;
    if B_CONV == 2u {
        let s = conv_pixel(row);
        v = vec4(
            conv_gather(tl.b_base, cc.t0, s),
            conv_gather(tl.b_base, cc.t1, s),
            conv_gather(tl.b_base, cc.t2, s),
            conv_gather(tl.b_base, cc.t3, s),
        );
    } else {
        let t = conv_tap(row);
        v = vec4(
            conv_gather(tl.b_base, t, cc.p0),
            conv_gather(tl.b_base, t, cc.p1),
            conv_gather(tl.b_base, t, cc.p2),
            conv_gather(tl.b_base, t, cc.p3),
        );
    }
    return select(vec4<f32>(0.0), v, k < p.k);
}

// Columns n..n + 3 of B at depth k (mode 3): spaced by the column stride
// from the clamped first, each clamped to B's last element (columns past N
// read some element of B; they are not stored).
fn b_strided4(tl: Tile, k: u32, n: u32) -> vec4<f32> {
    let i = b_index(tl, k, n);
    let s = p.b_cs;
    return vec4(load_b(i), load_b(min(i + s, tl.b_last)), load_b(min(i + 2u * s, tl.b_last)), load_b(min(i + 3u * s, tl.b_last)));
}

// Columns n..n + 3 of B at depths k..k + 3, one vec4 over the columns per
// depth (`cc`: those columns' decoded halves, for a gathered B).
fn load_b44(tl: Tile, k: u32, n: u32, cc: ConvCols) -> array<vec4<f32>, 4> {
    if columns_hoisted() {
        return array<vec4<f32>, 4>(
            conv_row4(tl, k, cc),
            conv_row4(tl, k + 1u, cc),
            conv_row4(tl, k + 2u, cc),
            conv_row4(tl, k + 3u, cc),
        );
    }
    if B_MODE == 3u {
        return array<vec4<f32>, 4>(
            select(vec4<f32>(0.0), b_strided4(tl, k, n), k < p.k),
            select(vec4<f32>(0.0), b_strided4(tl, k + 1u, n), k + 1u < p.k),
            select(vec4<f32>(0.0), b_strided4(tl, k + 2u, n), k + 2u < p.k),
            select(vec4<f32>(0.0), b_strided4(tl, k + 3u, n), k + 3u < p.k),
        );
    }
    if B_MODE == 1u {
        return array<vec4<f32>, 4>(
            select(vec4<f32>(0.0), load_b_quad(b_index(tl, k, n) / 4u), k < p.k),
            select(vec4<f32>(0.0), load_b_quad(b_index(tl, k + 1u, n) / 4u), k + 1u < p.k),
            select(vec4<f32>(0.0), load_b_quad(b_index(tl, k + 2u, n) / 4u), k + 2u < p.k),
            select(vec4<f32>(0.0), load_b_quad(b_index(tl, k + 3u, n) / 4u), k + 3u < p.k),
        );
    }
    var t0: vec4<f32>;
    var t1: vec4<f32>;
    var t2: vec4<f32>;
    var t3: vec4<f32>;
    if B_MODE == 2u {
        // One vec4 over the depths per column, transposed below.
        t0 = load_b_quad(b_index(tl, k, n) / 4u);
        t1 = load_b_quad(b_index(tl, k, n + 1u) / 4u);
        t2 = load_b_quad(b_index(tl, k, n + 2u) / 4u);
        t3 = load_b_quad(b_index(tl, k, n + 3u) / 4u);
    } else {
        for (var j = 0u; j < 4u; j++) {
            t0[j] = b_elem(tl, k + j, n);
            t1[j] = b_elem(tl, k + j, n + 1u);
            t2[j] = b_elem(tl, k + j, n + 2u);
            t3[j] = b_elem(tl, k + j, n + 3u);
        }
    }
    t0 = mask_depths(t0, k);
    t1 = mask_depths(t1, k);
    t2 = mask_depths(t2, k);
    t3 = mask_depths(t3, k);
    return array<vec4<f32>, 4>(
        vec4(t0.x, t1.x, t2.x, t3.x),
        vec4(t0.y, t1.y, t2.y, t3.y),
        vec4(t0.z, t1.z, t2.z, t3.z),
        vec4(t0.w, t1.w, t2.w, t3.w),
    );
}

// This lane's two column groups at depths k..k + 3.
struct BBlock {
    lo: array<vec4<f32>, 4>,
    hi: array<vec4<f32>, 4>,
}

// One row of a lane's accumulator block: its two column groups.
struct Row {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The row plus x (the row's A values over four depths) times the B block.
fn fma_row(r: Row, x: vec4<f32>, bb: BBlock) -> Row {
    var o = r;
    o.lo = fma(vec4(x.x), bb.lo[0], o.lo);
    o.lo = fma(vec4(x.y), bb.lo[1], o.lo);
    o.lo = fma(vec4(x.z), bb.lo[2], o.lo);
    o.lo = fma(vec4(x.w), bb.lo[3], o.lo);
    if TILE_N > 32u {
        o.hi = fma(vec4(x.x), bb.hi[0], o.hi);
        o.hi = fma(vec4(x.y), bb.hi[1], o.hi);
        o.hi = fma(vec4(x.z), bb.hi[2], o.hi);
        o.hi = fma(vec4(x.w), bb.hi[3], o.hi);
    }
    return o;
}

// Eight rows updated from this lane's A load `v` (see `load_a8`).
fn fma_group(g: array<Row, 8>, v: vec4<f32>, bb: BBlock) -> array<Row, 8> {
    let x = spread_a(v);
    return array<Row, 8>(
        fma_row(g[0], x[0], bb),
        fma_row(g[1], x[1], bb),
        fma_row(g[2], x[2], bb),
        fma_row(g[3], x[3], bb),
        fma_row(g[4], x[4], bb),
        fma_row(g[5], x[5], bb),
        fma_row(g[6], x[6], bb),
        fma_row(g[7], x[7], bb),
    );
}

// Row `row` of C, columns n.. and (in 64-column tiles) n + 32.., through
// the epilogue; `cb` holds the bias of those columns (`column_bias`, read
// once per lane: the columns are the same in every row).
fn store_row(tl: Tile, r: Row, row: u32, n: u32, cb: Row) {
    let rb = vec4<f32>(row_bias(tl, row));
    store_sums(tl, row, n, r.lo, cb.lo + rb);
    if TILE_N > 32u {
        store_sums(tl, row, n + 32u, r.hi, cb.hi + rb);
    }
}

// Row r of `g` by selects on the loop counter (the same in every lane):
// indexed dynamically, `g` went to scratch memory, the LSTM's forward
// store loop 40% slower on llvmpipe.
fn pick_row(g: array<Row, 8>, r: u32) -> Row {
    var o = g[0];
    o = pick_if(o, g[1], r == 1u);
    o = pick_if(o, g[2], r == 2u);
    o = pick_if(o, g[3], r == 3u);
    o = pick_if(o, g[4], r == 4u);
    o = pick_if(o, g[5], r == 5u);
    o = pick_if(o, g[6], r == 6u);
    o = pick_if(o, g[7], r == 7u);
    return o;
}

fn pick_if(a: Row, b: Row, take_b: bool) -> Row {
    return Row(select(a.lo, b.lo, take_b), select(a.hi, b.hi, take_b));
}

// Rows r0..r0 + 7, in a loop: the store is compiled 2 instead of 16
// times per row group (unrolled, the LSTM backward's cell store made
// llvmpipe spend 20 s compiling, a GELU store 1.7 s), and with the row
// picked by selects it runs as fast as unrolled (session 22).
fn store_group(tl: Tile, g: array<Row, 8>, r0: u32, n: u32, cb: Row) {
    for (var r = 0u; r < 8u; r++) {
        store_row(tl, pick_row(g, r), r0 + r, n, cb);
    }
}

@compute @workgroup_size(LANES)
fn main_subgroup(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let wg = linear_workgroup(wid, nwg);
    if wg >= p.workgroups {
        return;
    }
    let tl = tile_of(wg);
    let r0 = tl.m0;
    // Lane l owns columns n0 + 4l.. and (64-column tiles) n0 + 32 + 4l..:
    // neighbouring lanes read neighbouring 16 bytes of a B row.
    let n = tl.n0 + 4u * lane;
    // Accumulators of rows r0 + 8i.. (private arrays indexed by constants only).
    var acc0: array<Row, 8>;
    var acc1: array<Row, 8>;
    var acc2: array<Row, 8>;
    var acc3: array<Row, 8>;
    var acc4: array<Row, 8>;
    var acc5: array<Row, 8>;
    var acc6: array<Row, 8>;
    var acc7: array<Row, 8>;
    var cols_lo: ConvCols;
    var cols_hi: ConvCols;
    if columns_hoisted() {
        cols_lo = conv_cols(n);
        if TILE_N > 32u {
            cols_hi = conv_cols(n + 32u);
        }
    }
    for (var k = 0u; k < p.k; k += 4u) {
        var bb: BBlock;
        bb.lo = load_b44(tl, k, n, cols_lo);
        if TILE_N > 32u {
            bb.hi = load_b44(tl, k, n + 32u, cols_hi);
        }
        acc0 = fma_group(acc0, load_a8(tl, r0, k, lane), bb);
        if ROW_GROUPS > 1u {
            acc1 = fma_group(acc1, load_a8(tl, r0 + 8u, k, lane), bb);
        }
        if ROW_GROUPS > 2u {
            acc2 = fma_group(acc2, load_a8(tl, r0 + 16u, k, lane), bb);
        }
        if ROW_GROUPS > 3u {
            acc3 = fma_group(acc3, load_a8(tl, r0 + 24u, k, lane), bb);
        }
        if ROW_GROUPS > 4u {
            acc4 = fma_group(acc4, load_a8(tl, r0 + 32u, k, lane), bb);
        }
        if ROW_GROUPS > 5u {
            acc5 = fma_group(acc5, load_a8(tl, r0 + 40u, k, lane), bb);
        }
        if ROW_GROUPS > 6u {
            acc6 = fma_group(acc6, load_a8(tl, r0 + 48u, k, lane), bb);
        }
        if ROW_GROUPS > 7u {
            acc7 = fma_group(acc7, load_a8(tl, r0 + 56u, k, lane), bb);
        }
    }
    var cb = Row(column_bias(tl, n), vec4<f32>(0.0));
    if TILE_N > 32u {
        cb.hi = column_bias(tl, n + 32u);
    }
    store_group(tl, acc0, r0, n, cb);
    if ROW_GROUPS > 1u {
        store_group(tl, acc1, r0 + 8u, n, cb);
    }
    if ROW_GROUPS > 2u {
        store_group(tl, acc2, r0 + 16u, n, cb);
    }
    if ROW_GROUPS > 3u {
        store_group(tl, acc3, r0 + 24u, n, cb);
    }
    if ROW_GROUPS > 4u {
        store_group(tl, acc4, r0 + 32u, n, cb);
    }
    if ROW_GROUPS > 5u {
        store_group(tl, acc5, r0 + 40u, n, cb);
    }
    if ROW_GROUPS > 6u {
        store_group(tl, acc6, r0 + 48u, n, cb);
    }
    if ROW_GROUPS > 7u {
        store_group(tl, acc7, r0 + 56u, n, cb);
    }
}

// index_add (gpu-core/src/ops/index_add.rs): dst[o, ids[t], i] += src[o, t, i]
// with every destination element adding its rows in increasing t, starting
// from its own value, as the CPU twin does: the same bits on every run and
// every adapter, without float atomics.
//   sort_rows  one workgroup orders the positions j of a range of ids by
//              (id, j): a bitonic network over the range rounded up to a
//              power of two, in `keys` (ids in the first half, positions in
//              the second; padding sorts last).
//   add_rows   one thread per (o, sorted position s, i); the thread whose s
//              starts a run of equal ids sums that run's rows in order.
// Past the binding limit the op runs ranges of t one after another (each
// sorted by itself, so the order across ranges holds) and groups of o, with
// the bindings' windows (`*_at`, `*_shift`).
//#include common.wgsl
//#include index_check.wgsl

struct Params {
    // Ids in this range, and that rounded up to a power of two (sort_rows).
    k: u32,
    pow2: u32,
    // The range's first position t, and where it is in the ids binding.
    t0: u32,
    ids_at: u32,
    // Positions in the whole op (src's length along dim).
    k_total: u32,
    // Elements after dim (a row), and the destination's size along dim.
    inner: u32,
    dim_size: u32,
    // The first o of this launch's group, and its thread count (add_rows).
    o0: u32,
    n: u32,
    // Element offsets of the src and dst windows (0 when bound whole).
    src_shift: u32,
    dst_shift: u32,
    // The op's site number for index errors (index_check.rs).
    site: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Each entry point statically uses only its own bindings, so the globals
// below may share binding numbers with different types.
// sort_rows: the ids, the keys it sorts.
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> keys: array<u32>;
// add_rows: the sorted keys, the source, the destination, the error record.
@group(0) @binding(1) var<storage, read> sorted: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> index_error: array<atomic<u32>>;

@compute @workgroup_size(256)
fn sort_rows(@builtin(local_invocation_index) lid: u32) {
    let m = p.pow2;
    for (var j = lid; j < m; j += 256u) {
        var id = 0xffffffffu;
        if j < p.k {
            id = ids[p.ids_at + j];
        }
        keys[j] = id;
        keys[m + j] = j;
    }
    storageBarrier();
    // Each stage compares the pairs (a, a + stride); a block of `size`
    // sorts up where bit `size` of a is clear, so the last stage sorts up.
    for (var size = 2u; size <= m; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (var j = lid; j < m / 2u; j += 256u) {
                let a = 2u * stride * (j / stride) + j % stride;
                let b = a + stride;
                let ka = keys[a];
                let kb = keys[b];
                let ja = keys[m + a];
                let jb = keys[m + b];
                let b_first = kb < ka || (kb == ka && jb < ja);
                if b_first == ((a & size) == 0u) {
                    keys[a] = kb;
                    keys[b] = ka;
                    keys[m + a] = jb;
                    keys[m + b] = ja;
                }
            }
            storageBarrier();
        }
    }
}

@compute @workgroup_size(256)
fn add_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let th = linear_workgroup(wid, nwg) * 256u + lid;
    if th >= p.n {
        return;
    }
    let i = th % p.inner;
    let r = th / p.inner;
    let s = r % p.k;
    let o = p.o0 + r / p.k;
    let id = sorted[s];
    if s > 0u && sorted[s - 1u] == id {
        return;
    }
    if id >= p.dim_size {
        report_index(p.site, id, p.dim_size);
        return;
    }
    let d = (o * p.dim_size + id) * p.inner + i - p.dst_shift;
    var acc = dst[d];
    for (var e = s; e < p.k && sorted[e] == id; e++) {
        let t = p.t0 + sorted[p.pow2 + e];
        acc += src[(o * p.k_total + t) * p.inner + i - p.src_shift];
    }
    dst[d] = acc;
}

// index_add (gpu-core/src/ops/index_add.rs): dst[o, ids[t], i] += src[o, t, i]
// with every destination element adding its rows in increasing t, starting
// from its own value, as the CPU twin does: the same bits on every run and
// every adapter, without float atomics.
//   sort_rows  one workgroup orders the positions j of a range of ids by
//              (id, j): a bitonic network over the range rounded up to a
//              power of two, in tiles of workgroup memory and in `keys`
//              (ids in the first half, positions in the second; padding
//              sorts last).
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

// Keys a tile of the sort holds in workgroup memory: stages whose pairs
// lie within one tile run there, the rest (strides of a tile or more) in
// `keys`. Two arrays of 1,024 words: 8 KiB, half of WebGPU's minimum.
const TILE: u32 = 1024u;
var<workgroup> tile_ids: array<u32, TILE>;
var<workgroup> tile_pos: array<u32, TILE>;

// Whether positions a < b, holding (id a, position ja) and (id b, jb),
// swap in a block that sorts up (`up`) or down: keys order by (id, position).
fn swaps(ka: u32, ja: u32, kb: u32, jb: u32, up: bool) -> bool {
    let b_first = kb < ka || (kb == ka && jb < ja);
    return b_first == up;
}

// The stages of blocks of `size` with strides `first`, first/2, .., 1 on
// the tile of `len` keys that starts at key `base`, in workgroup memory.
fn tile_stages(lid: u32, base: u32, len: u32, size: u32, first: u32) {
    for (var stride = first; stride > 0u; stride >>= 1u) {
        for (var j = lid; j < len / 2u; j += 256u) {
            let a = 2u * stride * (j / stride) + j % stride;
            let b = a + stride;
            let ka = tile_ids[a];
            let ja = tile_pos[a];
            if swaps(ka, ja, tile_ids[b], tile_pos[b], ((base + a) & size) == 0u) {
                tile_ids[a] = tile_ids[b];
                tile_pos[a] = tile_pos[b];
                tile_ids[b] = ka;
                tile_pos[b] = ja;
            }
        }
        workgroupBarrier();
    }
}

// Copies the tile at `base` from `keys` to workgroup memory and back.
fn load_tile(lid: u32, base: u32, len: u32) {
    for (var j = lid; j < len; j += 256u) {
        tile_ids[j] = keys[base + j];
        tile_pos[j] = keys[p.pow2 + base + j];
    }
    workgroupBarrier();
}

fn store_tile(lid: u32, base: u32, len: u32) {
    for (var j = lid; j < len; j += 256u) {
        keys[base + j] = tile_ids[j];
        keys[p.pow2 + base + j] = tile_pos[j];
    }
    storageBarrier();
    workgroupBarrier();
}

// A bitonic network over `pow2` keys: each tile sorted in workgroup memory
// (blocks up and down as the whole network wants), then for each larger
// block its long strides in `keys` and its short ones tile by tile.
// Invocation x mod 256 touches key x in every step but the tile strides
// below 256, so some barriers below order nothing today; they stay so that
// a change to the loops' mapping cannot race.
@compute @workgroup_size(256)
fn sort_rows(@builtin(local_invocation_index) lid: u32) {
    let m = p.pow2;
    let len = min(m, TILE);
    for (var base = 0u; base < m; base += len) {
        for (var j = lid; j < len; j += 256u) {
            var id = 0xffffffffu;
            if base + j < p.k {
                id = ids[p.ids_at + base + j];
            }
            tile_ids[j] = id;
            tile_pos[j] = base + j;
        }
        workgroupBarrier();
        for (var size = 2u; size <= len; size <<= 1u) {
            tile_stages(lid, base, len, size, size >> 1u);
        }
        store_tile(lid, base, len);
    }
    for (var size = 2u * len; size <= m; size <<= 1u) {
        for (var stride = size >> 1u; stride >= len; stride >>= 1u) {
            for (var j = lid; j < m / 2u; j += 256u) {
                let a = 2u * stride * (j / stride) + j % stride;
                let b = a + stride;
                let ka = keys[a];
                let ja = keys[m + a];
                if swaps(ka, ja, keys[b], keys[m + b], (a & size) == 0u) {
                    keys[a] = keys[b];
                    keys[m + a] = keys[m + b];
                    keys[b] = ka;
                    keys[m + b] = ja;
                }
            }
            storageBarrier();
        }
        for (var base = 0u; base < m; base += len) {
            load_tile(lid, base, len);
            tile_stages(lid, base, len, size, len >> 1u);
            store_tile(lid, base, len);
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

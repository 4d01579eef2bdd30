// Strided-to-strided copy: element i (row-major over `shape`) of the source
// view goes to element i of the destination view. Serves contiguous(),
// copy_into() and concat() in gpu-core/src/ops/copy.rs, which coalesce both
// stride sets first. Elements move as 32-bit words, so f32 and u32 data copy
// bit-exactly (NaN payloads included); with HALF they are 16-bit halves of
// words (f16), moved just as exactly.
//#include common.wgsl

// Rank after coalescing, fixed per pipeline so the index loop unrolls into
// constant indexing (dynamic indexing of arrays is slow on many drivers).
override RANK: u32 = 1u;

// Set when the destination is dense from dst_offset (every contiguous()),
// which saves the destination's offsets (and, for f16, its divisions).
override DENSE_DST: bool = false;

// Elements per thread of the 32-bit path (set by ops/copy.rs): a thread
// finds its first element's place with a division per dim and walks to the
// next ones with a compare per dim (Walk in common.wgsl).
override RUN: u32 = 1u;

// f16 elements, two per word (element 2w in the low half of word w). Only
// into a dense destination: thread i then owns output word i whole, so no
// two threads write one word (halves cannot be stored alone). Offsets and
// strides count elements; dst_offset counts words.
override HALF: bool = false;

struct Params {
    shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
    n: u32,
    src_offset: u32,
    dst_offset: u32,
    // The first element of a range of a copy past the binding limit (0 for
    // a whole copy; even for HALF); the offsets are then relative to the
    // windows bound (ops/copy.rs), wrapping below zero.
    base: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The source words (binding 1) are read with load_src (u32).
//#include copy_src_f32.wgsl
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

// Source element e (row-major over `shape`) of an f16 view, in the low 16 bits.
fn half_at(e: u32) -> u32 {
    let s = p.src_offset + strided_offset(e, RANK, p.shape, p.src_strides);
    return (load_src(s >> 1u) >> ((s & 1u) * 16u)) & 0xFFFFu;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if HALF {
        let e = 2u * i;
        if e >= p.n {
            return;
        }
        var w = half_at(p.base + e);
        if e + 1u < p.n {
            w |= half_at(p.base + e + 1u) << 16u;
        }
        dst[p.dst_offset + i] = w;
        return;
    }
    let first = RUN * i;
    if first >= p.n {
        return;
    }
    var w = walk_from(p.base + first, 1u, RANK, p.shape);
    for (var e = p.base + first; e < p.base + min(first + RUN, p.n); e++) {
        let s = p.src_offset + walk_offset(w, RANK, p.src_strides);
        var d = p.dst_offset + e;
        if !DENSE_DST {
            d = p.dst_offset + walk_offset(w, RANK, p.dst_strides);
        }
        dst[d] = load_src(s);
        walk_next(&w, RANK, p.shape);
    }
}

// Strided-to-strided copy: element i (row-major over `shape`) of the source
// view goes to element i of the destination view. Serves contiguous(),
// copy_into() and concat() in gpu-core/src/ops/copy.rs, which coalesce both
// stride sets first. Elements move as 32-bit words, so f32 and u32 data copy
// bit-exactly (NaN payloads included).
//#include common.wgsl

// Rank after coalescing, fixed per pipeline so the index loop unrolls into
// constant indexing (dynamic indexing of arrays is slow on many drivers).
override RANK: u32 = 1u;

// Set when the destination is dense from dst_offset (every contiguous()),
// which saves the second index walk, half the kernel's integer divisions.
override DENSE_DST: bool = false;

struct Params {
    shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
    n: u32,
    src_offset: u32,
    dst_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let s = p.src_offset + strided_offset(i, RANK, p.shape, p.src_strides);
    var d = p.dst_offset + i;
    if !DENSE_DST {
        d = p.dst_offset + strided_offset(i, RANK, p.shape, p.dst_strides);
    }
    dst[d] = src[s];
}

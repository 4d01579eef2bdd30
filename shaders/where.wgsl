// z = cond != 0 ? a : b, all three read through broadcast strided views.
//#include common.wgsl

// Rank after coalescing, fixed per pipeline so the index loop unrolls into
// constant indexing (dynamic indexing of arrays is slow on many drivers).
override RANK: u32 = 1u;

struct Params {
    shape: array<vec4<u32>, 2>,
    c_strides: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
    n: u32,
    c_offset: u32,
    a_offset: u32,
    b_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> z: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let ic = p.c_offset + strided_offset(i, RANK, p.shape, p.c_strides);
    let ia = p.a_offset + strided_offset(i, RANK, p.shape, p.a_strides);
    let ib = p.b_offset + strided_offset(i, RANK, p.shape, p.b_strides);
    z[i] = select(b[ib], a[ia], c[ic] != 0.0);
}

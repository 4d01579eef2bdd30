// Elementwise z = f(a, b) with NumPy broadcasting: both operands are read
// through strided views (stride 0 on broadcast dims) and z is contiguous.
// f and its OP numbering come from the binary op table (gpu-core/src/ops/binary.rs),
// generated as the `binary_fns` library.
//#include common.wgsl

// Rank after coalescing, fixed per pipeline so the index loop unrolls into
// constant indexing (dynamic indexing of arrays is slow on many drivers).
override RANK: u32 = 1u;

struct Params {
    shape: array<vec4<u32>, 2>,
    a_strides: array<vec4<u32>, 2>,
    b_strides: array<vec4<u32>, 2>,
    n: u32,
    a_offset: u32,
    b_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The operands a and b (bindings 1 and 2), read with load_a / load_a_quad
// and load_b / load_b_quad: storage buffers here, textures in `binary_tex`
// (the variant swaps the include; generated from kernels/matmul.rs's list).
//#include operands_f32.wgsl
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
// The output as vec4 for `main4` (each entry uses only its own globals).
@group(0) @binding(3) var<storage, read_write> z4: array<vec4<f32>>;

// How `main4` reads an operand along the innermost dim: 1 = four contiguous
// values (one vec4 load), 0 = one value broadcast to all four.
override A_VEC: u32 = 1u;
override B_VEC: u32 = 1u;

//#include binary_fns.wgsl

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let ia = p.a_offset + strided_offset(i, RANK, p.shape, p.a_strides);
    let ib = p.b_offset + strided_offset(i, RANK, p.shape, p.b_strides);
    z[i] = f(load_a(ia), load_b(ib));
}

fn f4(x: vec4<f32>, y: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(f(x.x, y.x), f(x.y, y.y), f(x.z, y.z), f(x.w, y.w));
}

// Four consecutive outputs per thread, for views whose innermost dim is a
// multiple of 4 that each operand reads contiguously (stride 1, offsets and
// other strides multiples of 4) or broadcasts (stride 0). CPU drivers turn
// every per-lane load into a loop over the lanes, so one vec4 load instead of
// four scalar ones is most of the speed there; GPUs get wider transactions.
@compute @workgroup_size(256)
fn main4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if 4u * i >= p.n {
        return;
    }
    let ia = p.a_offset + strided_offset(4u * i, RANK, p.shape, p.a_strides);
    let ib = p.b_offset + strided_offset(4u * i, RANK, p.shape, p.b_strides);
    // Pooled buffers are whole multiples of 16 bytes, so every element has one.
    var x = load_a_quad(ia / 4u);
    if A_VEC == 0u {
        x = vec4<f32>(x[ia % 4u]);
    }
    var y = load_b_quad(ib / 4u);
    if B_VEC == 0u {
        y = vec4<f32>(y[ib % 4u]);
    }
    z4[i] = f4(x, y);
}

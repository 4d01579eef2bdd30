// Elementwise y = f(x) over contiguous f32; f is chosen by the override OP
// (the generated unary_fns library).
//#include common.wgsl

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// The input x (binding 1), read with load_x: a storage buffer here, a
// texture in `unary_tex` (shaders.rs swaps the include).
//#include load_x_f32.wgsl
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

//#include unary_fns.wgsl

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i < p.n {
        y[i] = f(load_x(i));
    }
}

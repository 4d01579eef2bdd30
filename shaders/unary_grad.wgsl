// Backward of an elementwise function: dx = g * f'(x) (chain: a gated op
// passes no gradient where f' is 0), one fused pass
// (f chosen by the override OP, the generated unary_fns library). y = f(x) is passed in
// because several derivatives are cheapest in terms of the output.
//#include common.wgsl

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
//#include unary_grad_inputs_f32.wgsl
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

//#include unary_fns.wgsl

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i < p.n {
        dx[i] = chain(load_g(i), df(load_x(i), load_y(i)));
    }
}

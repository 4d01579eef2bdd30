// fill: y[i] = value; arange: y[i] = start + i * step.
//#include common.wgsl

struct Params {
    n: u32,
    a: f32,
    b: f32,
    // The index of y[0]: a buffer past the binding limit is filled a window
    // at a time (ops/fill.rs), and arange's values depend on the index.
    base: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i < p.n {
        y[i] = p.a;
    }
}

@compute @workgroup_size(256)
fn arange(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i < p.n {
        y[i] = p.a + f32(p.base + i) * p.b;
    }
}

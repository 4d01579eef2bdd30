// Inverted-dropout masks (gpu-core/src/ops/dropout.rs): element i is 0.0
// where its uniform u_i < p (dropped) and `scale` = 1 / (1 - p) elsewhere.
// u_i is exactly the number random.wgsl's uniform draws for (seed, offset, i),
// compared in f32 like the CPU twin, so masks agree bit for bit.
//#include common.wgsl
//#include philox.wgsl

struct Params {
    n: u32,
    // ceil(n / 4): threads with work
    quads: u32,
    // seed, low word first
    key0: u32,
    key1: u32,
    // first counter (offset), low word first
    ctr0: u32,
    ctr1: u32,
    // drop probability and the kept elements' value
    p: f32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear_workgroup(wid, nwg) * 256u + lid;
    let i0 = 4u * t;
    if t >= p.quads {
        return;
    }
    let r = philox_block(vec2<u32>(p.ctr0, p.ctr1), t, vec2<u32>(p.key0, p.key1));
    for (var k = 0u; k < 4u; k++) {
        if i0 + k < p.n {
            y[i0 + k] = select(p.scale, 0.0, unit(r[k]) < p.p);
        }
    }
}

// amp.wgsl's unscale_and_check over seven gradients in one launch
// (torch._amp_foreach_non_finite_check_and_unscale_ takes a list too): a
// step's gradients are many small buffers, and one launch each made the
// unscaling a fifth of a mixed-precision ResNet-20 step's launches. The
// gradients are read as one index space: element i belongs to the first
// gradient whose end (`end0`..`end6`, running totals of their lengths)
// lies past it. Bindings: 1 the state (amp_state.wgsl), 2-8 the gradients.
//#include common.wgsl
//#include amp_state.wgsl

struct Params {
    // all seven gradients' elements (end6)
    n: u32,
    end0: u32,
    end1: u32,
    end2: u32,
    end3: u32,
    end4: u32,
    end5: u32,
    end6: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read_write> g0: array<u32>;
@group(0) @binding(3) var<storage, read_write> g1: array<u32>;
@group(0) @binding(4) var<storage, read_write> g2: array<u32>;
@group(0) @binding(5) var<storage, read_write> g3: array<u32>;
@group(0) @binding(6) var<storage, read_write> g4: array<u32>;
@group(0) @binding(7) var<storage, read_write> g5: array<u32>;
@group(0) @binding(8) var<storage, read_write> g6: array<u32>;

@compute @workgroup_size(256)
fn unscale_seven(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    // WGSL cannot index bindings, so one branch per gradient.
    if i < p.end0 {
        g0[i] = unscaled(g0[i]);
    } else if i < p.end1 {
        let j = i - p.end0;
        g1[j] = unscaled(g1[j]);
    } else if i < p.end2 {
        let j = i - p.end1;
        g2[j] = unscaled(g2[j]);
    } else if i < p.end3 {
        let j = i - p.end2;
        g3[j] = unscaled(g3[j]);
    } else if i < p.end4 {
        let j = i - p.end3;
        g4[j] = unscaled(g4[j]);
    } else if i < p.end5 {
        let j = i - p.end4;
        g5[j] = unscaled(g5[j]);
    } else {
        let j = i - p.end5;
        g6[j] = unscaled(g6[j]);
    }
}

// Mixed-precision support: unscale a gradient in place and flag non-finite
// values (torch._amp_foreach_non_finite_check_and_unscale_, one tensor per
// launch; the CPU twin is gpu-core/src/ops/amp.rs).
//
// The inverse scale is read from a one-element buffer, not from Params, so a
// scale that lives on the device never has to visit the host. `found_inf` is
// only ever set (to 1.0), never cleared, so one flag can collect the verdict
// of every gradient of a step across launches.
//#include common.wgsl

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inv_scale: array<f32>;
@group(0) @binding(2) var<storage, read_write> grad: array<f32>;
// f32 1.0 (0x3f800000) is stored atomically: many threads may find a
// non-finite value in one launch, and racing plain stores are a data race in
// WGSL's memory model even when they write the same value.
@group(0) @binding(3) var<storage, read_write> found_inf: array<atomic<u32>>;

// Infinity or NaN: all exponent bits set. Tested on the bits because WGSL
// lets compilers assume float arithmetic never produces either, so
// `v != v` style tests may be folded away.
fn non_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(256)
fn unscale_and_check(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    let v = grad[i];
    if non_finite(v) {
        atomicStore(&found_inf[0], 0x3f800000u);
    }
    // PyTorch leaves values untouched when the inverse scale is exactly 1.
    let s = inv_scale[0];
    if s != 1.0 {
        grad[i] = v * s;
    }
}

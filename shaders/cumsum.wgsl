// Cumulative sums along one dim of dense data seen as [outer, n, inner]
// (gpu-core/src/ops/cumsum.rs; the CPU twin is kernels/cumsum.rs): one
// thread per fiber (o, i) adds its n elements in order, first to last or,
// with p.reverse, last to first (the gradient), writing each running sum.
// The twin adds in the same order, so both give the same bits, run after
// run, without atomics or a tree whose shape would depend on the adapter.
//#include common.wgsl

struct Params {
    // Fibers: outer * inner.
    fibers: u32,
    // Elements along the dim, and after it.
    n: u32,
    inner: u32,
    // 1 to sum from the end (suffix sums).
    reverse: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let f = linear_workgroup(wid, nwg) * 256u + lid;
    if f >= p.fibers {
        return;
    }
    // Neighbouring threads take neighbouring inner indices: their loads
    // at each step are adjacent whenever the dim is not the last.
    let base = (f / p.inner) * p.n * p.inner + f % p.inner;
    var acc = 0.0;
    for (var k = 0u; k < p.n; k++) {
        let at = base + select(k, p.n - 1u - k, p.reverse != 0u) * p.inner;
        acc += src[at];
        dst[at] = acc;
    }
}

// argsort (gpu-core/src/ops/argsort.rs; CPU twin kernels/argsort.rs): the
// positions that sort each fiber of dense data seen as [outer, n, inner]
// along n, ascending or descending, equal values in position order (a
// stable sort), NaN after every number ascending and before descending,
// -0.0 equal to 0.0 (PyTorch's order).
//
// One workgroup per fiber: the fiber's values become u32 keys whose order
// is the floats' (`sortable`; complemented for descending), padded to a
// power of two with keys that sort last, in `keys` with their positions;
// a bitonic network on (key, position) pairs sorts them there (a storage
// barrier between stages: only this workgroup touches its fiber's keys);
// the positions are written out. All pairs differ, so the order is the
// twin's exactly.
//#include common.wgsl

struct Params {
    // Fibers (outer * inner), elements along the dim and after it.
    fibers: u32,
    n: u32,
    inner: u32,
    // n rounded up to a power of two (at least 2).
    pow2: u32,
    // 1 to sort largest first.
    descending: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> idx: array<u32>;
// Per fiber: pow2 keys, then pow2 positions.
@group(0) @binding(3) var<storage, read_write> keys: array<u32>;

// A key whose unsigned order is the float order: NaN (any) above +inf,
// -0.0 equal to 0.0.
fn sortable(v: f32) -> u32 {
    var bits = bitcast<u32>(v);
    if (bits & 0x7fffffffu) > 0x7f800000u {
        bits = 0x7fc00000u;
    }
    if bits == 0x80000000u {
        bits = 0u;
    }
    if (bits & 0x80000000u) != 0u {
        return ~bits;
    }
    return bits | 0x80000000u;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let f = linear_workgroup(wid, nwg);
    if f >= p.fibers {
        return;
    }
    let m = p.pow2;
    let kb = f * 2u * m;
    let origin = (f / p.inner) * p.n * p.inner + f % p.inner;
    for (var j = lid; j < m; j += 256u) {
        // Padding sorts after every real key either way.
        var key = 0xffffffffu;
        if j < p.n {
            key = sortable(src[origin + j * p.inner]);
            if p.descending != 0u {
                key = ~key;
            }
        }
        keys[kb + j] = key;
        keys[kb + m + j] = j;
    }
    storageBarrier();
    for (var size = 2u; size <= m; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            for (var j = lid; j < m / 2u; j += 256u) {
                let a = 2u * stride * (j / stride) + j % stride;
                let b = a + stride;
                let ka = keys[kb + a];
                let ja = keys[kb + m + a];
                let kbb = keys[kb + b];
                let jb = keys[kb + m + b];
                let b_first = kbb < ka || (kbb == ka && jb < ja);
                if b_first == ((a & size) == 0u) {
                    keys[kb + a] = kbb;
                    keys[kb + m + a] = jb;
                    keys[kb + b] = ka;
                    keys[kb + m + b] = ja;
                }
            }
            storageBarrier();
        }
    }
    for (var j = lid; j < p.n; j += 256u) {
        idx[origin + j * p.inner] = keys[kb + m + j];
    }
}

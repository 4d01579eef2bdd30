// Indexing with u32 index buffers (gpu-core/src/ops/index.rs):
//   gather      out[i] = x[pos(i)], which also serves index_select;
//   scatter_add dst[pos(i)] += src[i], with a CAS-loop float atomic add;
//   one_hot     out[r, c] = labels[r] == c;
//   class_targets  nll_loss's targets made safe to look up: t (0 when out of
//               range) and whether the row counts (in range, not ignored).
//
// gather and scatter_add never rebuild coordinates: the position of the
// indexed element is the strided offset of i in a view whose stride along
// `dim` is zeroed, plus index * stride[dim]. Where thread i reads its index
// is another strided view (index_select: stride 1 along dim, 0 elsewhere).
//
// An out-of-range index is reported to the device's index-error record (the
// next readback returns the error; index_check.wgsl) by gather and
// scatter_add, and has a fixed meaning meanwhile: gather reads 0.0,
// scatter_add skips the element, one_hot leaves the row zero.
//#include common.wgsl
//#include index_check.wgsl

// Rank after coalescing, fixed per pipeline so the index loop unrolls into
// constant indexing (dynamic indexing of arrays is slow on many drivers).
override RANK: u32 = 1u;

struct Params {
    // The shape the threads walk: the output for gather, the index for scatter_add.
    shape: array<vec4<u32>, 2>,
    // Strides of the indexed tensor with `dim` zeroed.
    x_strides: array<vec4<u32>, 2>,
    // Where thread i finds its index (gather only).
    i_strides: array<vec4<u32>, 2>,
    n: u32,
    x_offset: u32,
    dim_stride: u32,
    // Size of the indexed dim (classes for one_hot); indices at or past it are out of range.
    dim_size: u32,
    // The op's site number for index errors (index_check.rs).
    site: u32,
    // class_targets: whether `ignore` is an ignored class index.
    has_ignore: u32,
    ignore: u32,
    // Past the binding limit (ops/index.rs) every entry runs in ranges of
    // its threads: the range's first thread, and where the index window of
    // a gather or one_hot starts (0 for a whole launch; the other windows
    // start at the range's first thread, so they are read at t).
    base: u32,
    i_shift: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
// Each entry point statically uses only its own bindings, so the globals
// below may share binding numbers with different types.
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> acc: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> hot: array<f32>;
// gather and scatter_add: the index-error record.
@group(0) @binding(4) var<storage, read_write> index_error: array<atomic<u32>>;
// class_targets: safe targets, row weights, the index-error record.
@group(0) @binding(2) var<storage, read_write> safe_out: array<u32>;
@group(0) @binding(3) var<storage, read_write> keep_out: array<f32>;

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear_workgroup(wid, nwg) * 256u + lid;
    if t >= p.n {
        return;
    }
    let i = p.base + t;
    let j = idx[strided_offset(i, RANK, p.shape, p.i_strides) - p.i_shift];
    var v = 0.0;
    if j < p.dim_size {
        v = x[p.x_offset + strided_offset(i, RANK, p.shape, p.x_strides) + j * p.dim_stride];
    } else {
        report_index(p.site, j, p.dim_size);
    }
    out[t] = v;
}

// WGSL has no float atomics: retry a compare-exchange on the bit pattern
// until no other thread wrote between our load and our store.
fn atomic_add_f32(k: u32, v: f32) {
    var old = atomicLoad(&acc[k]);
    loop {
        let r = atomicCompareExchangeWeak(&acc[k], old, bitcast<u32>(bitcast<f32>(old) + v));
        if r.exchanged {
            break;
        }
        old = r.old_value;
    }
}

// Index and src are contiguous with the walked shape, so both are read at i.
@compute @workgroup_size(256)
fn scatter_add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear_workgroup(wid, nwg) * 256u + lid;
    if t >= p.n {
        return;
    }
    let j = idx[t];
    if j >= p.dim_size {
        report_index(p.site, j, p.dim_size);
        return;
    }
    let i = p.base + t;
    atomic_add_f32(p.x_offset + strided_offset(i, RANK, p.shape, p.x_strides) + j * p.dim_stride, x[t]);
}

@compute @workgroup_size(256)
fn one_hot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear_workgroup(wid, nwg) * 256u + lid;
    if t >= p.n {
        return;
    }
    let i = p.base + t;
    hot[t] = select(0.0, 1.0, idx[i / p.dim_size - p.i_shift] == i % p.dim_size);
}

@compute @workgroup_size(256)
fn class_targets(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i >= p.n {
        return;
    }
    // Windows start at the range's first thread: read and written at i.
    let t = idx[i];
    let ignored = p.has_ignore == 1u && t == p.ignore;
    let in_range = t < p.dim_size;
    if !in_range && !ignored {
        report_index(p.site, t, p.dim_size);
    }
    safe_out[i] = select(0u, t, in_range);
    keep_out[i] = select(0.0, 1.0, in_range && !ignored);
}

// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11, the
// Random123 generator). Thread t hashes counter (offset + t) under key = seed
// into four u32 words and writes elements 4t .. 4t+3, so the stream depends
// only on (seed, offset, i) and the CPU twin in gpu-core/src/ops/random.rs
// reproduces it. DIST: 0 = uniform, 1 = normal (Box–Muller), 2 = inverted-
// dropout mask (0 where the uniform u < a, else b = 1 / (1 - a)).
//#include common.wgsl
//#include philox.wgsl

override DIST: u32 = 0u;

struct Params {
    n: u32,
    // ceil(n / 4): threads with work
    quads: u32,
    // `main`: the seed, low word first; `from_table`: unused
    key0: u32,
    key1: u32,
    // `main`: the first counter (offset), low word first; `from_table`:
    // this window's first block past the row's offset, and unused
    ctr0: u32,
    ctr1: u32,
    // `from_table`: the row of `draws` that holds [seed lo, seed hi,
    // offset lo, offset hi]
    row: u32,
    // uniform: lo and (hi - lo); normal: mean and std; mask: p and 1 / (1 - p)
    a: f32,
    b: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
// Only read. Bound after the output (as a second "output") so that `main`
// has the same bindings without it.
@group(0) @binding(2) var<storage, read_write> draws: array<vec4<u32>>;

const TWO_PI: f32 = 6.283185307179586;

fn fill(t: u32, key: vec2<u32>, ctr: vec2<u32>) {
    let i0 = 4u * t;
    let r = philox_block(ctr, t, key);

    var out: vec4<f32>;
    if DIST == 0u {
        out = vec4<f32>(p.a) + p.b * vec4<f32>(unit(r.x), unit(r.y), unit(r.z), unit(r.w));
    } else if DIST == 2u {
        // Compared in f32 like the CPU twin, so masks agree bit for bit.
        let u = vec4<f32>(unit(r.x), unit(r.y), unit(r.z), unit(r.w));
        out = select(vec4<f32>(p.b), vec4<f32>(0.0), u < vec4<f32>(p.a));
    } else {
        // u1 in (0, 1] so the log is finite.
        let r01 = sqrt(-2.0 * log(f32((r.x >> 8u) + 1u) * TWO_POW_M24));
        let r23 = sqrt(-2.0 * log(f32((r.z >> 8u) + 1u) * TWO_POW_M24));
        let t01 = TWO_PI * unit(r.y);
        let t23 = TWO_PI * unit(r.w);
        out = vec4<f32>(p.a) + p.b * vec4<f32>(r01 * cos(t01), r01 * sin(t01), r23 * cos(t23), r23 * sin(t23));
    }
    for (var k = 0u; k < 4u; k++) {
        if i0 + k < p.n {
            y[i0 + k] = out[k];
        }
    }
}

// Seed and offset from the parameters.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear_workgroup(wid, nwg) * 256u + lid;
    if t < p.quads {
        fill(t, vec2<u32>(p.key0, p.key1), vec2<u32>(p.ctr0, p.ctr1));
    }
}

// Seed and offset from row `p.row` of `draws` (a compiled step's table,
// rewritten before each replay while the launch stays the same).
@compute @workgroup_size(256)
fn from_table(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = linear_workgroup(wid, nwg) * 256u + lid;
    if t < p.quads {
        let d = draws[p.row];
        fill(t, d.xy, add_u64(d.zw, p.ctr0));
    }
}

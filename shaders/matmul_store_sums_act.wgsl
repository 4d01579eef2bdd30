// Hand-written, not generated (kernels/io.rs): applies a unary op and saves its input, logic rather than storage boilerplate.
// The end of matmul_store.wgsl in the matmul's `_act` variants: an op of
// the unary table (the override OP, its fields in p.alpha and p.beta; the
// generated unary_fns library) applied to the scaled sums plus their bias,
// before the residual, in the product's own launch (a Linear followed by a
// GELU). With p.save_pre the values before it are stored too, into `pre`
// (binding 6, f32, C's shape): what the op's gradient reads. f32 results
// only (the host casts or falls back for f16).
//#include unary_fns.wgsl
@group(0) @binding(6) var<storage, read_write> pre: array<f32>;

// Writes the sums `s` of columns col.. of row `row`, with `b` their bias,
// through the epilogue (p.relu is off) and the op.
fn store_sums(tl: Tile, row: u32, col: u32, s: vec4<f32>, b: vec4<f32>) {
    let v = epilogue(s, b);
    if p.save_pre != 0u && row < p.m {
        let i = tl.c_base + row * p.n + col;
        for (var j = 0u; j < 4u; j++) {
            if col + j < p.n {
                pre[i + j] = v[j];
            }
        }
    }
    store_c(tl, row, col, vec4(f(v.x), f(v.y), f(v.z), f(v.w)));
}

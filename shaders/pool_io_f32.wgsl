// The pooling kernels' values in f32 storage: the input (forward) or output
// gradient (backward) `src`, the pooled output or average pooling's input
// gradient `out`, and max pooling's input gradient `dx`. pool.wgsl touches
// them only through the functions below; shaders.rs swaps this include for
// pool_io_f16.wgsl (packed u32 words) or pool_io_f16_native.wgsl (WGSL's
// f16 loads) to make the f16 variants, whose arithmetic stays f32 (loads
// widen exactly, stores round once to nearest even).
//
// Thread t owns the LANES elements from LANES·t (its "unit", in the first
// lanes of a vec2); an f16 unit is one whole u32 word, so no two threads
// write the same word.
const LANES: u32 = 1u;

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// Element i of `src`.
fn load_src(i: u32) -> f32 {
    return src[i];
}

// Unit t of each output.
fn store_out(t: u32, v: vec2<f32>) {
    out[t] = v.x;
}

fn store_dx(t: u32, v: vec2<f32>) {
    dx[t] = v.x;
}

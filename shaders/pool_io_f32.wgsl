// The pooling kernels' values in f32 storage: the input (forward) or output
// gradient (backward) `src`, the outputs of pool_out_f32.wgsl, and max
// pooling backward's argmax (pool_arg_buffer.wgsl). pool.wgsl touches them
// only through load_src, load_arg, store_out and store_dx; shaders.rs swaps
// this include for pool_io_f16.wgsl (packed u32 words),
// pool_io_f16_native.wgsl (WGSL's f16 loads) or pool_io_tex.wgsl (inputs
// through textures, CPU adapters). f16 arithmetic stays f32 (loads widen
// exactly, stores round once to nearest even).
//
// Thread t owns the LANES elements from LANES·t (its "unit", in the first
// lanes of a vec2); an f16 unit is one whole u32 word, so no two threads
// write the same word.
//#include pool_out_f32.wgsl
//#include pool_arg_buffer.wgsl

@group(0) @binding(1) var<storage, read> src: array<f32>;

// Element i of `src`.
fn load_src(i: u32) -> f32 {
    return src[i];
}

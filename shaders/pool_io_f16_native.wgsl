// The pooling kernels' values in f16 storage read as WGSL's `f16` (needs
// SHADER_F16; shaders.rs puts `enable f16;` at the top of the variant). The
// bytes are those of pool_io_f16.wgsl, loads widen exactly, and the stores
// are the packed ones (pool_io_f16_common.wgsl), so both variants write the
// same bits.
//#include pool_io_f16_common.wgsl

@group(0) @binding(1) var<storage, read> src: array<f16>;

fn load_src(i: u32) -> f32 {
    return f32(src[i]);
}

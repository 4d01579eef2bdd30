// The pooling kernels' values in packed f16 storage (see pool_io_f32.wgsl
// for the interface), for adapters without SHADER_F16: loads widen
// (exactly) with unpack2x16float; the stores are in pool_io_f16_common.wgsl.
//#include pool_io_f16_common.wgsl

@group(0) @binding(1) var<storage, read> src: array<u32>;

fn load_src(i: u32) -> f32 {
    return half_at(src[i / 2u], i);
}

// The pooling kernels' f32 inputs read through textures (CPU adapters; see
// texels.wgsl and pool_io_f32.wgsl for the interface): `src` and max pooling
// backward's argmax. The argmax is u32 data copied byte for byte into the
// r32float texture; a storage-image load moves those bits unchanged (no
// arithmetic touches them before the bitcast back), so indices, including
// the NONE pattern, arrive intact (parity_pool.rs checks the gradients).
//#include texels.wgsl
//#include pool_out_f32.wgsl

@group(0) @binding(1) var src: texture_storage_2d<r32float, read>;
@group(0) @binding(2) var arg_in: texture_storage_2d<r32float, read>;

fn load_src(i: u32) -> f32 {
    return texel(src, i);
}

fn load_arg(o: u32) -> u32 {
    return bitcast<u32>(texel(arg_in, o));
}

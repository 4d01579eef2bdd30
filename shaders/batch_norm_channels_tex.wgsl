// The per-channel inputs of batch_norm_channels_f32.wgsl read through
// textures (batch_norm_io_tex.wgsl; see texels.wgsl): on llvmpipe a
// per-channel load is as costly as an activation's when channels differ
// between lanes, and the elementwise entries make several per element.
@group(0) @binding(2) var stats_in: texture_storage_2d<r32float, read>;
@group(0) @binding(3) var weight_in: texture_storage_2d<r32float, read>;
@group(0) @binding(4) var bias_in: texture_storage_2d<r32float, read>;
@group(0) @binding(4) var stats_in4: texture_storage_2d<r32float, read>;
@group(0) @binding(5) var weight_in5: texture_storage_2d<r32float, read>;
@group(0) @binding(6) var dbias_in: texture_storage_2d<r32float, read>;
@group(0) @binding(7) var dweight_in: texture_storage_2d<r32float, read>;

fn fwd_stat(i: u32) -> f32 {
    return texel(stats_in, i);
}

fn fwd_weight(c: u32) -> f32 {
    return texel(weight_in, c);
}

fn fwd_bias(c: u32) -> f32 {
    return texel(bias_in, c);
}

fn bwd_stat(i: u32) -> f32 {
    return texel(stats_in4, i);
}

fn bwd_weight(c: u32) -> f32 {
    return texel(weight_in5, c);
}

fn bwd_dbias(c: u32) -> f32 {
    return texel(dbias_in, c);
}

fn bwd_dweight(c: u32) -> f32 {
    return texel(dweight_in, c);
}

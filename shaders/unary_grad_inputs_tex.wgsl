// The inputs of unary_grad.wgsl read through textures (see texels.wgsl).
//#include texels.wgsl
@group(0) @binding(1) var x: texture_storage_2d<r32float, read>;
@group(0) @binding(2) var y: texture_storage_2d<r32float, read>;
@group(0) @binding(3) var g: texture_storage_2d<r32float, read>;

fn x_at(i: u32) -> f32 {
    return texel(x, i);
}

fn y_at(i: u32) -> f32 {
    return texel(y, i);
}

fn g_at(i: u32) -> f32 {
    return texel(g, i);
}

// The row backward passes' dy and y read through textures (see texels.wgsl
// and row_grads_f32.wgsl).
//#include texels.wgsl
@group(0) @binding(1) var dy_src: texture_storage_2d<r32float, read>;
@group(0) @binding(2) var y_src: texture_storage_2d<r32float, read>;

fn load_dy(i: u32) -> f32 {
    return texel(dy_src, i);
}

fn load_y(i: u32) -> f32 {
    return texel(y_src, i);
}

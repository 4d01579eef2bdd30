// matmul_store_cell.wgsl's read-only inputs, bindings 3-5, read through
// textures on CPU adapters (texels.wgsl; the `_tex` variant).
//#include texels.wgsl
@group(0) @binding(3) var in3: texture_storage_2d<r32float, read>;
@group(0) @binding(4) var in4: texture_storage_2d<r32float, read>;
@group(0) @binding(5) var in5: texture_storage_2d<r32float, read>;

fn load3(i: u32) -> f32 {
    return texel(in3, i);
}

fn load4(i: u32) -> f32 {
    return texel(in4, i);
}

fn load5(i: u32) -> f32 {
    return texel(in5, i);
}

// The operands of operands_f32.wgsl read through textures (the subgroup
// matmul and the binary kernel on CPU adapters; see texels.wgsl for why and
// how they are laid out).
//#include texels.wgsl

@group(0) @binding(1) var a: texture_storage_2d<r32float, read>;
@group(0) @binding(2) var b: texture_storage_2d<r32float, read>;

fn a_at(i: u32) -> f32 {
    return texel(a, i);
}

fn b_at(i: u32) -> f32 {
    return texel(b, i);
}

fn a4(q: u32) -> vec4<f32> {
    return texel4(a, q);
}

fn b4(q: u32) -> vec4<f32> {
    return texel4(b, q);
}

// The matmul operands read through textures (the subgroup kernel on CPU
// adapters, f32 operands): the host copies each bound buffer (or window)
// into an r32float texture TEX_WIDTH texels wide, element i at texel
// (i % TEX_WIDTH, i / TEX_WIDTH) (`gpu/texture_operands.rs`).
//
// Why: llvmpipe (Mesa 22.3) loads a storage-buffer element whose address
// differs per lane in a loop over the lanes that stalls on every element
// (about 15 cycles each, most of a product's time), while a texel fetch is
// one AVX2 gather for all 8 lanes: 8x cheaper per element measured on a
// Zen 3 host (docs/performance.md, "Where llvmpipe's matmul time goes").
@group(0) @binding(1) var a: texture_2d<f32>;
@group(0) @binding(2) var b: texture_2d<f32>;

// Texels per texture row (gpu/texture_operands.rs: TEX_WIDTH).
const TEX_WIDTH: u32 = 4096u;

fn a_at(i: u32) -> f32 {
    return textureLoad(a, vec2<u32>(i % TEX_WIDTH, i / TEX_WIDTH), 0).x;
}

fn b_at(i: u32) -> f32 {
    return textureLoad(b, vec2<u32>(i % TEX_WIDTH, i / TEX_WIDTH), 0).x;
}

// Elements 4q..4q + 3 of A (of B): four fetches (a row never ends inside
// them, TEX_WIDTH being a multiple of 4).
fn a4(q: u32) -> vec4<f32> {
    let i = 4u * q;
    return vec4(a_at(i), a_at(i + 1u), a_at(i + 2u), a_at(i + 3u));
}

fn b4(q: u32) -> vec4<f32> {
    let i = 4u * q;
    return vec4(b_at(i), b_at(i + 1u), b_at(i + 2u), b_at(i + 3u));
}

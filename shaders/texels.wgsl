// Hand-written, not generated (kernels/io.rs): the texel addressing the generated texture libraries call.
// Inputs read through textures (the texture variants each family lists in
// its kernels/NAME.rs, used on CPU adapters for f32 data): the host copies each
// bound buffer (or window) into an r32float texture TEX_WIDTH texels wide,
// element i at texel (i % TEX_WIDTH, i / TEX_WIDTH) (`gpu/texture_operands.rs`),
// bound as a read-only storage texture.
//
// Why: llvmpipe (Mesa 22.3) loads a storage-buffer element whose address
// differs per lane in a loop over the lanes that stalls on every element
// (about 15 cycles each), while a texel load is one AVX2 gather for all 8
// lanes (docs/performance.md, "Where llvmpipe's matmul time goes"). Why a
// storage texture rather than a sampled one (`texture_2d`): llvmpipe calls
// a generated function for each sampled fetch that looks up the mip level's
// size and offset per lane (about 110 instructions per gather), while a
// storage-image load is inlined as a bounds check, a multiply-add and the
// gather; the subgroup matmul ran 1.7x faster (session 12).

// Texels per texture row (gpu/texture_operands.rs: TEX_WIDTH).
const TEX_WIDTH: u32 = 4096u;

// Element i of the data copied into `t`.
fn texel(t: texture_storage_2d<r32float, read>, i: u32) -> f32 {
    return textureLoad(t, vec2<u32>(i % TEX_WIDTH, i / TEX_WIDTH)).x;
}

// Elements 4q..4q + 3: four loads (a row never ends inside them,
// TEX_WIDTH being a multiple of 4).
fn texel4(t: texture_storage_2d<r32float, read>, q: u32) -> vec4<f32> {
    let i = 4u * q;
    return vec4(texel(t, i), texel(t, i + 1u), texel(t, i + 2u), texel(t, i + 3u));
}

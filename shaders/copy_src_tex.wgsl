// copy.wgsl's source words read through a texture (CPU adapters; see
// texels.wgsl). The words are copied byte for byte into the r32float
// texture and a storage-image load moves their bits unchanged, so f32 (NaN
// payloads included), u32 and packed f16 data copy exactly (parity tests).
//#include texels.wgsl
@group(0) @binding(1) var src: texture_storage_2d<r32float, read>;

// Word i of the source.
fn src_word(i: u32) -> u32 {
    return bitcast<u32>(texel(src, i));
}

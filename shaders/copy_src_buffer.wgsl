// copy.wgsl's source words in a storage buffer; shaders.rs swaps this
// include for copy_src_tex.wgsl (CPU adapters).
@group(0) @binding(1) var<storage, read> src: array<u32>;

// Word i of the source.
fn src_word(i: u32) -> u32 {
    return src[i];
}

// The matmul kernels' operands in packed f16 storage, for adapters without
// SHADER_F16: two halves per u32 word (element 2k in the low half, the
// layout of `Buffer::from_f16`), a vec2 of words per four elements. Values
// are widened to f32 on load (exactly: every f16 is an f32), so the
// products and sums are f32 as in the native variant, with the same results.
@group(0) @binding(1) var<storage, read> a: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> b: array<vec2<u32>>;

fn widen4(w: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}

// Elements 4q..4q + 3 of A (of B).
fn a4(q: u32) -> vec4<f32> {
    return widen4(a[q]);
}

fn b4(q: u32) -> vec4<f32> {
    return widen4(b[q]);
}

// Element i of A (of B): half i % 2 of word i / 2.
fn a_at(i: u32) -> f32 {
    return unpack2x16float(a[i / 4u][(i / 2u) % 2u])[i % 2u];
}

fn b_at(i: u32) -> f32 {
    return unpack2x16float(b[i / 4u][(i / 2u) % 2u])[i % 2u];
}

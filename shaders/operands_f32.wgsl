// Two f32 operands a and b (bindings 1 and 2) in storage buffers, for the
// matmul kernels (see matmul.wgsl) and the binary elementwise kernel: bound
// as vec4 so that the subgroup matmul and binary's main4 load four elements
// at once. shaders.rs swaps this include for operands_tex.wgsl (textures,
// CPU adapters) or, in the matmul, for the f16 operand libraries.
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;

// Elements 4q..4q + 3 of A (of B).
fn a4(q: u32) -> vec4<f32> {
    return a[q];
}

fn b4(q: u32) -> vec4<f32> {
    return b[q];
}

// Element i of A (of B).
fn a_at(i: u32) -> f32 {
    return a[i / 4u][i % 4u];
}

fn b_at(i: u32) -> f32 {
    return b[i / 4u][i % 4u];
}

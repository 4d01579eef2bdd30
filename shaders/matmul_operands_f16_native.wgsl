// The matmul kernels' operands in f16 storage read as WGSL's `f16` (needs
// SHADER_F16; shaders.rs puts `enable f16;` at the top of the variant). The
// bytes are those of the packed variant, and loads widen to f32 the same way.
@group(0) @binding(1) var<storage, read> a: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f16>>;

// Elements 4q..4q + 3 of A (of B).
fn a4(q: u32) -> vec4<f32> {
    return vec4<f32>(a[q]);
}

fn b4(q: u32) -> vec4<f32> {
    return vec4<f32>(b[q]);
}

// Element i of A (of B).
fn a_at(i: u32) -> f32 {
    return f32(a[i / 4u][i % 4u]);
}

fn b_at(i: u32) -> f32 {
    return f32(b[i / 4u][i % 4u]);
}

// The matmul kernels' operands in f32 storage (see matmul.wgsl): bound as
// vec4 so that the subgroup kernel loads four elements at once.
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

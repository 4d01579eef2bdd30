// matmul_store_cell.wgsl's read-only inputs, bindings 3-5, as storage
// buffers (cell_inputs_tex.wgsl: the same read through textures).
@group(0) @binding(3) var<storage, read> in3: array<f32>;
@group(0) @binding(4) var<storage, read> in4: array<f32>;
@group(0) @binding(5) var<storage, read> in5: array<f32>;

fn load3(i: u32) -> f32 {
    return in3[i];
}

fn load4(i: u32) -> f32 {
    return in4[i];
}

fn load5(i: u32) -> f32 {
    return in5[i];
}

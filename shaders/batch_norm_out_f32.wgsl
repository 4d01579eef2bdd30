// The batch-norm kernels' f32 outputs (y, y with residual, dx, dres) and
// their store functions, shared by the f32 storage library
// (batch_norm_io_f32.wgsl) and the texture-input one (batch_norm_io_tex.wgsl).
@group(0) @binding(5) var<storage, read_write> y_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> y_res_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx_out: array<f32>;
@group(0) @binding(9) var<storage, read_write> dres_out: array<f32>;

@group(0) @binding(5) var<storage, read_write> y4_out: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y4_res_out: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> dx4_out: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> dres4_out: array<vec4<f32>>;

// Unit t (quad q) of each output.
fn store_y(t: u32, v: vec2<f32>) {
    y_out[t] = v.x;
}

fn store_y_res(t: u32, v: vec2<f32>) {
    y_res_out[t] = v.x;
}

fn store_dx(t: u32, v: vec2<f32>) {
    dx_out[t] = v.x;
}

fn store_dres(t: u32, v: vec2<f32>) {
    dres_out[t] = v.x;
}

fn store_y_quad(q: u32, v: vec4<f32>) {
    y4_out[q] = v;
}

fn store_y_res_quad(q: u32, v: vec4<f32>) {
    y4_res_out[q] = v;
}

fn store_dx_quad(q: u32, v: vec4<f32>) {
    dx4_out[q] = v;
}

fn store_dres_quad(q: u32, v: vec4<f32>) {
    dres4_out[q] = v;
}

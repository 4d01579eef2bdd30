// The pooling kernels' f32 outputs (pool_io_f32.wgsl and pool_io_tex.wgsl
// differ only in how they read): the pooled output or average pooling's
// input gradient `out`, and max pooling's input gradient `dx`, one element
// per thread.
const LANES: u32 = 1u;

@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// Unit t of each output.
fn store_out(t: u32, v: vec2<f32>) {
    out[t] = v.x;
}

fn store_dx(t: u32, v: vec2<f32>) {
    dx[t] = v.x;
}

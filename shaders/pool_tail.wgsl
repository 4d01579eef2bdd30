// What the pooling backward passes store: their gradient unit as it is.
// pool_tail_relu_grad.wgsl replaces this file in the `pool_relu_grad`
// variants (kernels/pool.rs).

fn grad_tail(t: u32, v: vec2<f32>) -> vec2<f32> {
    return v;
}

// The pooling backward passes' store with a ReLU's gradient merged in by
// the fuser (gpu/tails.rs): each lane times ReLU's derivative at the ReLU's
// output y (load_y, binding 3 of pool_grad_io), as unary_grad.wgsl computes
// it: g · f'(y), NaN kept.

fn grad_tail(t: u32, v: vec2<f32>) -> vec2<f32> {
    var out = v;
    for (var l = 0u; l < LANES && t * LANES + l < p.n; l++) {
        out[l] = v[l] * select(0.0, 1.0, load_y(t * LANES + l) > 0.0);
    }
    return out;
}

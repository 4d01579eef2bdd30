// The pooling backward passes' store with a ReLU's gradient merged in by
// the fuser (gpu/tails.rs): each lane times ReLU's derivative at the ReLU's
// output y (load_y, binding 3 of pool_grad_io), as unary_grad.wgsl computes
// it: ReLU is gated, so 0 where y <= 0 (whatever g is), else g.
//
// In the f16 variants the gradient is first rounded to f16 (ROUND_TAIL), as
// the unfused pass stores it and the ReLU's gradient widens it back: a
// value past f16's range is then inf where it passes, as unfused.
//#include half.wgsl

override ROUND_TAIL: bool = false;

fn grad_tail(t: u32, v: vec2<f32>) -> vec2<f32> {
    var out = v;
    for (var l = 0u; l < LANES && t * LANES + l < p.n; l++) {
        var g = v[l];
        if ROUND_TAIL {
            g = round_half(g);
        }
        out[l] = select(0.0, g, relu_passes(load_y(t * LANES + l)));
    }
    return out;
}

// Numerically safe activations shared by the elementwise kernels
// (the generated unary_fns library) and the fused recurrent cells (recurrent.wgsl).

fn sigmoid(v: f32) -> f32 {
    // Both branches stay finite for large |v|.
    if v >= 0.0 {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

fn tanh_stable(v: f32) -> f32 {
    // WGSL tanh may overflow internally for large |v| on some drivers.
    return tanh(clamp(v, -15.0, 15.0));
}

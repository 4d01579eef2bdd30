// The LSTM cell's math for one unit, PyTorch's gate order i, f, g, o: the
// one definition that recurrent.wgsl's cell kernels and the matmul's cell
// store (matmul_store_cell.wgsl) both use.
//#include activations.wgsl

// The gates and the new cell and hidden state.
struct LstmStep {
    gates: vec4<f32>,
    c: f32,
    h: f32,
}

// From the gates' pre-activations `a` and the previous cell state.
fn lstm_step(a: vec4<f32>, c_prev: f32) -> LstmStep {
    let gates = vec4(sigmoid(a.x), sigmoid(a.y), tanh_stable(a.z), sigmoid(a.w));
    let c = gates.y * c_prev + gates.x * gates.z;
    return LstmStep(gates, c, gates.w * tanh_stable(c));
}

// The gradients of the pre-activations, and the cell-state gradient
// carried to the step before.
struct LstmGrad {
    d: vec4<f32>,
    dc_prev: f32,
}

// From the saved gates, the step's cell state c and the one before it, the
// gradient dh of the step's h and the cell-state gradient `dc_next`
// carried from the step after.
fn lstm_step_grad(gates: vec4<f32>, c: f32, c_prev: f32, dh: f32, dc_next: f32) -> LstmGrad {
    let ig = gates.x;
    let fg = gates.y;
    let gg = gates.z;
    let og = gates.w;
    let tc = tanh_stable(c);
    let dc = dc_next + dh * og * (1.0 - tc * tc);
    let d = vec4(dc * gg * ig * (1.0 - ig), dc * c_prev * fg * (1.0 - fg), dc * ig * (1.0 - gg * gg), dh * tc * og * (1.0 - og));
    return LstmGrad(d, dc * fg);
}

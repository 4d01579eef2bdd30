// Elementwise y = f(x) over contiguous f32. OP (an override constant) picks f;
// its numbering is `UnaryOp::code` in gpu-core/src/ops/unary.rs.
//#include common.wgsl

override OP: u32 = 0u;

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const SELU_ALPHA: f32 = 1.6732632423543772;
const SELU_SCALE: f32 = 1.0507009873554805;

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7); the CPU twin uses the same formula.
fn erf_approx(v: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(v));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(v) * (1.0 - poly * exp(-v * v));
}

// log(1 + exp(v)) without overflow.
fn softplus1(v: f32) -> f32 {
    return max(v, 0.0) + log(1.0 + exp(-abs(v)));
}

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
    let c = clamp(v, -15.0, 15.0);
    return tanh(c);
}

fn f(v: f32) -> f32 {
    switch OP {
        case 0u: { return -v; }
        case 1u: { return abs(v); }
        case 2u: { return sign(v); }
        case 3u: { return exp(v); }
        case 4u: { return log(v); }
        case 5u: { return sqrt(v); }
        case 6u: { return 1.0 / sqrt(v); }
        case 7u: { return v * v; }
        case 8u: { return 1.0 / v; }
        case 9u: { return sin(v); }
        case 10u: { return cos(v); }
        case 11u: { return tanh_stable(v); }
        case 12u: { return sigmoid(v); }
        case 13u: { return max(v, 0.0); }
        case 14u: { return select(p.alpha * v, v, v > 0.0); }
        case 15u: { return select(p.alpha * (exp(v) - 1.0), v, v > 0.0); }
        case 16u: { return SELU_SCALE * select(SELU_ALPHA * (exp(v) - 1.0), v, v > 0.0); }
        case 17u: { return 0.5 * v * (1.0 + erf_approx(v * 0.7071067811865476)); }
        case 18u: { return 0.5 * v * (1.0 + tanh_stable(0.7978845608028654 * (v + 0.044715 * v * v * v))); }
        case 19u: { return v * sigmoid(v); }
        case 20u: { return v * tanh_stable(softplus1(v)); }
        // softplus(beta = alpha), linear above threshold beta like PyTorch.
        case 21u: { return select(softplus1(p.alpha * v) / p.alpha, v, p.alpha * v > p.beta); }
        case 22u: { return clamp(v, p.alpha, p.beta); }
        default: { return v; }
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_workgroup(wid, nwg) * 256u + lid;
    if i < p.n {
        y[i] = f(x[i]);
    }
}

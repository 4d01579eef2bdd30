// The elementwise functions f and their derivatives df, shared by unary.wgsl
// (y = f(x)) and unary_grad.wgsl (dx = g * f'(x)). OP numbering is
// `UnaryOp::code` in gpu-core/src/ops/unary.rs; parameterised ops read
// `p.alpha` / `p.beta` from the including kernel's Params.

override OP: u32 = 0u;

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

//#include activations.wgsl

// y = f(v)
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
        // Scalar arithmetic: alpha * v + beta, and v ^ alpha.
        case 23u: { return p.alpha * v + p.beta; }
        case 24u: { return pow_ieee(v, p.alpha); }
        default: { return v; }
    }
}

// f'(v), given y = f(v) where that is cheaper.
fn df(v: f32, y: f32) -> f32 {
    switch OP {
        case 0u: { return -1.0; }
        case 1u: { return sign(v); }
        case 2u: { return 0.0; }
        case 3u: { return y; }
        case 4u: { return 1.0 / v; }
        case 5u: { return 0.5 / y; }
        case 6u: { return -0.5 * y * y * y; }
        case 7u: { return 2.0 * v; }
        case 8u: { return -y * y; }
        case 9u: { return cos(v); }
        case 10u: { return -sin(v); }
        case 11u: { return 1.0 - y * y; }
        case 12u: { return y * (1.0 - y); }
        case 13u: { return select(0.0, 1.0, v > 0.0); }
        case 14u: { return select(p.alpha, 1.0, v > 0.0); }
        case 15u: { return select(y + p.alpha, 1.0, v > 0.0); }
        case 16u: { return select(y + SELU_SCALE * SELU_ALPHA, SELU_SCALE, v > 0.0); }
        case 17u: {
            let cdf = 0.5 * (1.0 + erf_approx(v * 0.7071067811865476));
            return cdf + v * 0.3989422804014327 * exp(-0.5 * v * v);
        }
        case 18u: {
            let k = 0.7978845608028654;
            let t = tanh_stable(k * (v + 0.044715 * v * v * v));
            return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v);
        }
        case 19u: {
            let s = sigmoid(v);
            return s * (1.0 + v * (1.0 - s));
        }
        case 20u: {
            let t = tanh_stable(softplus1(v));
            return t + v * (1.0 - t * t) * sigmoid(v);
        }
        case 21u: { return select(sigmoid(p.alpha * v), 1.0, p.alpha * v > p.beta); }
        case 22u: { return select(0.0, 1.0, v >= p.alpha && v <= p.beta); }
        case 23u: { return p.alpha; }
        case 24u: { return p.alpha * pow_ieee(v, p.alpha - 1.0); }
        default: { return 1.0; }
    }
}

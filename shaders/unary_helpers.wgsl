// Helpers used by the unary op table's WGSL expressions (the generated
// `unary_fns` library, see `unary_table!` in gpu-core/src/ops/unary.rs).

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

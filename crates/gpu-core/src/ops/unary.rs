//! Elementwise unary functions (`shaders/unary.wgsl`): activations and math.

use super::{f32s, f32s_mut, launch_elementwise, run, Params};
use crate::{Buffer, Result};

/// A unary function. Parameterised ones carry their PyTorch arguments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// -x
    Neg,
    /// |x|
    Abs,
    /// -1, 0 or 1
    Sign,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// 1/√x
    Rsqrt,
    /// x²
    Square,
    /// 1/x
    Reciprocal,
    /// sin x
    Sin,
    /// cos x
    Cos,
    /// tanh x
    Tanh,
    /// 1/(1+e^-x)
    Sigmoid,
    /// max(x, 0)
    Relu,
    /// x if x > 0 else slope·x
    LeakyRelu(f32),
    /// x if x > 0 else alpha·(e^x − 1)
    Elu(f32),
    /// scale·(x if x > 0 else alpha·(e^x − 1)) with the self-normalising constants
    Selu,
    /// x·Φ(x), exact (erf) form
    Gelu,
    /// GELU's tanh approximation
    GeluTanh,
    /// x·sigmoid(x) (swish)
    Silu,
    /// x·tanh(softplus(x))
    Mish,
    /// ln(1+e^(beta·x))/beta, linear where beta·x > threshold
    Softplus {
        /// Sharpness (PyTorch default 1).
        beta: f32,
        /// Linear above this (PyTorch default 20).
        threshold: f32,
    },
    /// min(max(x, lo), hi)
    Clamp(f32, f32),
    /// scale·x + shift: scalar add, sub, mul and div in one pass
    Affine {
        /// Multiplier.
        scale: f32,
        /// Addend.
        shift: f32,
    },
    /// x^p for a scalar exponent (IEEE pow, so negative x with integer p works)
    Powf(f32),
}

const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;

/// erf by Abramowitz & Stegun 7.1.26, the same formula as the WGSL kernel.
pub fn erf_approx(v: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * v.abs());
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    sign(v) * (1.0 - poly * (-v * v).exp())
}

/// WGSL's sign: 0 at 0 (Rust's `signum` gives ±1).
fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn softplus1(v: f32) -> f32 {
    v.max(0.0) + (-v.abs()).exp().ln_1p()
}

fn sigmoid(v: f32) -> f32 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

impl UnaryOp {
    /// The `OP` override value in `unary.wgsl`.
    fn code(self) -> u32 {
        use UnaryOp::*;
        match self {
            Neg => 0,
            Abs => 1,
            Sign => 2,
            Exp => 3,
            Log => 4,
            Sqrt => 5,
            Rsqrt => 6,
            Square => 7,
            Reciprocal => 8,
            Sin => 9,
            Cos => 10,
            Tanh => 11,
            Sigmoid => 12,
            Relu => 13,
            LeakyRelu(_) => 14,
            Elu(_) => 15,
            Selu => 16,
            Gelu => 17,
            GeluTanh => 18,
            Silu => 19,
            Mish => 20,
            Softplus { .. } => 21,
            Clamp(..) => 22,
            Affine { .. } => 23,
            Powf(_) => 24,
        }
    }

    /// The (alpha, beta) uniforms of parameterised ops.
    fn args(self) -> (f32, f32) {
        match self {
            UnaryOp::LeakyRelu(a) | UnaryOp::Elu(a) => (a, 0.0),
            UnaryOp::Softplus { beta, threshold } => (beta, threshold),
            UnaryOp::Clamp(lo, hi) => (lo, hi),
            UnaryOp::Affine { scale, shift } => (scale, shift),
            UnaryOp::Powf(p) => (p, 0.0),
            _ => (0.0, 0.0),
        }
    }

    /// The CPU twin of the derivative: f'(v), given y = f(v).
    pub fn derivative(self, v: f32, y: f32) -> f32 {
        use UnaryOp::*;
        let step = |c: bool, a: f32, b: f32| if c { a } else { b };
        match self {
            Neg => -1.0,
            Abs => sign(v),
            Sign => 0.0,
            Exp => y,
            Log => 1.0 / v,
            Sqrt => 0.5 / y,
            Rsqrt => -0.5 * y * y * y,
            Square => 2.0 * v,
            Reciprocal => -y * y,
            Sin => v.cos(),
            Cos => -v.sin(),
            Tanh => 1.0 - y * y,
            Sigmoid => y * (1.0 - y),
            Relu => step(v > 0.0, 1.0, 0.0),
            LeakyRelu(a) => step(v > 0.0, 1.0, a),
            Elu(a) => step(v > 0.0, 1.0, y + a),
            Selu => step(v > 0.0, SELU_SCALE, y + SELU_SCALE * SELU_ALPHA),
            Gelu => {
                let cdf = 0.5 * (1.0 + erf_approx(v * std::f32::consts::FRAC_1_SQRT_2));
                cdf + v * 0.398_942_3 * (-0.5 * v * v).exp()
            }
            GeluTanh => {
                let k = 0.797_884_6;
                let t = (k * (v + 0.044715 * v * v * v)).clamp(-15.0, 15.0).tanh();
                0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * v * v)
            }
            Silu => {
                let s = sigmoid(v);
                s * (1.0 + v * (1.0 - s))
            }
            Mish => {
                let t = softplus1(v).clamp(-15.0, 15.0).tanh();
                t + v * (1.0 - t * t) * sigmoid(v)
            }
            Softplus { beta, threshold } => step(beta * v > threshold, 1.0, sigmoid(beta * v)),
            Clamp(lo, hi) => step(v >= lo && v <= hi, 1.0, 0.0),
            Affine { scale, .. } => scale,
            Powf(p) => p * v.powf(p - 1.0),
        }
    }

    /// The CPU twin: f applied to one value.
    pub fn apply(self, v: f32) -> f32 {
        use UnaryOp::*;
        match self {
            Neg => -v,
            Abs => v.abs(),
            Sign => sign(v),
            Exp => v.exp(),
            Log => v.ln(),
            Sqrt => v.sqrt(),
            Rsqrt => 1.0 / v.sqrt(),
            Square => v * v,
            Reciprocal => 1.0 / v,
            Sin => v.sin(),
            Cos => v.cos(),
            Tanh => v.clamp(-15.0, 15.0).tanh(),
            Sigmoid => sigmoid(v),
            Relu => v.max(0.0),
            LeakyRelu(a) => {
                if v > 0.0 {
                    v
                } else {
                    a * v
                }
            }
            Elu(a) => {
                if v > 0.0 {
                    v
                } else {
                    a * (v.exp() - 1.0)
                }
            }
            Selu => SELU_SCALE * if v > 0.0 { v } else { SELU_ALPHA * (v.exp() - 1.0) },
            Gelu => 0.5 * v * (1.0 + erf_approx(v * std::f32::consts::FRAC_1_SQRT_2)),
            GeluTanh => 0.5 * v * (1.0 + (0.797_884_6 * (v + 0.044715 * v * v * v)).clamp(-15.0, 15.0).tanh()),
            Silu => v * sigmoid(v),
            Mish => v * softplus1(v).clamp(-15.0, 15.0).tanh(),
            Softplus { beta, threshold } => {
                if beta * v > threshold {
                    v
                } else {
                    softplus1(beta * v) / beta
                }
            }
            Clamp(lo, hi) => v.max(lo).min(hi),
            Affine { scale, shift } => scale * v + shift,
            Powf(p) => v.powf(p),
        }
    }
}

/// `y[i] = op(x[i])` for the first `n` f32 of `x`.
pub fn unary(op: UnaryOp, x: &Buffer, n: usize) -> Result<Buffer> {
    super::check_u32("unary", n)?;
    x.check_len("unary", "input", n, 4)?;
    let dev = x.device();
    let out = Buffer::alloc(dev, n as u64 * 4)?;
    let (a, b) = op.args();
    run(
        dev,
        |g| {
            launch_elementwise(
                g,
                "unary",
                &[("OP", op.code() as f64)],
                Params::new().u32(n).f32(a).f32(b),
                &[x],
                &[&out],
                n,
            )
        },
        || {
            let (xs, mut ys) = (x.host(), out.host_mut());
            for (y, &v) in f32s_mut(&mut ys)[..n].iter_mut().zip(&f32s(&xs)[..n]) {
                *y = op.apply(v);
            }
        },
    )?;
    Ok(out)
}

/// Backward of [`unary`]: `dx[i] = g[i] * f'(x[i])` in one fused pass, where
/// `y = unary(op, x)` is the forward output (several derivatives use it).
pub fn unary_grad(op: UnaryOp, x: &Buffer, y: &Buffer, g: &Buffer, n: usize) -> Result<Buffer> {
    super::check_u32("unary_grad", n)?;
    for (b, what) in [(x, "x"), (y, "y"), (g, "gradient")] {
        b.check_len("unary_grad", what, n, 4)?;
    }
    let dev = x.device();
    Buffer::check_same_device("unary_grad", dev, &[y, g])?;
    let out = Buffer::alloc(dev, n as u64 * 4)?;
    let (a, b) = op.args();
    run(
        dev,
        |gpu| {
            let params = Params::new().u32(n).f32(a).f32(b);
            launch_elementwise(gpu, "unary_grad", &[("OP", op.code() as f64)], params, &[x, y, g], &[&out], n)
        },
        || {
            let (xs, ys, gs, mut dx) = (x.host(), y.host(), g.host(), out.host_mut());
            let (xs, ys, gs) = (f32s(&xs), f32s(&ys), f32s(&gs));
            for (i, d) in f32s_mut(&mut dx)[..n].iter_mut().enumerate() {
                *d = gs[i] * op.derivative(xs[i], ys[i]);
            }
        },
    )?;
    Ok(out)
}

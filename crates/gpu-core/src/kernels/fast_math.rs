//! `exp`, `sigmoid`, `tanh` and `ln(1 + u)` without branches or library calls, so that
//! loops over slices that use them vectorize (libm's `expf` is a call per
//! element, and was most of an LSTM cell step). Accurate to a few units in
//! the last place of f32; NaN in, NaN out.

/// `e^x` for `x` in [-87, 87]; 0 below -87.34 (where f32's normal range
/// ends: subnormals are flushed) and +∞ above 88.73 (past f32's largest),
/// as libm gives there, so that `x · sigmoid(x)` at -∞ is NaN as in
/// PyTorch; between those and ±87, e^±87 (about 1.6e-38 and 6.1e37).
/// Cephes' `expf`: `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-6
/// polynomial for `e^r`, and `2^n` put into the exponent bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that n·LN2_HI is exact for |n| ≤ 128.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let c = x.clamp(-87.0, 87.0);
    // Rounded to nearest by adding 1.5·2^23, which leaves n in the low
    // mantissa bits of the sum: `round` and a float-to-int cast are
    // library calls or scalar code on baseline x86-64, which would stop the
    // loop around this from vectorizing.
    const ROUND: f32 = 12_582_912.0;
    let shifted = c * LOG2E + ROUND;
    let n = shifted - ROUND;
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    let scale = f32::from_bits(n_int.wrapping_add(127) << 23);
    let v = e * scale;
    // Selects, not branches, so that loops over this still vectorize.
    let v = if x < -87.34 { 0.0 } else { v };
    let v = if x > 88.73 { f32::INFINITY } else { v };
    if x.is_nan() {
        x
    } else {
        v
    }
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x`: a Taylor series near 0, where `(e − 1)/(e + 1)` with
/// `e = e^2x` would cancel; ±1 past 9 (closer to ±1 than f32 resolves).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let x2 = x * x;
    let series = x * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0)));
    let e = exp(2.0 * x);
    let ratio = (e - 1.0) / (e + 1.0);
    let far = 1.0f32.copysign(x);
    // Selects, not branches: all three are computed.
    let v = if a < 0.0625 { series } else { ratio };
    if a > 9.0 {
        far
    } else {
        v
    }
}

/// `ln(1 + u)` for `u` in [0, 1] (softplus's `ln(1 + e^-|x|)`): `2·atanh(s)`
/// with `s = u / (2 + u)` in [0, 1/3], its odd series to `s^13` (the next
/// term is below f32's resolution), so no `1 + u` is rounded first and a
/// tiny `u` comes back as itself.
#[inline(always)]
pub(crate) fn ln_1p_unit(u: f32) -> f32 {
    let s = u / (2.0 + u);
    let z = s * s;
    let series = 2.0
        + z * (2.0 / 3.0 + z * (2.0 / 5.0 + z * (2.0 / 7.0 + z * (2.0 / 9.0 + z * (2.0 / 11.0 + z * (2.0 / 13.0))))));
    s * series
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error against std over a sweep of each function's range,
    /// at the edges of the branches and clamps, and on NaN and infinities.
    #[test]
    fn close_to_std() {
        let rel = |got: f32, want: f32| (got - want).abs() / want.abs().max(1e-30);
        let mut x = -87.0f32;
        while x <= 87.0 {
            assert!(rel(exp(x), x.exp()) < 3e-7, "exp({x}) = {}, std {}", exp(x), x.exp());
            x += 0.0131;
        }
        let mut x = -20.0f32;
        while x <= 20.0 {
            for v in [x, x * 1e-3, x * 1e-6] {
                assert!(rel(sigmoid(v), 1.0 / (1.0 + (-v).exp())) < 5e-7, "sigmoid({v})");
                assert!(rel(tanh(v), v.tanh()) < 2e-6, "tanh({v}) = {}, std {}", tanh(v), v.tanh());
            }
            x += 0.0071;
        }
        for v in [0.0625f32, -0.0625, 9.0, -9.0, 1e30, -1e30, 0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY] {
            assert!((tanh(v) - v.tanh()).abs() <= 2e-6 * v.tanh().abs(), "tanh({v})");
            assert!((sigmoid(v) - 1.0 / (1.0 + (-v).exp())).abs() < 1e-7, "sigmoid({v})");
        }
        let mut u = 0.0f32;
        while u <= 1.0 {
            for v in [u, u * 1e-4, u * 1e-9] {
                assert!(rel(ln_1p_unit(v), v.ln_1p()) < 3e-7, "ln_1p_unit({v}) = {}, std {}", ln_1p_unit(v), v.ln_1p());
            }
            u += 0.00013;
        }
        assert_eq!(ln_1p_unit(1.0), 2.0f32.ln());
        assert!(ln_1p_unit(f32::NAN).is_nan());
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(exp(88.0), exp(87.0), "clamped above");
        assert_eq!(exp(-87.2), exp(-87.0), "clamped below");
        for (x, want) in
            [(f32::NEG_INFINITY, 0.0), (-100.0, 0.0), (f32::INFINITY, f32::INFINITY), (100.0, f32::INFINITY)]
        {
            assert_eq!(exp(x), want, "exp({x}) as libm's");
        }
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert!(exp(f32::NAN).is_nan() && sigmoid(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
    }
}

//! Mixed-precision gradient unscaling (`shaders/amp.wgsl`): the device half
//! of dynamic loss scaling (`wgrad-nn`'s `GradScaler`).
//!
//! A scaled loss produces gradients `scale` times too large; before the
//! optimizer sees them they are multiplied by `1/scale`, and a step whose
//! gradients overflowed (any inf or NaN) must be skipped. Both happen in
//! one pass per gradient, writing a shared one-element flag, so a whole
//! step's verdict costs a single readback of four bytes, taken when the
//! caller decides whether to step.

use super::{dispatch, f32s, f32s_mut, groups, run, Kind, Params, ParamsDecl};
use crate::{Buffer, Error, Result};

/// `amp.wgsl`'s `Params`: the element count.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl { shader: "amp", fields: &[("n", Kind::U32)] };

/// Multiplies the first `n` f32 of `grad` in place by `inv_scale[0]` and
/// sets `found_inf[0]` to 1.0 when any of them (before scaling) is NaN or
/// ±inf: `torch._amp_foreach_non_finite_check_and_unscale_` for one tensor.
///
/// `inv_scale` and `found_inf` are one-element f32 device buffers, so the
/// scale never has to leave the device and the flag can accumulate over all
/// the gradients of a step (it is only ever set, never cleared: zero it once
/// per step). As in PyTorch, an inverse scale of exactly 1 leaves the values
/// untouched and non-finite values are scaled like any other.
///
/// One kernel launch (on the CPU backend, one pass); nothing is read back.
///
/// Errors: buffers shorter than stated, on different devices, or one buffer
/// passed as two operands (the gradient and the flag are both written).
pub fn unscale_and_check(grad: &Buffer, n: usize, inv_scale: &Buffer, found_inf: &Buffer) -> Result<()> {
    const OP: &str = "unscale_and_check";
    super::check_u32(OP, n)?;
    grad.check_len(OP, "gradient", n, 4)?;
    inv_scale.check_len(OP, "inv_scale", 1, 4)?;
    found_inf.check_len(OP, "found_inf", 1, 4)?;
    let all = [grad, inv_scale, found_inf];
    for (i, b) in all.iter().enumerate() {
        if all[..i].iter().any(|o| o.same_as(b)) {
            return Err(Error::invalid(OP, "the gradient, inv_scale and found_inf must be three different buffers"));
        }
    }
    let dev = grad.device();
    Buffer::check_same_device(OP, dev, &all)?;
    if n == 0 {
        return Ok(());
    }
    run(
        dev,
        |g| {
            let params = Params::of(&PARAMS).set_u32("n", n);
            dispatch(g, "amp", "unscale_and_check", &[], &params, &[inv_scale], &[grad, found_inf], groups(n, 256))
        },
        || {
            let s = f32s(&inv_scale.host())[0];
            let mut hg = grad.host_mut();
            let mut found = false;
            for v in &mut f32s_mut(&mut hg)[..n] {
                found |= !v.is_finite();
                if s != 1.0 {
                    *v *= s;
                }
            }
            if found {
                f32s_mut(&mut found_inf.host_mut())[0] = 1.0;
            }
        },
    )
}

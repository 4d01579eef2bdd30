//! Bytes to normalised floats (`shaders/convert.wgsl`): how image data enters
//! the device (uploaded as u8, converted on the device).

use super::{f32s_mut, launch_elementwise, run, Kind, Params, ParamsDecl};
use crate::kernels::convert::u8_to_f32 as u8_to_f32_twin;

/// `convert.wgsl`'s uniform block.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "convert",
    fields: &[
        ("mean", Kind::F32x4),
        ("inv_std", Kind::F32x4),
        ("n", Kind::U32),
        ("plane", Kind::U32),
        ("channels", Kind::U32),
    ],
};
use crate::{Buffer, Error, Result};

/// `y[i] = (x[i] / 255 - mean[c]) / std[c]` for `n` bytes of `x`, where the
/// channel of element `i` is `(i / plane) % channels` (NCHW: `plane = H*W`).
/// At most 4 channels; pass `mean = [0]`, `std = [1]` for plain `/255` scaling.
pub fn u8_to_f32(x: &Buffer, n: usize, plane: usize, mean: &[f32], std: &[f32]) -> Result<Buffer> {
    let channels = mean.len();
    if channels == 0 || channels > 4 || std.len() != channels || plane == 0 {
        return Err(Error::invalid(
            "u8_to_f32",
            format!("needs 1 to 4 channels with as many means as stds and a plane > 0, got means {mean:?}, stds {std:?}, plane {plane}"),
        ));
    }
    if std.contains(&0.0) {
        return Err(Error::invalid("u8_to_f32", format!("std {std:?} contains a zero")));
    }
    super::check_u32("u8_to_f32", n)?;
    x.check_len("u8_to_f32", "byte", n, 1)?;
    let dev = x.device();
    let out = Buffer::alloc(dev, n as u64 * 4)?;
    let quad = |v: &[f32], f: fn(f32) -> f32| {
        let mut q = [0.0f32; 4];
        for (d, s) in q.iter_mut().zip(v) {
            *d = f(*s);
        }
        q
    };
    let (m4, s4) = (quad(mean, |v| v), quad(std, |v| 1.0 / v));
    run(
        dev,
        |g| {
            let params = Params::of(&PARAMS)
                .set_f32x4("mean", &m4)
                .set_f32x4("inv_std", &s4)
                .set_u32("n", n)
                .set_u32("plane", plane)
                .set_u32("channels", channels);
            launch_elementwise(g, "convert", &[], params, &[x], &[&out], n)
        },
        || {
            let (xs, mut ys) = (x.host(), out.host_mut());
            u8_to_f32_twin(bytemuck::cast_slice(&xs), (plane, channels), (&m4, &s4), &mut f32s_mut(&mut ys)[..n]);
        },
    )?;
    Ok(out)
}

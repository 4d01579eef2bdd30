//! Cumulative sums along one dim (`shaders/cumsum.wgsl`): `torch.cumsum`,
//! and with `reverse` the suffix sums its gradient is.
//!
//! One thread per fiber adds the fiber's elements in order, as the CPU
//! twin does, so a GPU gives the twin's bits on every run. A long fiber is
//! a serial loop: a cumsum over one dim of a million elements with few
//! fibers runs on few threads (a blocked scan would be faster there but
//! would add in another order).

use super::chunks::by_rows;
use super::fibers::Fibers;
use super::{groups, run, Kind, Params, ParamsDecl};
use crate::kernels::cumsum as twin;
use crate::{Buffer, Result};

/// `cumsum.wgsl`'s `Params`.
pub(crate) const PARAMS: ParamsDecl = ParamsDecl {
    shader: "cumsum",
    fields: &[("fibers", Kind::U32), ("n", Kind::U32), ("inner", Kind::U32), ("reverse", Kind::U32)],
};

/// The running sums of the dense f32 buffer `x` of `shape` along `dim`
/// (`torch.cumsum(x, dim)`): element `j` is the sum of elements `0..=j`
/// along it, or with `reverse` of elements `j..` (the gradient of a
/// cumsum). Each is added in order, the same bits on every device.
pub fn cumsum(x: &Buffer, shape: &[usize], dim: usize, reverse: bool) -> Result<Buffer> {
    const OP: &str = "cumsum";
    let Fibers { outer, n, inner } = Fibers::around(OP, x, shape, dim)?;
    let numel = outer * n * inner;
    let out = Buffer::alloc(x.device(), numel as u64 * 4)?;
    if numel == 0 {
        return Ok(out);
    }
    let dev = x.device();
    run(
        dev,
        |g| {
            let launch = |rows: usize, ins: &[&Buffer], outs: &[&Buffer]| {
                let fibers = rows * inner;
                let params = Params::of(&PARAMS)
                    .set_u32("fibers", fibers)
                    .set_u32("n", n)
                    .set_u32("inner", inner)
                    .set_u32("reverse", reverse as usize);
                super::dispatch(g, "cumsum", "main", &[], &params, ins, outs, groups(fibers, 256))
            };
            // Outer slices are independent: past the binding limit, chunks of them.
            if super::past_limit(g, [x, &out]) {
                return by_rows(
                    g,
                    &format!("{OP}: one slice of {shape:?} along dim {dim}"),
                    outer,
                    &[x],
                    &[&out],
                    launch,
                );
            }
            launch(outer, &[x], &[&out])
        },
        || {
            let f = Fibers { outer, n, inner };
            f.per_block(dev, x, &out, |x, y: &mut [f32]| twin::cumsum_block(n, inner, reverse, x, y))
        },
    )?;
    Ok(out)
}
